"""STAC in JAX: kinematics, the two alternating steps, the stage's output schema and its errors."""
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from bench.cli import main
from mimic_core.data import loaders
from mimic_core.errors import DataError, ModelError
from mimic_core.model import keypoint_positions
from mimic_core.stac import register as stage
from mimic_core.stac.register import stac_settings
from mimic_core.stac.solver import (MM, body_poses, fit_offsets, ik_frame, make_kinematics,
                                    make_register, sites)

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
REAL = ROOT.parent / "shared" / "real" / "mouse_arm_clips"
CFG = stac_settings(PARAMS)[0]
OFF0 = np.asarray(PARAMS["stac"]["initial_offsets_mm"]) * 1e-3

ARM = """<mujoco><worldbody><body name="a" pos="0.01 0 0" euler="10 20 30">
  <joint name="j1" axis="0 0 1" pos="0.001 0 0" range="-90 90" ref="15"/>
  <body name="b" pos="0 0.02 0" quat="0.9 0.1 0.3 0.2"><joint name="j2" axis="1 1 0" range="-45 120"/>
    <geom size=".001" mass="1e-3"/></body><geom size=".001" mass="1e-3"/></body></worldbody></mujoco>"""


@pytest.fixture(scope="module")
def kin(fm):
    return make_kinematics(fm.model, fm.keypoint_body_ids)


def _random_q(kin, n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(kin.lo, kin.hi, size=(n, len(kin.lo)))


@pytest.mark.parametrize("which", ["forelimb", "arm"])
def test_kinematics_match_mujoco(fm, which, tmp_path):
    """The solver's forward kinematics equals mujoco.mj_kinematics (anchors, refs, tilted axes included)."""
    if which == "forelimb":
        model, bodies = fm.model, fm.keypoint_body_ids
    else:
        model = mujoco.MjModel.from_xml_string(ARM)
        bodies = np.array([1, 2])
    k = make_kinematics(model, bodies)
    d = mujoco.MjData(model)
    off = np.random.default_rng(1).normal(0, 1e-3, (len(bodies), 3))
    for q in _random_q(k, 20):
        d.qpos[:] = q
        mujoco.mj_kinematics(model, d)
        want = d.xpos[bodies] + np.einsum("kij,kj->ki", d.xmat[bodies].reshape(-1, 3, 3), off)
        got = np.asarray(sites(k, jnp.asarray(q, jnp.float32), jnp.asarray(off * MM, jnp.float32))) / MM
        # float32 in mm: one ulp at 10 mm is ~1e-6 mm; eight chained transforms add a few ulp.
        np.testing.assert_allclose(got, want, atol=1e-8)


def test_non_hinge_models_are_refused():
    m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><body><freejoint/><geom size=".1"/></body></worldbody></mujoco>')
    with pytest.raises(ModelError, match="hinge"):
        make_kinematics(m, np.array([1]))


def test_ik_recovers_joint_angles_and_respects_limits(kin):
    off = jnp.asarray(OFF0 * MM, jnp.float32)
    mask = jnp.ones(3, bool)
    solve = jax.jit(jax.vmap(lambda q0, y: ik_frame(kin, q0, y, mask, off, CFG)))
    q_true = _random_q(kin, 64, seed=2)
    y = jax.vmap(lambda q: sites(kin, q, off))(jnp.asarray(q_true, jnp.float32))
    # Start near the answer (as a neighbour's solution would be), 5-10 degrees away.
    start = np.clip(q_true + np.deg2rad(np.random.default_rng(3).uniform(-10, 10, q_true.shape)), kin.lo, kin.hi)
    q = np.asarray(solve(jnp.asarray(start, jnp.float32), y))
    fit = np.asarray(jax.vmap(lambda q: sites(kin, q, off))(jnp.asarray(q)))
    assert np.median(np.linalg.norm(fit - np.asarray(y), axis=-1)) < 1e-3  # mm
    assert np.median(np.abs(q - q_true)) < np.deg2rad(0.05)
    # A target beyond the joint range: the answer stays inside the limits.
    far = np.asarray(y) * 3.0
    q_far = np.asarray(solve(jnp.asarray(start, jnp.float32), jnp.asarray(far)))
    assert np.all(q_far >= kin.lo - 1e-6) and np.all(q_far <= kin.hi + 1e-6)


def test_offsets_closed_form_is_the_least_squares_solution(kin):
    rng = np.random.default_rng(4)
    qs = jnp.asarray(_random_q(kin, 30, seed=5), jnp.float32)
    y = jnp.asarray(rng.normal(0, 5, (30, 3, 3)), jnp.float32)
    mask = jnp.asarray(rng.random((30, 3)) > 0.2)
    o0 = jnp.asarray(OFF0 * MM, jnp.float32)
    got = np.asarray(fit_offsets(kin, qs, y, mask, o0, CFG))
    pos, rot = jax.vmap(lambda q: body_poses(kin, q))(qs)
    for k in range(3):
        rows = [np.asarray(rot[t, k]) for t in range(30) if mask[t, k]]
        rhs = [np.asarray(y[t, k] - pos[t, k]) for t in range(30) if mask[t, k]]
        A = np.vstack(rows + [np.sqrt(CFG.offset_reg) * np.eye(3)])
        b = np.concatenate(rhs + [np.sqrt(CFG.offset_reg) * np.asarray(o0[k])])
        np.testing.assert_allclose(got[k], np.linalg.lstsq(A, b, rcond=None)[0], atol=1e-4)


@pytest.fixture(scope="module")
def twin_clips(fm):
    """Three twin clips (40 frames) with their truth, straight from the generator."""
    from mimic_core.data.twin import generate_trials

    cfg = dict(PARAMS["twin"], n_trials=3)
    trials = list(generate_trials(fm, cfg, PARAMS["model"]["emg_muscles"], seed=11))
    return trials


@pytest.fixture(scope="module")
def registered(fm, twin_clips):
    y = np.stack([t.keypoints for t in twin_clips])
    return stage.register_clips(fm, y, ["a", "b", "c"], fm.keypoint_names, 200.0, CFG, OFF0)


def test_register_twin_clips_recovers_the_truth(fm, twin_clips, registered):
    reg = registered
    e = reg.errors_mm
    assert np.nanmean(e) < 1.0
    # Sites come from MuJoCo's kinematics, independent of the solver's.
    np.testing.assert_allclose(reg.sites[0], keypoint_positions(fm, reg.qpos[0], reg.offsets[0]))
    off_err = np.linalg.norm(reg.offsets - np.stack([t.offsets for t in twin_clips]), axis=-1) * 1e3
    assert off_err.mean() < 0.5
    lo, hi = fm.joint_range.T
    assert np.all(reg.qpos >= lo - 1e-6) and np.all(reg.qpos <= hi + 1e-6)


def test_ik_is_as_good_as_the_noise_allows(fm, kin, twin_clips):
    """Given the true offsets, the joint error is at the Cramer-Rao bound of the keypoint noise."""
    import dataclasses

    cfg = dataclasses.replace(CFG, n_iters=0)
    y = np.stack([t.keypoints for t in twin_clips])
    mask = np.isfinite(y).all(-1)
    qs, _ = make_register(kin, cfg)(np.nan_to_num(y), mask, np.stack([t.offsets for t in twin_clips]))
    q_true = np.stack([t.qpos for t in twin_clips])
    sigma = PARAMS["twin"]["keypoint_noise_mm"] * 1e-3
    bound = np.concatenate([stage.cramer_rao_joint_var(fm, t.qpos, t.offsets, sigma) for t in twin_clips])
    rmse = np.sqrt(np.mean((np.asarray(qs) - q_true) ** 2))
    # Joint limits clip some noise, so an estimate may sit a little below the unconstrained bound.
    assert 0.7 * np.sqrt(bound.mean()) < rmse < 1.2 * np.sqrt(bound.mean())


def test_register_is_deterministic(fm, twin_clips, registered):
    y = np.stack([t.keypoints for t in twin_clips])
    again = stage.register_clips(fm, y, ["a", "b", "c"], fm.keypoint_names, 200.0, CFG, OFF0)
    np.testing.assert_array_equal(again.qpos, registered.qpos)
    np.testing.assert_array_equal(again.offsets, registered.offsets)


def test_bad_clips_are_named(fm, twin_clips):
    y = np.stack([t.keypoints for t in twin_clips[:2]])
    all_nan = y.copy()
    all_nan[1] = np.nan
    with pytest.raises(DataError, match="clip 'b'.*missing"):
        stage.register_clips(fm, all_nan, ["a", "b"], fm.keypoint_names, 200.0, CFG, OFF0)
    sparse = y.copy()
    sparse[0, 5:, 1] = np.nan  # the elbow is seen in only 5 frames
    with pytest.raises(DataError, match="clip 'a'.*only 5 frames"):
        stage.register_clips(fm, sparse, ["a", "b"], fm.keypoint_names, 200.0, CFG, OFF0)
    with pytest.raises(DataError, match="kp_names"):
        stage.register_clips(fm, y, ["a", "b"], ("Shoulder", "Elbow", "Paw"), 200.0, CFG, OFF0)


def test_a_diverged_solve_is_an_error_not_nan(fm, twin_clips, monkeypatch):
    def broken(fm, cfg):
        return lambda y, mask, off: (jnp.full(y.shape[:2] + (4,), jnp.nan), jnp.zeros(y.shape[:1] + (3, 3)))
    monkeypatch.setattr(stage, "_registrar", broken)
    y = np.stack([t.keypoints for t in twin_clips[:1]])
    with pytest.raises(DataError, match="diverged"):
        stage.register_clips(fm, y, ["a"], fm.keypoint_names, 200.0, CFG, OFF0)


def test_written_file_has_the_stac_mjx_schema(fm, registered, tmp_path):
    reg = registered
    path = tmp_path / "a.h5"
    stage.write_registered_h5(path, reg, 0, fm, {"stac": PARAMS["stac"]}, "synthetic")
    T = reg.qpos.shape[1]
    with h5py.File(path) as f:
        shapes = {k: f[k].shape for k in f}
        assert shapes == {"config": (), "kp_data": (T, 9), "kp_names": (3,), "marker_sites": (T, 3, 3),
                          "names_qpos": (4,), "names_xpos": (9,), "offsets": (3, 3), "qpos": (T, 4),
                          "qvel": (T, 4), "xpos": (T, 9, 3), "xquat": (T, 9, 4)}
        assert yaml.safe_load(f["config"][()].decode())["stac"]["n_iters"] == PARAMS["stac"]["n_iters"]
    # Our loader reads it back like any stac-mjx file.
    kd = loaders.load_stac_h5(path, units="m", fps=200)
    np.testing.assert_allclose(kd.keypoints, reg.keypoints[0], atol=1e-7, equal_nan=True)


@pytest.mark.real
def test_schema_matches_the_real_files(fm, registered, tmp_path):
    files = sorted(REAL.glob("*.h5")) if REAL.is_dir() else []
    if not files:
        pytest.skip(f"real clips not found at {REAL}")
    stage.write_registered_h5(tmp_path / "a.h5", registered, 0, fm, {}, "synthetic")
    with h5py.File(tmp_path / "a.h5") as ours, h5py.File(files[0]) as theirs:
        assert set(ours) == set(theirs)
        for k in theirs:
            assert ours[k].shape == theirs[k].shape, k
            assert ours[k].dtype.kind == theirs[k].dtype.kind, k
        assert list(ours["names_xpos"][()]) == list(theirs["names_xpos"][()])


@pytest.mark.real
@pytest.mark.slow
def test_real_clips_registered_from_keypoints_alone_beat_the_original(fm):
    """All 30 real clips, from kp_data only (never their qpos), scored by MuJoCo kinematics: per frame (like the
    original) every keypoint fits at least as well as the original's; with the temporal prior the fit stays
    within 0.1 mm of that while the joint angles lose their high-frequency jitter."""
    import dataclasses

    files = sorted(REAL.glob("*.h5")) if REAL.is_dir() else []
    if not files:
        pytest.skip(f"real clips not found at {REAL}")
    y = np.stack([loaders.load_stac_h5(f, units="m", fps=200).keypoints for f in files])
    names = [f.stem for f in files]
    per_frame = stage.register_clips(fm, y, names, fm.keypoint_names, 200.0, dataclasses.replace(CFG, mode="per_frame"),
                                     OFF0)
    temporal = stage.register_clips(fm, y, names, fm.keypoint_names, 200.0, dataclasses.replace(CFG, mode="temporal"),
                                    OFF0)
    ours = per_frame.errors_mm
    theirs, their_q = [], []
    for f in files:
        with h5py.File(f) as h:
            theirs.append(np.linalg.norm(h["marker_sites"][()] - h["kp_data"][()].reshape(-1, 3, 3), axis=-1) * 1e3)
            their_q.append(h["qpos"][()])
    theirs = np.stack(theirs)
    assert np.nanmean(ours) <= np.mean(theirs)  # 0.544 mm for the original
    for k, name in enumerate(fm.keypoint_names):
        assert np.nanmean(ours[..., k]) <= np.mean(theirs[..., k]), name
    assert np.nanmean(temporal.errors_mm) <= np.nanmean(ours) + 0.1
    hf = [stage.highpass_rms_deg(q, 200.0, 20.0, fm.joint_names)["all"] for q in (temporal.qpos, np.stack(their_q))]
    assert hf[0] < 0.25 * hf[1]


def test_cli_registers_one_clip(tmp_path, twin_clips, fm):
    csv = tmp_path / "clip.csv"
    loaders.write_anipose_csv(csv, twin_clips[0].keypoints, fm.keypoint_names, units="mm")
    out = tmp_path / "clip.h5"
    res = CliRunner().invoke(main, ["register-clip", "--keypoints", str(csv), "--out", str(out),
                                    "--params", str(ROOT / "params.yaml")])
    assert res.exit_code == 0, res.output
    assert "keypoint error mean" in res.output and out.exists()
    res = CliRunner().invoke(main, ["register-clip", "--keypoints", str(csv), "--out", str(tmp_path / "x.h5"),
                                    "--keypoint-map", "Shoulder=scapula,Elbow=elbow,Wrist=hand",
                                    "--params", str(ROOT / "params.yaml")])
    assert res.exit_code == 1 and "hand" in res.output and "wrist_body" in res.output
    assert not (tmp_path / "x.h5").exists()


def test_cli_register_clips_refuses_two_files_of_one_name(tmp_path, twin_clips, fm):
    """Two folders' clip.csv would be written to one <out>/clip.h5 and reported as one clip."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        loaders.write_anipose_csv(tmp_path / folder / "clip.csv", twin_clips[0].keypoints, fm.keypoint_names,
                                  units="mm")
    out, metrics = tmp_path / "out", tmp_path / "m.json"
    res = CliRunner().invoke(main, ["register-clips", "--glob", str(tmp_path / "*" / "clip.csv"), "--units", "mm",
                                    "--fps", "200", "--label", "synthetic", "--out-dir", str(out),
                                    "--metrics", str(metrics), "--params", str(ROOT / "params.yaml")])
    assert res.exit_code == 1, res.output
    assert res.output.startswith("error: ") and "give the same clip name 'clip'" in res.output
    assert "a/clip.csv" in res.output and "b/clip.csv" in res.output
    assert not out.exists() and not metrics.exists()
