"""The synthetic twin: physics, keypoints, EMG, determinism and the pinned data."""
import hashlib
import json
from pathlib import Path

import mujoco
import numpy as np
import pytest
import yaml

from mimic_core.data import twin
from mimic_core.model import keypoint_positions

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.fixture(scope="module")
def trials(fm):
    cfg = dict(PARAMS["twin"], n_trials=4)
    return list(twin.generate_trials(fm, cfg, PARAMS["model"]["emg_muscles"], seed=123))


def test_min_jerk_endpoints_and_derivatives():
    t = np.linspace(0, 1, 2001)
    q0, q1 = np.array([0.0, 1.0]), np.array([2.0, -1.0])
    pos, vel, acc = twin.min_jerk(t, 0.2, 0.7, q0, q1)
    np.testing.assert_allclose(pos[t <= 0.2], q0[None].repeat((t <= 0.2).sum(), 0))
    np.testing.assert_allclose(pos[t >= 0.7], q1[None].repeat((t >= 0.7).sum(), 0))
    dt = t[1] - t[0]
    np.testing.assert_allclose(np.gradient(pos, dt, axis=0)[5:-5], vel[5:-5], atol=1e-3)
    # Jerk steps at the ends, so the central difference of vel is off by ~dt * jerk there.
    np.testing.assert_allclose(np.gradient(vel, dt, axis=0)[5:-5], acc[5:-5], atol=0.5)


def test_excitation_reaches_target_activation(fm):
    # Integrate MuJoCo's own activation dynamics under the computed control.
    m = fm.model
    d = mujoco.MjData(m)
    a0 = np.linspace(0.05, 0.6, m.nu)
    target = a0 + np.linspace(0.08, -0.08, m.nu)  # within what 5 ms of activation dynamics allows
    d.act[:] = a0
    d.ctrl[:] = twin.excitation_to_reach(m, a0, target, 0.005)
    for _ in range(5):  # 5 x 1 ms
        mujoco.mj_step(m, d)
    assert np.all(np.abs(d.act - target) < 0.01)


def test_activations_actually_produce_the_motion(fm, trials):
    """Replaying the stored controls in MuJoCo reproduces the stored joint trajectory."""
    m = fm.model
    fps = PARAMS["twin"]["fps"]
    n_sub = int(round(1 / (fps * m.opt.timestep)))
    for tr in trials[:2]:
        d = mujoco.MjData(m)
        d.qpos[:], d.qvel[:], d.act[:] = tr.qpos[0], tr.qvel[0], tr.activation[0]
        for t in range(len(tr.qpos)):
            np.testing.assert_allclose(d.qpos, tr.qpos[t], atol=1e-9)
            np.testing.assert_allclose(d.act, tr.activation[t], atol=1e-9)
            d.ctrl[:] = tr.excitation[t]
            for _ in range(n_sub):
                mujoco.mj_step(m, d)


def test_reach_is_smooth_within_range_and_varied(fm, trials):
    lo, hi = fm.joint_range.T
    slack = np.deg2rad(2.0)  # joint limits are soft constraints in MuJoCo
    for tr in trials:
        assert tr.qpos.shape == (PARAMS["twin"]["n_frames"], 4)
        assert np.all(tr.qpos >= lo - slack) and np.all(tr.qpos <= hi + slack)
        # A reach: the limb moves tens of degrees, and at no frame jumps.
        assert np.ptp(tr.qpos, axis=0).max() > np.deg2rad(20)
        assert np.abs(np.diff(tr.qpos, axis=0)).max() < np.deg2rad(15)
        # The muscles follow the intended reach closely where they can.
        assert np.median(np.abs(tr.qpos - tr.qpos_intended)) < np.deg2rad(5)
        assert np.all((tr.activation >= -1e-12) & (tr.activation <= 1 + 1e-12))
        assert np.all((tr.excitation >= 0) & (tr.excitation <= 1))
    finals = np.stack([tr.qpos[-1] for tr in trials])
    assert finals.std(0).max() > np.deg2rad(2)
    assert len({tr.onset_frame for tr in trials}) > 1


def test_keypoints_are_kinematics_plus_noise(fm, trials):
    cfg = PARAMS["twin"]
    noise = []
    for tr in trials:
        np.testing.assert_allclose(keypoint_positions(fm, tr.qpos, tr.offsets), tr.keypoints_clean, atol=1e-12)
        ok = np.isfinite(tr.keypoints).all(-1)
        assert ok.mean() > 0.9
        noise.append((tr.keypoints - tr.keypoints_clean)[ok])
    sd = np.concatenate(noise).std()
    assert sd == pytest.approx(cfg["keypoint_noise_mm"] * 1e-3, rel=0.15)


def test_emg_shape_and_modulation(trials):
    cfg = PARAMS["twin"]["emg"]
    tr = trials[0]
    n = int(round(PARAMS["twin"]["n_frames"] / PARAMS["twin"]["fps"] * cfg["fs"]))
    assert tr.emg.shape == (n, len(cfg["channels"]))
    assert np.all(np.isfinite(tr.emg))


def test_same_seed_same_twin_other_seed_other_twin(fm):
    cfg = dict(PARAMS["twin"], n_trials=1)
    mus = PARAMS["model"]["emg_muscles"]
    a = next(twin.generate_trials(fm, cfg, mus, seed=5))
    b = next(twin.generate_trials(fm, cfg, mus, seed=5))
    c = next(twin.generate_trials(fm, cfg, mus, seed=6))
    for field in ("qpos", "keypoints", "activation", "emg", "offsets"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.allclose(a.qpos, c.qpos)


def _pinned_listing():
    """relpath -> md5 of the twin pinned by data.dvc, read from the in-repo DVC remote."""
    meta = yaml.safe_load((ROOT / "data.dvc").read_text())["outs"][0]
    dir_md5 = meta["md5"]
    prefix = "twin/"
    return {e["relpath"][len(prefix):]: e["md5"] for e in json.loads(_stored(dir_md5).read_text())
            if e["relpath"].startswith(prefix)}


def _stored(md5: str) -> Path:
    """A file of the in-repo DVC remote, by its md5."""
    return ROOT / ".dvc-storage" / "files" / "md5" / md5[:2] / md5[2:]


def _assert_same_numbers(made: Path, pinned: Path, name: str) -> None:
    """Equal up to float rounding: other CPUs and math libraries round the last bits differently."""
    import h5py
    import pandas as pd

    tol = dict(rtol=1e-6, atol=1e-9, err_msg=name)
    if name.endswith(".csv"):
        a, b = pd.read_csv(made), pd.read_csv(pinned)
        assert list(a.columns) == list(b.columns), name
        np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), **tol)
    elif name.endswith(".h5"):
        with h5py.File(made, "r") as fa, h5py.File(pinned, "r") as fb:
            assert sorted(fa) == sorted(fb) and dict(fa.attrs).keys() == dict(fb.attrs).keys(), name
            for k in fa:
                x, y = fa[k][()], fb[k][()]
                if x.dtype.kind in "fiu":
                    np.testing.assert_allclose(x, y, **tol)
                else:
                    np.testing.assert_array_equal(x, y, err_msg=f"{name}:{k}")
    elif name.endswith(".json"):
        a, b = json.loads(made.read_text()), json.loads(pinned.read_text())

        def walk(x, y, where):
            assert type(x) is type(y) or {type(x), type(y)} <= {int, float}, f"{name}{where}"
            if isinstance(x, dict):
                assert x.keys() == y.keys(), f"{name}{where}"
                for k in x:
                    walk(x[k], y[k], f"{where}.{k}")
            elif isinstance(x, list):
                assert len(x) == len(y), f"{name}{where}"
                for i, (u, v) in enumerate(zip(x, y)):
                    walk(u, v, f"{where}[{i}]")
            elif isinstance(x, float):
                np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-9, err_msg=f"{name}{where}")
            else:
                assert x == y, f"{name}{where}: {x!r} != {y!r}"

        walk(a, b, "")
    else:
        raise AssertionError(f"{name}: unexpected file in the twin")


@pytest.mark.slow
def test_regenerated_twin_matches_pinned_data(tmp_path):
    """`mimic-bench make-twin` with the pinned seed rebuilds the DVC-pinned data: byte for byte on a
    machine that computes as the pinning one did, and to float rounding (1e-6 relative) on any other."""
    from click.testing import CliRunner

    from bench.cli import main

    pinned = _pinned_listing()
    out = tmp_path / "twin"
    res = CliRunner().invoke(main, ["make-twin", "--out", str(out), "--params", str(ROOT / "params.yaml")])
    assert res.exit_code == 0, res.output
    made = {str(p.relative_to(out)): p for p in sorted(out.rglob("*")) if p.is_file()}
    assert sorted(made) == sorted(pinned)
    for name, path in made.items():
        if hashlib.md5(path.read_bytes()).hexdigest() != pinned[name]:
            _assert_same_numbers(path, _stored(pinned[name]), name)
