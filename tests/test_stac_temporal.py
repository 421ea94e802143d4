"""STAC with the temporal prior (mimic_core/stac/smoother.py): against known smooth motion, the per-frame
Cramér-Rao bound, missing frames, the data-only choice of its weight, and bad input."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from mimic_core.data.twin import min_jerk
from mimic_core.errors import DataError
from mimic_core.model import keypoint_positions
from mimic_core.stac import register as stage
from mimic_core.stac.smoother import longest_gaps, wiener_prior
from repo_params import repo_params

PARAMS = repo_params()
BASE, OFF0 = stage.stac_settings(PARAMS)
# A coarser grid than the pipeline's (same range): one compile serves every test of this file.
CFG = dataclasses.replace(BASE, mode="temporal", temporal=dataclasses.replace(BASE.temporal, coarse_step=4.0, fine_step=1.0))
PER_FRAME = dataclasses.replace(CFG, mode="per_frame")
FPS, T, SIGMA_M = 200.0, 60, 0.25e-3


def smooth_clips(fm, n: int = 2, seed: int = 0):
    """Minimum-jerk reaches between two postures inside the joint range: (n, T, nq) angles and velocities."""
    rng = np.random.default_rng(seed)
    lo, hi = fm.joint_range[:, 0], fm.joint_range[:, 1]
    t = np.arange(T) / FPS
    qs, vs = [], []
    for _ in range(n):
        a, b = (lo + (hi - lo) * rng.uniform(0.3, 0.7, len(lo)) for _ in range(2))
        q, v, _ = min_jerk(t, 0.05, 0.05 + rng.uniform(0.12, 0.18), a, b)
        qs.append(q)
        vs.append(v)
    return np.stack(qs), np.stack(vs)


def keypoints_of(fm, q, sigma_m=0.0, seed=1):
    clean = np.stack([keypoint_positions(fm, qc, OFF0) for qc in q])
    return clean + np.random.default_rng(seed).normal(0.0, sigma_m, clean.shape)


def register(fm, y, cfg=CFG, **kw):
    return stage.register_clips(fm, y, [f"c{i}" for i in range(len(y))], fm.keypoint_names, FPS, cfg, OFF0, **kw)


def rmse_deg(a, b):
    return float(np.degrees(np.sqrt(np.mean((a - b) ** 2))))


def test_the_prior_is_the_integrated_wiener_process():
    p = wiener_prior(2, 0.01, 1)
    np.testing.assert_allclose(p.F, [[1, 0.01], [0, 1]])
    np.testing.assert_allclose(p.Q, [[0.01 ** 3 / 3, 0.01 ** 2 / 2], [0.01 ** 2 / 2, 0.01]])
    p3 = wiener_prior(3, 0.5, 2)        # derivative-major: [q1 q2 q1' q2' q1'' q2'']
    assert p3.F.shape == (6, 6) and p3.F[0, 4] == pytest.approx(0.125) and p3.Q[4, 4] == pytest.approx(0.5)
    assert np.all(np.linalg.eigvalsh(p3.Q) > 0)


def test_without_noise_it_returns_the_truth(fm):
    q, v = smooth_clips(fm)
    reg = register(fm, keypoints_of(fm, q))
    assert rmse_deg(reg.qpos, q) < 0.05
    assert np.nanmean(reg.errors_mm) < 1e-3
    mid = slice(5, T - 5)     # the velocity of a diffuse start takes a few frames to settle
    assert rmse_deg(reg.qvel[:, mid], v[:, mid]) < 2.0     # deg/s, against reach speeds of ~1000 deg/s


def test_with_noise_it_beats_the_per_frame_cramer_rao_bound(fm):
    q, v = smooth_clips(fm)
    y = keypoints_of(fm, q, SIGMA_M)
    temporal, per_frame = register(fm, y), register(fm, y, PER_FRAME)
    bound = np.degrees(np.sqrt(np.mean(np.concatenate([stage.cramer_rao_joint_var(fm, qc, OFF0, SIGMA_M) for qc in q]))))
    assert rmse_deg(per_frame.qpos, q) > 0.8 * bound          # the per-frame solve sits near its bound
    assert rmse_deg(temporal.qpos, q) < 0.5 * bound
    assert rmse_deg(temporal.qvel, v) < 0.25 * rmse_deg(per_frame.qvel, v)
    # the weight comes from the data: its noise estimate recovers the noise that was added
    assert temporal.solve["noise_sd_mm"] == pytest.approx(SIGMA_M * 1e3, rel=0.15)
    assert not temporal.solve["grid_edge"]
    hf = {name: stage.highpass_rms_deg(r.qpos, FPS, 20.0, fm.joint_names)["all"] for name, r in
          (("temporal", temporal), ("per_frame", per_frame))}
    assert hf["temporal"] < 0.2 * hf["per_frame"]


def test_a_run_of_missing_frames_is_bridged(fm):
    q, _ = smooth_clips(fm)
    y = keypoints_of(fm, q, SIGMA_M)
    y[0, 25:35] = np.nan                                     # 10 frames with no keypoint, mid-reach
    reg = register(fm, y)
    assert np.isfinite(reg.qpos).all() and np.isfinite(reg.qvel).all()
    assert rmse_deg(reg.qpos[0, 25:35], q[0, 25:35]) < 3.0


def test_the_weight_never_reads_the_truth(fm, tmp_path):
    """The stage with the truth of its clips swapped registers the same: only the scores change."""
    from mimic_core import artifacts
    from mimic_core.data.twin import generate_trials, write_truth_h5

    twin = dict(PARAMS["twin"], n_trials=2, n_frames=T)
    trials = list(generate_trials(fm, twin, PARAMS["model"]["emg_muscles"], seed=3))
    prepared = tmp_path / "keypoints.h5"
    kp = np.stack([t.keypoints for t in trials])
    artifacts.write_prepared_keypoints(prepared, artifacts.PreparedKeypoints(
        ["trial01", "trial02"], tuple(fm.keypoint_names), kp, np.isfinite(kp).all(-1), FPS, "synthetic"))
    out = {}
    for name, order in (("right", (0, 1)), ("swapped", (1, 0))):
        truth = tmp_path / name / "truth"
        for clip, i in zip(("trial01", "trial02"), order):
            write_truth_h5(truth / f"{clip}.h5", trials[i], fm, FPS)
        p = repo_params({"data.truth_dir": str(truth), "stac.temporal.coarse_step": 4.0, "stac.temporal.fine_step": 1.0})
        m = stage.run_register(p, prepared, tmp_path / name / "registered", tmp_path / name / "m.json")
        out[name] = (m, [artifacts.read_registered(tmp_path / name / "registered" / f"{c}.h5").qpos
                         for c in ("trial01", "trial02")])
    (m_right, q_right), (m_swap, q_swap) = out["right"], out["swapped"]
    for a, b in zip(q_right, q_swap):
        np.testing.assert_array_equal(a, b)
    assert m_right["solve"] == m_swap["solve"]
    assert m_right["truth"]["joint_rmse_deg"] < m_swap["truth"]["joint_rmse_deg"]


def test_longest_gaps():
    valid = np.ones((2, 10, 3), bool)
    valid[0, 2:5] = False
    valid[0, 7, 0] = False                                   # one keypoint missing is no gap
    valid[1, 8:] = False
    assert longest_gaps(valid) == [(2, 3), (8, 2)]


def test_a_gap_longer_than_allowed_is_named_or_falls_back(fm):
    q, _ = smooth_clips(fm)
    y = keypoints_of(fm, q, SIGMA_M)
    n = CFG.temporal.max_gap_frames + 1
    y[1, 20:20 + n] = np.nan
    with pytest.raises(DataError, match=rf"clip 'c1'.*frames 20-{19 + n} \({n}\) have no keypoint"):
        register(fm, y)
    fallback = dataclasses.replace(CFG, temporal=dataclasses.replace(CFG.temporal, on_long_gap="per_frame"))
    said = []
    reg = register(fm, y, fallback, log=said.append)
    assert reg.solve["per_frame_clips"] == ["c1"] and "c1" in said[0] and "registered per frame" in said[0]
    assert np.isfinite(reg.qpos).all()
    alone = register(fm, y[:1], PER_FRAME)
    assert rmse_deg(reg.qpos[0], q[0]) < rmse_deg(alone.qpos[0], q[0])   # clip 0 still had the prior


def test_a_clip_too_short_for_the_prior_is_refused(fm):
    q, _ = smooth_clips(fm)
    y = keypoints_of(fm, q[:, :CFG.temporal.order], SIGMA_M)
    with pytest.raises(DataError, match="too short for the temporal prior"):
        stage.temporal_clips(np.isfinite(y).all(-1), ["c0", "c1"], CFG, "clips.h5")


def test_the_pipeline_default_is_the_temporal_prior():
    assert BASE.mode == "temporal" and math.isclose(stage.hf_cutoff(PARAMS), 20.0)
