"""The `edm` and `latents` stages on small synthetic rollouts and EMG with known structure."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from bench.cli import main
from mimic_core.analysis.latents import explained_variance, run_latents
from mimic_core.analysis.rollouts import read_rollout
from mimic_core.edm.analysis import clip_pairs, emg_table, load_emg, run_edm
from mimic_core.errors import DataError, ParamsError
from mimic_core.io import write_h5

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
MUSCLES = ["Pec_C", "Lat", "PD", "AD", "MD", "Triceps_Lateral", "Triceps_Long", "Brachialis", "Biceps_Long"]
JOINTS = ["sh_elv", "sh_extension", "sh_rotation", "elbow"]
C, T, FPS, EPOCH, START = 16, 60, 200.0, 30, 2   # clips, frames, Hz, epoch frames, prepare.clip.start_frame
OMEGA = 2 * np.pi / 40                            # one cycle per 40 frames
VARS = np.array([9.0, 4.0, 1.0])                  # variances along the latent's 3 directions


def clips() -> list[str]:
    return [f"trial{i + 1:02d}" for i in range(C)]


def joints(rng) -> np.ndarray:
    """(C, T, 4): each clip a phase of one oscillation, so the state (and what follows) is a function of
    the current and the previous joint angles."""
    ph = rng.uniform(0, 2 * np.pi, C)[:, None, None] + np.arange(T)[None, :, None] * OMEGA
    return np.array([0.6, 0.5, 0.4, 0.8]) * np.sin(ph + np.arange(4) * 0.7)


def latent(rng, n_steps: int) -> np.ndarray:
    """(C, n_steps, 4) with variances exactly 9, 4, 1 along three orthogonal directions (+ tiny noise)."""
    n = C * n_steps
    z = rng.standard_normal((n, 3))
    q, _ = np.linalg.qr(z - z.mean(0))
    z = q * np.sqrt(n * VARS)
    basis, _ = np.linalg.qr(rng.standard_normal((4, 3)))
    return (z @ basis.T + 1e-4 * rng.standard_normal((n, 4))).reshape(C, n_steps, 4)


def write_rollout(path: Path, seed: int = 0, shuffled: bool = False, drop: str | None = None) -> dict:
    """A rollout file in the evaluate stage's schema; activations are known functions of the joints
    (`shuffled`: the same values permuted across every frame of every clip)."""
    rng = np.random.default_rng(seed)
    q = joints(rng)
    act = np.zeros((C, T, 9))
    act[..., MUSCLES.index("Biceps_Long")] = 1 / (1 + np.exp(-(3 * q[..., 0] - 2 * q[..., 3])))
    act[..., MUSCLES.index("Triceps_Long")] = q[..., 1] ** 2 + 0.5 * q[..., 2]
    act[..., 0] = 0.3
    if shuffled:
        flat = act.reshape(C * T, 9)
        act = flat[rng.permutation(C * T)].reshape(C, T, 9)
    ctrl = np.clip(act[:, 1:] + 0.01 * rng.standard_normal((C, T - 1, 9)), 0, 1)
    data = {
        "clip_names": np.array(clips(), dtype="S"), "joint_names": np.array(JOINTS, dtype="S"),
        "muscle_names": np.array(MUSCLES, dtype="S"), "kp_names": np.array(["Shoulder", "Elbow", "Wrist"], dtype="S"),
        "qpos": q, "qpos_reference": q + 1e-3 * rng.standard_normal(q.shape), "actions": ctrl,
        "activations": act, "forces": -ctrl, "latent": latent(rng, T - 1),
        **{f"decoder_layer_{i}": rng.standard_normal((C, T - 1, 8)) for i in range(3)},
    }
    if drop:
        del data[drop]
    write_h5(path, data, {"data": "synthetic", "fps": FPS, "ctrl_cost_weight": path.stem})
    return data


def write_emg(path: Path, rollout: dict, onset_frames=None, names=None, fps: float = FPS) -> np.ndarray:
    """emg.h5 as `prepare` writes it, the clips in reverse order; the envelopes are functions of the
    reference joints at the epoch's frames. Returns the raw-clip onset frames."""
    rng = np.random.default_rng(5)
    onset = rng.integers(START, START + T - 1 - EPOCH + 1, C) if onset_frames is None else np.asarray(onset_frames)
    k = onset[:, None] - START + np.arange(EPOCH)[None, :]
    ref = np.take_along_axis(rollout["qpos_reference"], k[..., None], axis=1)
    env = np.stack([np.exp(ref[..., 0]), (ref[..., 1] + 1) ** 2 + ref[..., 3]], axis=-1)
    order = np.arange(C)[::-1]
    write_h5(path, {"envelope": env[order], "channels": np.array(["biceps", "triceps"], dtype="S"),
                    "clip_names": np.array(names or [clips()[i] for i in order], dtype="S"),
                    "onset_s": onset[order] / FPS, "scale_uv": np.ones(2)},
             {"data": "synthetic", "fps": fps, "epoch_s": EPOCH / fps})
    return onset


def params(weights=(0, 0.15)) -> dict:
    p = copy.deepcopy(PARAMS)
    p["track"]["ctrl_cost_weights"] = list(weights)
    p["edm"]["n_surrogates"] = 40
    p["prepare"]["clip"]["start_frame"] = START
    return p


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("analysis")
    (d / "rollouts").mkdir()
    ro = write_rollout(d / "rollouts" / "0.15.h5", seed=1)
    write_rollout(d / "rollouts" / "0.h5", seed=2, shuffled=True)
    onset = write_emg(d / "emg.h5", ro)
    return d, ro, onset


def run_cli(args, p: dict, tmp: Path):
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(p))
    return CliRunner().invoke(main, [*args, "--params", str(path)])


# ----------------------------------------------------------------------------------------------
# edm
# ----------------------------------------------------------------------------------------------
def test_edm_known_function_high_rho_shuffled_low(data, tmp_path):
    d, _, _ = data
    r = run_cli(["edm", "--rollouts", str(d / "rollouts"), "--emg", str(d / "emg.h5"),
                 "--metrics", str(tmp_path / "edm.json")], params(), tmp_path)
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "edm.json").read_text())
    analyses = set(PARAMS["edm"]["analyses"])
    assert set(rep) == analyses | {"data", "data_sources", "settings", "emg_mae", "emg_mae_muscles", "ccm",
                                   "smap_nonlinearity"}
    assert rep["data"] == "synthetic"
    assert rep["settings"]["n_surrogates"] == 40 and rep["settings"]["lib_clips"] == rep["settings"]["pred_clips"] == 8
    for name in analyses:
        assert set(rep[name]) == {"0", "0.15"}
        for v in rep[name].values():
            assert set(v) == {"rho", "mae", "surrogate_mean", "surrogate_p95", "p_value", "n"}
    for name in ("sim_biceps_from_joints", "sim_triceps_from_joints"):
        good, bad = rep[name]["0.15"], rep[name]["0"]
        assert good["rho"] > 0.9 and good["p_value"] < 0.05 and good["surrogate_p95"] < 0.3
        assert abs(bad["rho"]) < 0.3 and abs(good["surrogate_mean"]) < 0.1
        # one prediction per frame of the 8 predicted clips, less the embedding row and Tp
        assert good["n"] == 8 * (T - 1 - PARAMS["edm"]["Tp"])
    for name in ("emg_triceps_from_joints_actions", "emg_biceps_from_joints_actions"):
        assert rep[name]["0.15"]["rho"] > 0.9 and rep[name]["0.15"]["p_value"] < 0.05
        assert rep[name]["0.15"]["n"] == 8 * (EPOCH - 2 - PARAMS["edm"]["Tp"])
    # EMG MAE by hand: each channel's envelope against its muscle's activation at the aligned rollout frames
    assert rep["emg_mae_muscles"] == dict(PARAMS["model"]["emg_muscles"])
    emg = load_emg(d / "emg.h5")
    with h5py.File(d / "rollouts" / "0.15.h5") as f:
        act = f["activations"][()]
    onset = data[2]
    k = onset[:, None] - START + np.arange(EPOCH)[None, :]
    for i, (ch, muscle) in enumerate(PARAMS["model"]["emg_muscles"].items()):
        a = np.take_along_axis(act[..., MUSCLES.index(muscle)], k, 1)
        env = emg.envelope[::-1][..., emg.channels.index(ch)]          # the EMG file lists the clips in reverse
        assert rep["emg_mae"]["0.15"][ch] == pytest.approx(np.mean(np.abs(a - env)), rel=1e-12)


def test_emg_epochs_align_with_rollout_frames(data):
    d, ro_data, onset = data
    ro = read_rollout(d / "rollouts", "0.15", ["qpos_reference", "actions"])
    emg = load_emg(d / "emg.h5")
    table = emg_table(ro, emg, "triceps", MUSCLES, START)
    rows = table.data.reshape(C, EPOCH, -1)
    k = onset[:, None] - START + np.arange(EPOCH)[None, :]          # rollout frame of each epoch frame
    np.testing.assert_array_equal(rows[..., :4], np.take_along_axis(ro_data["qpos_reference"], k[..., None], 1))
    np.testing.assert_array_equal(rows[..., 4:13], np.take_along_axis(ro_data["actions"], k[..., None], 1))
    env = emg.envelope[::-1][..., 1]                                # the EMG file lists the clips in reverse
    np.testing.assert_array_equal(rows[..., 13], env)
    assert table.columns[-1] == "actions:Biceps_Long" and table.target == "envelope:triceps"


def test_clip_pairs_never_cross_clips():
    lib, pred, n_lib = clip_pairs(4, 10, E=3, tau=-1, Tp=2, lib_fraction=0.5)
    assert n_lib == 2
    assert lib == [1, 8, 11, 20]              # pyEDM trims Tp from the last pair itself, E-1 from each
    assert pred == [23, 28, 33, 38]           # clip 3 = rows 21-30: first 2 need earlier lags, last 2 no target
    with pytest.raises(DataError, match="too short"):
        clip_pairs(4, 7, E=3, tau=-1, Tp=5, lib_fraction=0.5, path="x.h5", field="activations")
    with pytest.raises(DataError, match="library and prediction"):
        clip_pairs(1, 50, E=2, tau=-1, Tp=5, lib_fraction=0.5)


def test_edm_bad_params():
    from mimic_core.config import as_params

    bad = copy.deepcopy(PARAMS)
    bad["edm"]["analyses"]["sim_biceps_from_joints"]["kind"] = "nope"
    with pytest.raises(ParamsError, match=r"edm\.analyses\.sim_biceps_from_joints\.kind"):
        as_params(bad)
    with pytest.raises(ParamsError, match=r"'edm\.Tpp': unknown key"):
        as_params({**PARAMS, "edm": {**PARAMS["edm"], "Tpp": 3}})


def test_edm_missing_rollout_file(data, tmp_path):
    d, _, _ = data
    r = run_cli(["edm", "--rollouts", str(d / "rollouts"), "--emg", str(d / "emg.h5"),
                 "--metrics", str(tmp_path / "edm.json")], params((0.15, 0.3)), tmp_path)
    assert r.exit_code == 1 and "0.3.h5" in r.output and "no rollout file" in r.output
    assert not (tmp_path / "edm.json").exists()


def test_edm_rollout_missing_dataset(tmp_path, data):
    d, _, _ = data
    (tmp_path / "r").mkdir()
    write_rollout(tmp_path / "r" / "0.h5", drop="activations")
    r = run_cli(["edm", "--rollouts", str(tmp_path / "r"), "--emg", str(d / "emg.h5"), "--weights", "0",
                 "--metrics", str(tmp_path / "edm.json")], params(), tmp_path)
    assert r.exit_code == 1
    assert "0.h5" in r.output and "field 'activations'" in r.output and "missing" in r.output


def test_edm_emg_clip_names_mismatch(data, tmp_path):
    d, ro, _ = data
    names = [f"other{i:02d}" if i == 3 else c for i, c in enumerate(clips())][::-1]
    write_emg(tmp_path / "emg.h5", ro, names=names)
    with pytest.raises(DataError, match="clip_names") as e:
        run_edm(params(), d / "rollouts", tmp_path / "emg.h5", ["0.15"])
    assert str(tmp_path / "emg.h5") in str(e.value) and "other03" in str(e.value) and "trial04" in str(e.value)


def test_edm_epoch_outside_rollout_and_fps(data, tmp_path):
    d, ro, _ = data
    onset = np.full(C, START + T - EPOCH)                 # the last epoch frame has no action
    write_emg(tmp_path / "late.h5", ro, onset_frames=onset)
    with pytest.raises(DataError, match="onset_s"):
        run_edm(params(), d / "rollouts", tmp_path / "late.h5", ["0.15"])
    write_emg(tmp_path / "fps.h5", ro, fps=100.0)
    with pytest.raises(DataError, match="cannot be aligned"):
        run_edm(params(), d / "rollouts", tmp_path / "fps.h5", ["0.15"])


def test_edm_ccm_and_smap(data, tmp_path):
    """The fixture's simulated activations are functions of the joints (0.15) or shuffled across every frame
    (0): the joints cross-map onto the first, converging, far above both nulls, and not onto the second."""
    d, _, _ = data
    r = run_cli(["edm", "--rollouts", str(d / "rollouts"), "--emg", str(d / "emg.h5"),
                 "--metrics", str(tmp_path / "edm.json")], params(), tmp_path)
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "edm.json").read_text())
    c = PARAMS["edm"]["ccm"]
    assert set(rep["ccm"]) == set(c["pairs"])
    M = C * (EPOCH - (c["E"] - 1))                      # rows whose lags stay in their clip
    for name, pair in c["pairs"].items():
        assert set(rep["ccm"][name]) == ({"reference"} if pair["kind"] == "emg" else {"0", "0.15"})
        for v in rep["ccm"][name].values():
            assert v["n_valid"] == M and v["lib_sizes"][-1] == M and len(v["lib_sizes"]) == len(v["rho_x_to_y"])
            assert v["rho_x_to_y_full_library"] == pytest.approx(v["rho_x_to_y_max_lib"], abs=1e-12)
            assert set(v["null"]) == set(c["surrogates"])
    for name in ("sim_triceps", "sim_biceps"):
        good, bad = rep["ccm"][name]["0.15"], rep["ccm"][name]["0"]
        assert good["rho_x_to_y_max_lib"] > 0.9 and good["convergence"]["x_to_y"]["delta_rho"] > 0
        assert good["null"]["clip_ebisuzaki"]["p_value"] < 0.05 and good["null"]["clip_ebisuzaki"]["mean"] < 0.5
        assert abs(bad["rho_x_to_y_max_lib"]) < 0.3
    sm = rep["smap_nonlinearity"]
    assert set(sm) == set(PARAMS["edm"]["smap"]["channels"])
    for v in sm.values():
        assert v["theta"] == PARAMS["edm"]["smap"]["thetas"] and len(v["rho"]) == len(v["theta"])
        assert v["rho_best"] >= v["rho_theta0"] and v["rho_gain"] == pytest.approx(v["rho_best"] - v["rho_theta0"])
    assert rep["settings"]["ccm"]["exclusion"] == "clip"


def test_edm_ccm_bad_params(data, tmp_path):
    d, _, _ = data
    for change, says in ((lambda c: c.update(lib_fractions=[0.5, 0.2]), "must rise"),
                         (lambda c: c["pairs"].update(x={"kind": "sim", "channel": "biceps"}), "muscle"),
                         (lambda c: c.update(surrogates=["twaddle"]), "surrogates")):
        p = params()
        change(p["edm"]["ccm"])
        r = run_cli(["edm", "--rollouts", str(d / "rollouts"), "--emg", str(d / "emg.h5"),
                     "--metrics", str(tmp_path / "edm.json")], p, tmp_path)
        assert r.exit_code == 1 and says in r.output, r.output
        assert not (tmp_path / "edm.json").exists()
    p = params()
    p["edm"]["smap"]["thetas"] = [1.0, 2.0]
    r = run_cli(["edm", "--rollouts", str(d / "rollouts"), "--emg", str(d / "emg.h5"),
                 "--metrics", str(tmp_path / "edm.json")], p, tmp_path)
    assert r.exit_code == 1 and "must include 0" in r.output


def test_edm_constant_target_is_null_not_nan(data, tmp_path):
    d, _, _ = data
    (tmp_path / "r").mkdir()
    write_rollout(tmp_path / "r" / "0.h5")
    with h5py.File(tmp_path / "r" / "0.h5", "r+") as f:      # a muscle the policy never activates
        f["activations"][..., MUSCLES.index("Biceps_Long")] = 0.0
    p = params()
    p["edm"]["analyses"] = {"sim_biceps_from_joints": PARAMS["edm"]["analyses"]["sim_biceps_from_joints"]}
    p["edm"]["ccm"]["pairs"] = {"sim_biceps": PARAMS["edm"]["ccm"]["pairs"]["sim_biceps"]}
    r = run_cli(["edm", "--rollouts", str(tmp_path / "r"), "--weights", "0", "--emg", str(d / "emg.h5"),
                 "--metrics", str(tmp_path / "edm.json")], p, tmp_path)
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "edm.json").read_text())
    v = rep["sim_biceps_from_joints"]["0"]
    assert v["rho"] is None and v["p_value"] is None and "constant" in v["note"] and v["mae"] == 0.0
    assert "constant" in rep["ccm"]["sim_biceps"]["0"]["note"]


# ----------------------------------------------------------------------------------------------
# latents
# ----------------------------------------------------------------------------------------------
def test_explained_variance_known_directions():
    rng = np.random.default_rng(0)
    x = latent(rng, 50).reshape(-1, 4)
    np.testing.assert_allclose(explained_variance(x, 3), VARS / VARS.sum(), atol=1e-6)
    np.testing.assert_allclose(explained_variance(x[:, :2], 3)[2], 0.0)   # two features: no PC3
    with pytest.raises(ValueError, match="no variance"):
        explained_variance(np.ones((10, 3)))


def test_latents_stage(data, tmp_path):
    d, _, _ = data
    r = run_cli(["latents", "--rollouts", str(d / "rollouts"), "--metrics", str(tmp_path / "l.json")], params(),
                tmp_path)
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "l.json").read_text())
    assert set(rep) == {"0", "0.15", "data"} and rep["data"] == "synthetic"
    for w in ("0", "0.15"):
        assert set(rep[w]) == set(PARAMS["latents"]["layers"])
        for v in rep[w].values():
            assert set(v) == {"pc1", "pc2", "pc3", "n_samples", "n_features"}
            assert v["n_samples"] == C * (T - 1) and 0 <= v["pc3"] <= v["pc2"] <= v["pc1"] <= 1
        lat = rep[w]["latent"]
        assert lat["n_features"] == 4
        np.testing.assert_allclose([lat["pc1"], lat["pc2"], lat["pc3"]], VARS / VARS.sum(), atol=1e-6)


def test_latents_missing_layer(tmp_path):
    (tmp_path / "r").mkdir()
    write_rollout(tmp_path / "r" / "0.h5", drop="decoder_layer_2")
    with pytest.raises(DataError, match="decoder_layer_2") as e:
        run_latents(params(), tmp_path / "r", ["0"])
    assert str(tmp_path / "r" / "0.h5") in str(e.value)
