"""The `register` stage: prepared keypoints -> one stac-mjx-schema HDF5 per clip, plus metrics.

Checks the input (names, missing data), runs the JAX STAC solver on all clips at once,
scores the result with MuJoCo's own kinematics (independent of the solver's), and writes
what the original tools write: qpos, qvel, offsets, kp_data, kp_names, marker_sites, xpos,
xquat, names_qpos, names_xpos, config.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import json

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import yaml

from mimic_core import artifacts
from mimic_core.config import Params, as_params
from mimic_core.data.plausible import check_clips_plausible
from mimic_core.errors import DataError
from mimic_core.io import atomic_dir, write_json
from mimic_core.model import ForelimbModel, body_names, keypoint_positions
from mimic_core.stac.smoother import longest_gaps, make_temporal, wiener_prior
from mimic_core.stac.solver import MM, StacConfig, make_kinematics, make_register, sites


@dataclass(frozen=True)
class Registration:
    """Registered clips: joint angles, offsets and the model's keypoint sites."""

    clip_names: list[str]
    kp_names: tuple[str, ...]
    keypoints: np.ndarray   # (C, T, K, 3) m input, NaN = missing
    qpos: np.ndarray        # (C, T, nq) rad
    offsets: np.ndarray     # (C, K, 3) m, in each keypoint's body frame
    sites: np.ndarray       # (C, T, K, 3) m, MuJoCo kinematics of qpos + offsets
    fps: float
    qvel: np.ndarray        # (C, T, nq) rad/s: the smoothed velocity (temporal) or finite differences (per frame)
    solve: dict             # how it was solved: mode, and for the temporal prior its data-chosen weight

    @property
    def errors_mm(self) -> np.ndarray:
        """(C, T, K) keypoint-to-site distance in mm, NaN where the keypoint is missing."""
        return np.linalg.norm(self.sites - self.keypoints, axis=-1) * 1e3


def check_clips(keypoints: np.ndarray, clip_names: Sequence[str], kp_names: Sequence[str], cfg: StacConfig,
                source: str) -> np.ndarray:
    """The finite mask (C, T, K); an unusable clip is an error that names it."""
    valid = np.isfinite(keypoints).all(-1)
    for c, name in enumerate(clip_names):
        if not valid[c].any():
            raise DataError(source, f"clip '{name}'", "every keypoint is missing (NaN): nothing to register")
        full = int(valid[c].all(-1).sum())
        if full < cfg.min_fit_frames:
            raise DataError(source, f"clip '{name}'", f"only {full} frames have every keypoint; fitting offsets "
                            f"needs at least stac.min_fit_frames={cfg.min_fit_frames}")
        missing_kp = [n for n, ok in zip(kp_names, valid[c].any(0)) if not ok]
        if missing_kp:
            raise DataError(source, f"clip '{name}'", f"keypoint(s) {missing_kp} are missing in every frame")
    return valid


_REGISTRARS: dict = {}


def _registrar(fm: ForelimbModel, cfg: StacConfig):
    """One jitted solver per (model, keypoint bodies, settings), so repeated calls reuse its compilation."""
    key = (id(fm.model), tuple(int(b) for b in fm.keypoint_body_ids), cfg)
    if key not in _REGISTRARS:
        _REGISTRARS[key] = (fm.model, make_register(make_kinematics(fm.model, fm.keypoint_body_ids), cfg))
    return _REGISTRARS[key][1]


def _temporal_solver(fm: ForelimbModel, cfg: StacConfig, fps: float):
    key = ("temporal", id(fm.model), tuple(int(b) for b in fm.keypoint_body_ids), cfg, float(fps))
    if key not in _REGISTRARS:
        t = cfg.temporal
        kin = make_kinematics(fm.model, fm.keypoint_body_ids)
        _REGISTRARS[key] = (fm.model, make_temporal(kin, wiener_prior(t.order, 1.0 / fps, fm.model.nq), t.log10_ratio,
                                                    t.coarse_step, t.fine_step, t.gn_iters, cfg.offset_reg))
    return _REGISTRARS[key][1]


def temporal_clips(valid: np.ndarray, clip_names: Sequence[str], cfg: StacConfig, source: str, log=None) -> np.ndarray:
    """Which clips the temporal prior registers (bool (C,)); a gap it may not bridge is an error or, if params
    say so, that clip falls back to the per-frame solve (logged)."""
    t = cfg.temporal
    if valid.shape[1] < t.order + 1:
        raise DataError(source, "keypoints", f"clips of {valid.shape[1]} frames are too short for the temporal prior "
                        f"of order {t.order} (needs at least {t.order + 1}); set stac.mode: per_frame")
    use = np.ones(len(clip_names), bool)
    for c, (start, length) in enumerate(longest_gaps(valid)):
        if length > t.max_gap_frames:
            what = (f"frames {start}-{start + length - 1} ({length}) have no keypoint, longer than "
                    f"stac.temporal.max_gap_frames={t.max_gap_frames}")
            if t.on_long_gap == "error":
                raise DataError(source, f"clip '{clip_names[c]}'", what + " (set stac.temporal.on_long_gap: per_frame "
                                "to register such clips per frame)")
            use[c] = False
            if log:
                log(f"clip '{clip_names[c]}': {what}; registered per frame")
    return use


def solve_temporal(fm: ForelimbModel, cfg: StacConfig, fps: float, keypoints: np.ndarray, valid: np.ndarray,
                   qpos: np.ndarray, offsets: np.ndarray, offsets0_m: np.ndarray):
    """The temporal prior's solve from the per-frame solution: (qpos, qvel, offsets m, solve info)."""
    run = _temporal_solver(fm, cfg, fps)
    with jax.enable_x64(True):
        y = jnp.asarray(np.where(valid[..., None], keypoints, 0.0) * MM, jnp.float64)
        off0 = jnp.broadcast_to(jnp.asarray(offsets0_m * MM, jnp.float64), offsets.shape)
        out = run(jnp.asarray(qpos, jnp.float64), jnp.asarray(offsets * MM, jnp.float64), y, jnp.asarray(valid), off0)
        q, qd, off, tried, ll, sigma = (np.asarray(a) for a in out)
    b = int(np.argmax(ll))   # the ratio whose solution the solver returned
    best = tried[b]
    lo, hi = cfg.temporal.log10_ratio
    info = {"log10_ratio": float(best), "noise_sd_mm": float(sigma[b]),
            "grid_edge": bool(np.isclose(best, lo) or np.isclose(best, hi)),
            "log_likelihood": {f"{g:g}": float(v) for g, v in sorted(zip(tried, ll))}}
    return q, qd, off / MM, info


def register_clips(fm: ForelimbModel, keypoints: np.ndarray, clip_names: Sequence[str], kp_names: Sequence[str],
                   fps: float, cfg: StacConfig, offsets0_m: np.ndarray, source: str = "keypoints",
                   log=None) -> Registration:
    """Register clips (C, T, K, 3) in metres (NaN = missing) to the model."""
    if tuple(kp_names) != tuple(fm.keypoint_names):
        raise DataError(source, "kp_names", f"keypoints {list(kp_names)} do not match the keypoint map "
                        f"{list(fm.keypoint_names)}")
    valid = check_clips(keypoints, clip_names, kp_names, cfg, source)
    offsets0 = np.asarray(offsets0_m, float)
    if offsets0.shape != (len(kp_names), 3):
        raise DataError("params.yaml", "stac.initial_offsets_mm", f"expected {len(kp_names)} x 3 values")
    use = temporal_clips(valid, clip_names, cfg, source, log) if cfg.mode == "temporal" else None
    register = _registrar(fm, cfg)
    qpos, offsets = register(np.where(valid[..., None], keypoints, 0.0), valid, offsets0)
    qpos, offsets = np.asarray(qpos, np.float64), np.asarray(offsets, np.float64)
    qvel = np.gradient(qpos, 1.0 / fps, axis=1)
    solve: dict[str, Any] = {"mode": cfg.mode}
    if use is not None and use.any():
        q, qd, off, info = solve_temporal(fm, cfg, fps, keypoints[use], valid[use], qpos[use], offsets[use], offsets0)
        qpos[use], qvel[use], offsets[use] = q, qd, off
        solve.update(info, per_frame_clips=[n for n, u in zip(clip_names, use) if not u])
    bad = [clip_names[c] for c in range(len(clip_names))
           if not (np.isfinite(qpos[c]).all() and np.isfinite(qvel[c]).all() and np.isfinite(offsets[c]).all())]
    if bad:
        raise DataError(source, "qpos", f"the solve diverged (non-finite result) for clips {bad}")
    sites = np.stack([keypoint_positions(fm, qpos[c], offsets[c]) for c in range(len(clip_names))])
    return Registration(list(clip_names), tuple(kp_names), keypoints, qpos, offsets, sites, float(fps), qvel, solve)


def write_registered_h5(path: Path, reg: Registration, c: int, fm: ForelimbModel, config: Mapping[str, Any],
                        label: str) -> None:
    """One clip in the stac-mjx schema (the format of the real clips), float32 like the original."""
    m = fm.model
    d = mujoco.MjData(m)
    T = reg.qpos.shape[1]
    xpos = np.zeros((T, m.nbody, 3))
    xquat = np.zeros((T, m.nbody, 4))
    for t in range(T):
        d.qpos[:] = reg.qpos[c, t]
        mujoco.mj_kinematics(m, d)
        xpos[t], xquat[t] = d.xpos, d.xquat
    artifacts.write_registered(path, artifacts.RegisteredClip(
        reg.qpos[c], reg.qvel[c], reg.offsets[c], reg.sites[c], list(fm.joint_names),
        kp_data=reg.keypoints[c].reshape(T, -1), kp_names=list(reg.kp_names), xpos=xpos, xquat=xquat,
        names_xpos=body_names(m), config=yaml.safe_dump(dict(config), sort_keys=True), fps=reg.fps, label=label))


def _summary(e: np.ndarray) -> dict[str, float]:
    e = e[np.isfinite(e)]
    return {"mean": float(e.mean()), "median": float(np.median(e)), "p95": float(np.percentile(e, 95))}


def cramer_rao_joint_var(fm: ForelimbModel, qpos: np.ndarray, offsets_m: np.ndarray, sigma_m: float) -> np.ndarray:
    """Per-frame Cramer-Rao lower bound (T, nq) on the joint-angle variance (rad^2), offsets known.

    With isotropic keypoint noise sigma, any unbiased estimate of a frame's angles has
    cov >= sigma^2 (J^T J)^-1, J the Jacobian of the keypoint sites at the true angles. Knowing
    the offsets can only help, so this also bounds STAC, which estimates them.
    """
    kin = make_kinematics(fm.model, fm.keypoint_body_ids)
    jac = jax.jit(jax.vmap(jax.jacfwd(lambda q, o: sites(kin, q, o).ravel()), in_axes=(0, None)))
    J = np.asarray(jac(jnp.asarray(qpos, jnp.float32), jnp.asarray(np.asarray(offsets_m) * 1e3, jnp.float32)),
                   np.float64)
    return np.stack([np.diag(np.linalg.pinv(j.T @ j)) for j in J]) * (sigma_m * 1e3) ** 2


def cramer_rao_joint_rmse_deg(fm: ForelimbModel, truth_dir: Path, clips: Sequence[str]) -> dict | None:
    """The lowest joint RMSE any unbiased per-frame estimator can reach on the twin; sigma from its manifest."""
    manifest = truth_dir.parent / "manifest.json"
    try:
        sigma_mm = float(json.loads(manifest.read_text())["params"]["keypoint_noise_mm"])
    except (OSError, KeyError, ValueError):
        return None
    var = []
    for clip in clips:
        true = artifacts.read_truth(artifacts.clip_file(truth_dir, clip))
        var.append(cramer_rao_joint_var(fm, true.qpos, true.offsets, sigma_mm * 1e-3))
    rmse = np.degrees(np.sqrt(np.mean(np.concatenate(var), axis=0)))
    return {"all": float(np.sqrt(np.mean(rmse ** 2))), **dict(zip(fm.joint_names, map(float, rmse))),
            "keypoint_noise_mm": sigma_mm}


def _rms_deg(x: np.ndarray) -> float:
    """RMS of angles (or angular velocities) in rad, in degrees."""
    return float(np.degrees(np.sqrt(np.mean(x ** 2))))


def _rms_deg_per_joint(x: np.ndarray, joint_names: Sequence[str]) -> dict[str, float]:
    return {name: _rms_deg(x[..., j]) for j, name in enumerate(joint_names)}


def highpass_rms_deg(q: np.ndarray, fps: float, cutoff_hz: float, joint_names: Sequence[str]) -> dict[str, float]:
    """RMS (deg) of joint angles (clips, frames, nq) above `cutoff_hz`: a 4th-order Butterworth high-pass run
    forward and back along each clip; overall and per joint."""
    from scipy import signal

    sos = signal.butter(4, cutoff_hz, btype="highpass", fs=fps, output="sos")
    hf = signal.sosfiltfilt(sos, np.asarray(q, np.float64), axis=1)
    return {"all": _rms_deg(hf), **_rms_deg_per_joint(hf, joint_names)}


def registration_metrics(reg: Registration, label: str, joint_names: Sequence[str], *, hf_cutoff_hz: float,
                         truth_dir: Path | None = None, fm: ForelimbModel | None = None) -> dict:
    """Keypoint error (mm) overall, per keypoint and per clip, the trajectory's high-frequency content and how
    it was solved; on the twin also the errors against truth."""
    e = reg.errors_mm
    out: dict[str, Any] = {
        "data": label,
        "n_clips": len(reg.clip_names),
        "keypoint_error_mm": {
            **_summary(e),
            "per_keypoint": {k: float(np.nanmean(e[..., i])) for i, k in enumerate(reg.kp_names)},
            "per_clip": {c: float(np.nanmean(e[i])) for i, c in enumerate(reg.clip_names)},
        },
        "joint_hf_rms_deg": highpass_rms_deg(reg.qpos, reg.fps, hf_cutoff_hz, joint_names),
        "hf_cutoff_hz": float(hf_cutoff_hz),
        "solve": {k: v for k, v in reg.solve.items() if k != "log_likelihood"},
    }
    if truth_dir:
        dq, dv, doff = [], [], []
        for i, clip in enumerate(reg.clip_names):
            true = artifacts.read_truth(artifacts.clip_file(truth_dir, clip))
            dq.append(reg.qpos[i] - true.qpos)
            dv.append(reg.qvel[i] - true.qvel)
            doff.append(np.linalg.norm(reg.offsets[i] - true.offsets, axis=-1) * 1e3)
        hf_err = highpass_rms_deg(np.stack(dq), reg.fps, hf_cutoff_hz, joint_names)
        dq, dv = np.concatenate(dq), np.concatenate(dv)
        bound = cramer_rao_joint_rmse_deg(fm, Path(truth_dir), reg.clip_names) if fm is not None else None
        out["truth"] = {
            "joint_rmse_deg": _rms_deg(dq),
            "joint_velocity_rmse_deg_s": _rms_deg(dv),
            "joint_velocity_rmse_deg_s_per_joint": _rms_deg_per_joint(dv, joint_names),
            "joint_hf_rms_deg": hf_err,
            "joint_rmse_deg_per_joint": _rms_deg_per_joint(dq, joint_names),
            "offset_error_mm": float(np.mean(doff)),
            "offset_error_mm_per_keypoint": {k: float(np.mean(np.stack(doff)[:, i]))
                                             for i, k in enumerate(reg.kp_names)},
        }
        if bound is not None:
            out["truth"]["joint_rmse_deg_cramer_rao_bound"] = bound
    return out


def stac_settings(params: Mapping[str, Any] | Params) -> tuple[StacConfig, np.ndarray]:
    """The checked solver settings and the initial offsets (m, one row per keypoint) from params."""
    s = as_params(params).stac
    return s.solver(), np.asarray(s.initial_offsets_mm, float) * 1e-3


def hf_cutoff(params: Mapping[str, Any] | Params) -> float:
    """params stac.hf_cutoff_hz: above it joint motion is scored as high-frequency."""
    return as_params(params).stac.hf_cutoff_hz


def run_register(params: Mapping[str, Any], prepared: Path, out_dir: Path, metrics_path: Path, log=None) -> dict:
    """The whole stage (`log`: where a clip that falls back to the per-frame solve is reported)."""
    from mimic_core.model import load_forelimb

    p = as_params(params)
    fm = load_forelimb(p.model.xml, p.model.keypoint_map)
    kp = artifacts.read_prepared_keypoints(prepared)
    label = kp.label
    cfg, off0 = stac_settings(p)
    plausibility = check_clips_plausible(fm, kp.keypoints, kp.clip_names, [prepared] * len(kp.clip_names),
                                         p.data.keypoints.plausibility, "m", log)
    reg = register_clips(fm, kp.keypoints, kp.clip_names, kp.kp_names, kp.fps, cfg, off0, source=str(prepared),
                         log=log)
    truth = p.data.truth_dir or None
    metrics = registration_metrics(reg, label, fm.joint_names, hf_cutoff_hz=p.stac.hf_cutoff_hz,
                                   truth_dir=Path(truth) if truth else None, fm=fm)
    metrics["keypoint_plausibility"] = plausibility
    write_registrations(out_dir, reg, fm, params, label, before_replace=lambda: write_json(metrics_path, metrics))
    return metrics


def write_registrations(out_dir: Path, reg: Registration, fm: ForelimbModel, params: Mapping[str, Any],
                        label: str, before_replace=None) -> None:
    """One HDF5 per clip into `out_dir`, replaced whole; each records the settings it was made with.
    `before_replace` runs once every clip is written, before the folder replaces the old one (the
    metrics: a failure there leaves the old clips and the old metrics together)."""
    config = {"model": Path(fm.xml).name, "keypoint_map": _keypoint_map(fm),
              "stac": dict(params.get("stac", {}))}
    with atomic_dir(out_dir) as tmp:
        for c, clip in enumerate(reg.clip_names):
            write_registered_h5(artifacts.clip_file(tmp, clip), reg, c, fm, config, label)
        if before_replace is not None:
            before_replace()


def _keypoint_map(fm: ForelimbModel) -> dict[str, str]:
    """The keypoint map in use: the model's keypoints with their bodies' names."""
    names = body_names(fm.model)
    return {k: names[b] for k, b in zip(fm.keypoint_names, fm.keypoint_body_ids)}
