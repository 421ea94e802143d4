"""The scipy STAC baseline (`mimic_core.stac.baseline`) against our JAX solver, and `bench-stac`.

Speed: compiling the JAX solver dominates (~10-16 s on two cores even for a light
configuration), so both tests that need it use ONE compiled function: a light configuration
(one alternation, 2^4 starts for frame 0; it still goes through every step of the algorithm:
grid of starts, warm-started pass, offset fit, refinement) at the shape the benchmark test uses
(2 clips x 20 frames). The benchmark test hands that function to the command through
`make_register` (run alone, it compiles it inside the command as usual). The full configuration
on all 46 twin clips is compared by the benchmark itself (`agreement` in its JSON).

Tolerance for joint angles: the two solve the same problem from the same starts, in float32
(ours, LM stopping at steps < 1e-6 rad) and float64 (scipy, tolerances 1e-12). Near the optimum
the cost is flat to float32 rounding over ~1e-5..1e-4 rad along the least constrained joint
direction, so the solvers stop at points that differ by up to ~0.003 deg (measured). We require
every fully observed frame within 0.05 deg (15x that) and the median within 0.005 deg. For
scale, the estimates' own uncertainty with 0.25 mm keypoint noise on ~2-7 mm lever arms is of
the order of degrees, so 0.05 deg is immaterial, while a real divergence (another local minimum,
a masking or warm-start difference) shows up as degrees.
The benchmark applies the same bound only to frames with no joint at a limit: there our projected
LM (clipped steps) can stop short of the bound-constrained optimum that trf reaches (measured on
the twin: up to ~0.5 deg, cost up to 1.5% higher on that frame).
A frame missing the elbow or the wrist keypoint is under-determined (3 equations for 4 joint
angles: a curve of exact fits, the shoulder keypoint does not move), and the two solvers may
stop at different points of that curve (measured: up to ~5 deg); there only the fit (the
residual) must agree.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from mimic_core.model import keypoint_positions
from mimic_core.stac.baseline import _Frame, register_clip_scipy
from mimic_core.params import load_params
from mimic_core.stac.register import stac_settings

ROOT = Path(__file__).resolve().parents[1]
KEYPOINTS = ROOT / "data" / "prepared" / "keypoints.h5"
LIGHT = dataclasses.replace(stac_settings(load_params(ROOT / "params.yaml"))[0], n_iters=1, n_init=2)
OFFSETS0_MM = np.array([[1.7, 0.7, 1.5], [-0.4, 0.1, 2.2], [1.6, -0.2, 0.0]])
MAX_DEG, MEDIAN_DEG = 0.05, 0.005


def synthetic_clip(fm, frames=20, seed=0):
    """A reach-like clip: joint angles rest -> lift, true offsets near the initial ones, 0.25 mm noise, 2 NaNs."""
    rng = np.random.default_rng(seed)
    rest, lift = np.radians([-11, -25, -24, 53]), np.radians([-32, -57, 50, 0])
    s = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, frames))[:, None]
    qpos = rest + s * (lift - rest)
    offsets = (OFFSETS0_MM + rng.normal(0, 0.3, OFFSETS0_MM.shape)) * 1e-3
    y = keypoint_positions(fm, qpos, offsets) + rng.normal(0, 0.25e-3, (frames, 3, 3))
    y[5, 2] = np.nan   # wrist missing
    y[12, 1] = np.nan  # elbow missing
    y[15, 0] = np.nan  # shoulder missing: no joint moves it, the frame stays determined
    return y


@pytest.fixture(scope="module")
def register_light(fm):
    """One jitted JAX solver (light configuration) shared by the tests of this module."""
    from mimic_core.stac.solver import make_kinematics, make_register

    return make_register(make_kinematics(fm.model, fm.keypoint_body_ids), LIGHT)


def test_analytic_jacobian_matches_finite_differences(fm):
    kf = _Frame(fm)
    q, o = np.radians([-20.0, -40.0, 10.0, 30.0]), OFFSETS0_MM
    J = kf.site_jac(q, o)
    eps = 1e-6
    fd = np.stack([(kf.sites(q + eps * e, o) - kf.sites(q - eps * e, o)) / (2 * eps) for e in np.eye(4)], axis=-1)
    np.testing.assert_allclose(J, fd, atol=1e-7)
    assert np.all(J[0] == 0)  # the shoulder keypoint sits on the scapula, above every joint


def test_baseline_agrees_with_jax(fm, register_light):
    import jax

    ys = np.stack([synthetic_clip(fm, seed=s) for s in (0, 1)])          # (2, 20, 3, 3) m
    valid = np.all(np.isfinite(ys), axis=-1)
    q_j, o_j = jax.block_until_ready(
        register_light(np.nan_to_num(ys).astype(np.float32), valid, OFFSETS0_MM * 1e-3))
    q_j, o_j = np.asarray(q_j, float), np.asarray(o_j, float)
    lo, hi = fm.model.jnt_range.T
    for c, y in enumerate(ys):
        stats = {}
        q_b, o_b = register_clip_scipy(fm, y, OFFSETS0_MM * 1e-3, LIGHT, stats=stats)
        assert stats["solves"] == 2 ** 4 + 20 * (1 + LIGHT.n_iters) and stats["max_nfev_hit"] == 0
        assert np.all((q_b >= lo) & (q_b <= hi))

        full = valid[c].all(axis=-1)
        full[15] = True  # the shoulder keypoint does not constrain any joint
        dq = np.degrees(np.abs(q_j[c] - q_b)).max(axis=-1)
        assert dq[full].max() < MAX_DEG, f"clip {c}: max |dq| {dq[full].max():.3g} deg on determined frames"
        assert np.median(dq) < MEDIAN_DEG
        np.testing.assert_allclose(o_j[c], o_b, atol=1e-6)  # 1e-3 mm

        d = [np.linalg.norm(keypoint_positions(fm, q, o) - y, axis=-1) * 1e3 for q, o in ((q_j[c], o_j[c]), (q_b, o_b))]
        cost = [np.nansum(e ** 2, axis=-1) for e in d]                     # per frame, mm^2
        np.testing.assert_allclose(cost[0], cost[1], atol=1e-3)           # every frame, determined or not
        err = [np.nanmean(e) for e in d]
        assert abs(err[0] - err[1]) < 1e-3, err                            # mm
        assert 0.1 < err[1] < 0.5, err                                     # fits down to the 0.25 mm noise


@pytest.mark.slow
def test_bench_stac_end_to_end(tmp_path, monkeypatch, register_light):
    if not KEYPOINTS.is_file():
        pytest.skip(f"{KEYPOINTS.relative_to(ROOT)} is absent (run `dvc repro prepare` to make it)")
    from bench.cli.benchmarks import bench_stac_cmd as stac_bench_cmd
    from mimic_core.stac import solver

    real = solver.make_register
    monkeypatch.setattr(solver, "make_register", lambda kin, cfg: register_light if cfg == LIGHT else real(kin, cfg))
    params = tmp_path / "params.yaml"
    full = yaml.safe_load((ROOT / "params.yaml").read_text())
    params.write_text(yaml.safe_dump({**full, "stac": {**full["stac"], "n_iters": LIGHT.n_iters, "n_init": LIGHT.n_init,
                                                       "initial_offsets_mm": OFFSETS0_MM.tolist()}}, sort_keys=False))
    out = tmp_path / "bench" / "stac.json"
    res = CliRunner().invoke(stac_bench_cmd, ["--clips", "2", "--frames", "20", "--baseline-clips", "1",
                                              "--params", str(params), "--keypoints", str(KEYPOINTS),
                                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "baseline/ours" in res.output
    r = json.loads(out.read_text())
    assert r["data"] == "synthetic" and r["clips"] == 2 and r["frames"] == 20
    assert r["params_stac"]["n_iters"] == LIGHT.n_iters and r["params_stac"]["n_init"] == LIGHT.n_init
    assert {"cpu_model", "cpu_count", "jax_backend", "devices", "versions"} <= set(r["machine"])
    assert {"jax", "mujoco", "scipy", "numpy"} <= set(r["machine"]["versions"])
    times = [r["ours"]["time_total_s"], r["ours"]["time_steady_s"], r["baseline"]["time_measured_s"],
             r["baseline"]["time_per_clip_s"], r["baseline"]["time_total_s"],
             r["speedup"]["baseline_over_ours_total"], r["speedup"]["baseline_over_ours_steady"]]
    assert all(math.isfinite(t) and t > 0 for t in times), times
    tmp = r["temporal"]
    assert all(math.isfinite(tmp[k]) and tmp[k] > 0 for k in ("time_total_s", "time_steady_s", "register_total_s"))
    assert tmp["register_total_s"] == pytest.approx(r["ours"]["time_total_s"] + tmp["time_total_s"])
    assert 0 < tmp["keypoint_error_mm"] < 1 and tmp["noise_sd_mm"] > 0
    b = r["baseline"]
    assert b["clips_measured"] == 1 and b["extrapolated"] is True
    assert b["time_total_s"] == pytest.approx(2 * b["time_per_clip_s"])
    a = r["agreement"]
    assert a["clips"] == 1 and a["qpos_max_abs_diff_deg_free_frames"] < MAX_DEG and a["offsets_mean_diff_mm"] < 1e-3
    assert abs(a["keypoint_error_mm_ours"] - a["keypoint_error_mm_baseline"]) < 1e-3
    assert all(0 < a[k] < 1 for k in ("keypoint_error_mm_ours", "keypoint_error_mm_baseline",
                                      "keypoint_error_mm_ours_all_clips"))


def test_bench_stac_reports_bad_input(tmp_path):
    from bench.cli.benchmarks import bench_stac_cmd as stac_bench_cmd

    params = tmp_path / "params.yaml"
    full = yaml.safe_load((ROOT / "params.yaml").read_text())
    stac = full["stac"]
    params.write_text(yaml.safe_dump({**full, "stac": {**stac, "initial_offsets_mm": [[1, 2, 3]]}}))
    res = CliRunner().invoke(stac_bench_cmd, ["--params", str(params), "--keypoints", str(KEYPOINTS),
                                              "--out", str(tmp_path / "x.json")])
    assert res.exit_code == 1 and "initial_offsets_mm" in res.output
    params.write_text(yaml.safe_dump({**full, "stac": {**stac, "lm_max_iter": 5}}))   # a typo is named, not ignored
    res = CliRunner().invoke(stac_bench_cmd, ["--params", str(params), "--keypoints", str(KEYPOINTS),
                                              "--out", str(tmp_path / "x.json")])
    assert res.exit_code == 1 and "did you mean 'stac.lm_max_iters'" in res.output
    params.write_text(yaml.safe_dump({**full, "stac": {**stac, "n_iters": 1}}))
    res = CliRunner().invoke(stac_bench_cmd, ["--params", str(params), "--keypoints", str(tmp_path / "none.h5"),
                                              "--out", str(tmp_path / "x.json")])
    assert res.exit_code == 1 and "not found" in res.output and not (tmp_path / "x.json").exists()
