"""The synthetic twin: reach trials generated from the model, with the ground truth kept.

Each trial mirrors one real reach (200 Hz, 100 frames): a minimum-jerk reach from a rest
posture through a lift posture to a grasp posture, postures drawn around the real clips'
typical values. From the joint trajectory:

- keypoints = forward kinematics at true offsets + measurement noise + a few dropped (NaN) points;
- muscle activations that produce the motion = inverse dynamics (mj_inverse), then a bounded,
  regularised static optimisation over the muscles (activation in [0, 1]);
- excitations (controls) that drive those activations through MuJoCo's activation dynamics;
- raw EMG at 30 kHz for the recorded muscles: activation-modulated broadband noise, an
  in-band amplifier floor, a low-frequency motion artefact and high-frequency noise that the
  band-pass must remove.

Everything is drawn from one `numpy` generator per trial, spawned from the seed, so a trial
does not depend on how many trials are made. The inputs (keypoints, EMG) and the truth
(joint angles, offsets, activations) are written to separate folders.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import mujoco
import numpy as np
from scipy import optimize, signal


from mimic_core.config import TwinSection, validate
from mimic_core import artifacts
from mimic_core.data import loaders
from mimic_core.io import write_json
from mimic_core.model import ForelimbModel, actuator_ids, keypoint_positions, load_forelimb

LABEL = "synthetic"


@dataclass(frozen=True)
class Trial:
    """One synthetic reach: inputs and ground truth."""

    name: str
    qpos: np.ndarray          # (F, nq) rad
    qvel: np.ndarray          # (F, nq) rad/s
    qacc: np.ndarray          # (F, nq) rad/s^2
    qpos_intended: np.ndarray  # (F, nq) the minimum-jerk reach the muscles were driven to follow
    onset_frame: int
    offsets: np.ndarray       # (K, 3) m, in each keypoint's body frame
    keypoints_clean: np.ndarray  # (F, K, 3) m
    keypoints: np.ndarray     # (F, K, 3) m, noisy, NaN = dropped
    activation: np.ndarray    # (F, nu) muscle activation state at each frame, in [0, 1]
    excitation: np.ndarray    # (F, nu) control held over each frame (MuJoCo ctrl)
    torque_residual: np.ndarray  # (F,) static-optimisation residual |A a - tau| / |tau| per frame
    emg: np.ndarray           # (samples, channels) uV


def min_jerk(t: np.ndarray, t0: float, t1: float, q0: np.ndarray, q1: np.ndarray):
    """Minimum-jerk move from q0 at t0 to q1 at t1, held outside: position, velocity, acceleration."""
    T = t1 - t0
    s = np.clip((t - t0) / T, 0.0, 1.0)[:, None]
    inside = ((t > t0) & (t < t1))[:, None]
    dq = (q1 - q0)[None, :]
    pos = q0 + dq * (10 * s**3 - 15 * s**4 + 6 * s**5)
    vel = np.where(inside, dq * (30 * s**2 - 60 * s**3 + 30 * s**4) / T, 0.0)
    acc = np.where(inside, dq * (60 * s - 180 * s**2 + 120 * s**3) / T**2, 0.0)
    return pos, vel, acc


def _posture(rng, spec, lo, hi, margin):
    q = rng.normal(np.deg2rad(spec["mean"]), np.deg2rad(spec["sd"]))
    return np.clip(q, lo + margin, hi - margin)


def reach_trajectory(rng: np.random.Generator, cfg: Mapping[str, Any], joint_range: np.ndarray):
    """Joint angles, velocities and accelerations of one reach, and its onset frame."""
    n, fps = int(cfg["n_frames"]), float(cfg["fps"])
    lo, hi = joint_range[:, 0], joint_range[:, 1]
    margin = np.deg2rad(cfg["joint_margin_deg"])
    rest = _posture(rng, cfg["rest_deg"], lo, hi, margin)
    lift = _posture(rng, cfg["lift_deg"], lo, hi, margin)
    grasp = _posture(rng, cfg["grasp_deg"], lo, hi, margin)
    onset = int(rng.integers(cfg["onset_frame"][0], cfg["onset_frame"][1] + 1))
    t_lift = onset / fps + rng.uniform(*cfg["lift_duration_s"])
    t_grasp = t_lift + rng.uniform(*cfg["grasp_duration_s"])
    t = np.arange(n) / fps
    p1, v1, a1 = min_jerk(t, onset / fps, t_lift, rest, lift)
    p2, v2, a2 = min_jerk(t, t_lift, t_grasp, lift, grasp)
    # The second move starts where the first ends: sum the increments.
    return p1 + (p2 - lift), v1 + v2, a1 + a2, onset


def _moment_dense(m: mujoco.MjModel, d: mujoco.MjData) -> np.ndarray:
    dense = np.zeros((m.nu, m.nv))
    mujoco.mju_sparse2dense(dense, d.actuator_moment, d.moment_rownnz, d.moment_rowadr, d.moment_colind)
    return dense


def muscle_gain_bias(m: mujoco.MjModel, d: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
    """Actuator force = gain * activation + bias at the current length and velocity."""
    act = d.act.copy()
    d.act[:] = 0.0
    mujoco.mj_fwdActuation(m, d)
    bias = d.actuator_force.copy()
    d.act[:] = 1.0
    mujoco.mj_fwdActuation(m, d)
    gain = d.actuator_force - bias
    d.act[:] = act
    return gain, bias


def muscle_activations_for(m: mujoco.MjModel, d: mujoco.MjData, qacc: np.ndarray, reg: float):
    """Static optimisation at the state in `d`: activations in [0, 1] whose torques give `qacc`.

    Solves min |A a - tau|^2 + reg |a|^2 with 0 <= a <= 1, where tau is the inverse-dynamics
    torque minus the passive muscle torque and A = moment^T diag(gain); both are scaled by |A|
    so that `reg` is relative. Returns the activations and the relative torque residual.
    """
    qacc_saved = d.qacc.copy()
    d.qacc[:] = qacc
    mujoco.mj_inverse(m, d)  # also computes actuator lengths, velocities and moments
    d.qacc[:] = qacc_saved
    tau = d.qfrc_inverse.copy()
    gain, bias = muscle_gain_bias(m, d)
    R = _moment_dense(m, d)
    A = R.T * gain[None, :]
    b = tau - R.T @ bias
    s = np.linalg.norm(A)
    lhs = np.vstack([A / s, np.sqrt(reg) * np.eye(m.nu)])
    rhs = np.concatenate([b / s, np.zeros(m.nu)])
    a = optimize.lsq_linear(lhs, rhs, bounds=(0.0, 1.0), method="bvls", tol=1e-12).x
    return a, float(np.linalg.norm(A @ a - b) / max(np.linalg.norm(tau), 1e-30))


def excitation_to_reach(m: mujoco.MjModel, act: np.ndarray, target: np.ndarray, h: float) -> np.ndarray:
    """Control u in [0, 1] that moves activation from `act` towards `target` within time `h`.

    MuJoCo's muscle activation is first order, da/dt = (u - a) / tau, with tau = tau_act (0.5 + 1.5 a)
    when rising and tau_deact / (0.5 + 1.5 a) when falling; holding u for h gives
    a(h) = u + (a - u) exp(-h / tau), solved here for u.
    """
    tau_act, tau_deact = m.actuator_dynprm[:, 0], m.actuator_dynprm[:, 1]
    tau = np.where(target > act, tau_act * (0.5 + 1.5 * act), tau_deact / (0.5 + 1.5 * act))
    e = np.exp(-h / tau)
    return np.clip((target - act * e) / (1.0 - e), 0.0, 1.0)


def computed_muscle_control(m: mujoco.MjModel, ref_qpos, ref_qvel, ref_qacc, fps: float,
                            cfg: Mapping[str, Any]):
    """Drive the muscles so that the simulated limb follows a reference (computed muscle control).

    At each frame: desired acceleration = reference acceleration + PD feedback on the tracking
    error; static optimisation gives the activations for it; the excitation that reaches them
    within the frame is held while MuJoCo integrates the full dynamics (muscle activation
    dynamics included). The returned trajectory is what the muscles actually produced.
    """
    F = ref_qpos.shape[0]
    d = mujoco.MjData(m)
    n_sub = int(round(1.0 / (fps * m.opt.timestep)))
    if not np.isclose(n_sub * m.opt.timestep * fps, 1.0):
        raise ValueError(f"model timestep {m.opt.timestep} s does not divide the frame period 1/{fps} s")
    w = 2 * np.pi * float(cfg["cmc_bandwidth_hz"])
    reg = float(cfg["static_opt_regularization"])
    d.qpos[:], d.qvel[:] = ref_qpos[0], ref_qvel[0]
    mujoco.mj_forward(m, d)
    # Start in equilibrium: the activation that holds the first posture.
    a0, _ = muscle_activations_for(m, d, ref_qacc[0], reg)
    d.act[:] = a0
    out = {k: np.zeros((F, m.nv)) for k in ("qpos", "qvel", "qacc")}
    act = np.zeros((F, m.nu))
    ctrl = np.zeros((F, m.nu))
    resid = np.zeros(F)
    for t in range(F):
        out["qpos"][t], out["qvel"][t] = d.qpos, d.qvel
        act[t] = d.act
        want = ref_qacc[t] + w * w * (ref_qpos[t] - d.qpos) + 2 * w * (ref_qvel[t] - d.qvel)
        a_star, resid[t] = muscle_activations_for(m, d, want, reg)
        ctrl[t] = excitation_to_reach(m, d.act.copy(), a_star, 1.0 / fps)
        d.ctrl[:] = ctrl[t]
        mujoco.mj_forward(m, d)
        out["qacc"][t] = d.qacc
        for _ in range(n_sub):
            mujoco.mj_step(m, d)
    return out["qpos"], out["qvel"], out["qacc"], act, ctrl, resid


def _band_noise(rng, n, fs, band, order=4):
    sos = signal.butter(order, band, btype="bandpass", fs=fs, output="sos")
    x = signal.sosfilt(sos, rng.standard_normal(n + 2000))[2000:]  # drop the filter's start-up
    return x / np.std(x)


def synth_emg(rng: np.random.Generator, activations: np.ndarray, fps: float, cfg: Mapping[str, Any]) -> np.ndarray:
    """Raw EMG (samples, channels) in uV from activations (frames, channels) sampled at `fps`."""
    fs = float(cfg["fs"])
    n_frames, n_ch = activations.shape
    n = int(round(n_frames / fps * fs))
    t = np.arange(n) / fs
    frame_t = np.arange(n_frames) / fps
    out = np.empty((n, n_ch))
    for c in range(n_ch):
        a = np.interp(t, frame_t, activations[:, c])
        muap = _band_noise(rng, n, fs, tuple(cfg["muap_hz"]))  # motor-unit activity: broadband, in the EMG band
        floor = rng.standard_normal(n)
        hf = _band_noise(rng, n, fs, tuple(cfg["hf_noise_hz"]))
        freqs = rng.uniform(*cfg["artefact_hz"], size=3)
        phases = rng.uniform(0, 2 * np.pi, size=3)
        artefact = np.sum(np.sin(2 * np.pi * freqs[:, None] * t[None, :] + phases[:, None]), axis=0) / 3
        out[:, c] = (
            cfg["gain_uv"] * a * muap
            + cfg["floor_uv"] * floor
            + cfg["hf_noise_uv"] * hf
            + cfg["artefact_uv"] * artefact
        )
    return out


def make_trial(fm: ForelimbModel, rng: np.random.Generator, cfg: Mapping[str, Any],
               emg_muscles: Mapping[str, str], name: str) -> Trial:
    """Generate one trial from its own random generator."""
    m = fm.model
    fps = float(cfg["fps"])
    ref_qpos, ref_qvel, ref_qacc, onset = reach_trajectory(rng, cfg, fm.joint_range)
    qpos, qvel, qacc, act, exc, resid = computed_muscle_control(m, ref_qpos, ref_qvel, ref_qacc, fps, cfg)
    off = cfg["offsets_mm"]
    offsets = rng.normal(np.asarray(off["mean"], float), off["sd"]) * 1e-3
    if offsets.shape != (len(fm.keypoint_names), 3):
        raise ValueError(f"twin.offsets_mm.mean must be {len(fm.keypoint_names)} x 3 (one per keypoint)")
    clean = keypoint_positions(fm, qpos, offsets)
    noisy = clean + rng.normal(0.0, cfg["keypoint_noise_mm"] * 1e-3, size=clean.shape)
    drop = rng.random(clean.shape[:2]) < cfg["dropout_fraction"]
    noisy[drop] = np.nan
    channels = list(cfg["emg"]["channels"])
    cols = actuator_ids(m, [emg_muscles[c] for c in channels])
    emg = synth_emg(rng, act[:, cols], fps, cfg["emg"])
    return Trial(name, qpos, qvel, qacc, ref_qpos, onset, offsets, clean, noisy, act, exc, resid, emg)


def trial_names(n: int) -> list[str]:
    return [f"trial{i + 1:02d}" for i in range(n)]


def generate_trials(fm: ForelimbModel, cfg: Mapping[str, Any], emg_muscles: Mapping[str, str], seed: int):
    """Yield the twin's trials; trial i uses the i-th child of SeedSequence(seed)."""
    children = np.random.SeedSequence(seed).spawn(int(cfg["n_trials"]))
    for name, ss in zip(trial_names(int(cfg["n_trials"])), children):
        yield make_trial(fm, np.random.default_rng(ss), cfg, emg_muscles, name)


def write_truth_h5(path: Path, trial: Trial, fm: ForelimbModel, fps: float) -> None:
    """Ground truth of one trial (never an input to the pipeline, only to its scoring)."""
    artifacts.write_truth(path, artifacts.TwinTruth(
        trial.qpos, trial.qvel, trial.qacc, trial.qpos_intended, list(fm.joint_names), trial.offsets,
        list(fm.keypoint_names), trial.keypoints_clean, trial.activation, trial.excitation, list(fm.muscle_names),
        trial.torque_residual, fps, trial.onset_frame, LABEL))


def make_twin(out_dir: str | os.PathLike, *, seed: int, twin_cfg: Mapping[str, Any],
              model_xml: str | None, keypoint_map: Mapping[str, str], emg_muscles: Mapping[str, str],
              progress=None) -> dict:
    """Write the synthetic twin to `out_dir` (pose-3d/, emg/, truth/, manifest.json); return the manifest."""
    validate(TwinSection, twin_cfg, "twin")   # every setting checked before the slow generation
    out = Path(out_dir)
    fm = load_forelimb(model_xml, keypoint_map)
    fps = float(twin_cfg["fps"])
    units = "mm"
    residuals = []
    for trial in generate_trials(fm, twin_cfg, emg_muscles, seed):
        loaders.write_anipose_csv(out / "pose-3d" / f"{trial.name}.csv", trial.keypoints, fm.keypoint_names, units=units)
        artifacts.write_twin_emg(out / "emg" / f"{trial.name}.h5", trial.emg.astype(np.float32),
                                 list(twin_cfg["emg"]["channels"]), float(twin_cfg["emg"]["fs"]),
                                 onset_s=trial.onset_frame / fps, label=LABEL)
        write_truth_h5(out / "truth" / f"{trial.name}.h5", trial, fm, fps)
        residuals.append(trial.torque_residual)
        if progress:
            progress(trial.name)
    res = np.concatenate(residuals)
    manifest = {
        "data": LABEL,
        "description": "Synthetic twin of the MIMIC-MJX mouse reach data set, generated from the model; "
                       "not a recording.",
        "generator": "mimic-bench make-twin",
        "seed": int(seed),
        "n_trials": int(twin_cfg["n_trials"]),
        "fps": fps,
        "keypoints": {"format": "anipose_csv", "units": units, "names": list(fm.keypoint_names)},
        "emg": {"format": "twin_emg_h5", "fs": float(twin_cfg["emg"]["fs"]), "units": "uV",
                "channels": {c: emg_muscles[c] for c in twin_cfg["emg"]["channels"]}},
        "model": Path(fm.xml).name,
        "keypoint_map": dict(keypoint_map),
        "static_optimization": {"torque_residual_rel_median": float(np.median(res)),
                                "torque_residual_rel_p95": float(np.percentile(res, 95))},
        "params": json.loads(json.dumps(dict(twin_cfg))),
    }
    write_json(out / "manifest.json", manifest)
    return manifest
