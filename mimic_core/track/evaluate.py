"""Deterministic rollouts of trained policies over every clip, their tracking metrics, and baselines.

The policy acts with its mean action under the mean intention (no sampling), from each clip's
first frame to its last, without early termination; records are kept at the reference rate (the
last control step of each frame where control runs faster). Keypoints are scored with the clip's
registered offsets, against the reference's own keypoint sites and, on the twin, against the
true joint angles and noise-free keypoints. Training and held-out clips are scored apart, and
trivial outputs (the mean trajectory, the twin's controls replayed open loop) beside them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from mimic_core import artifacts
from mimic_core.errors import DataError
from mimic_core.model import ForelimbModel
from mimic_core.config import TrackConfig
from mimic_core.track.env import ImitationEnv, actuator_velocity, keypoint_sites_fn
from mimic_core.track.losses import normalize_obs, policy_outputs
from mimic_core.track.networks import Networks
from mimic_core.track.reference import ReferenceClips


def abstract_policy(nets: Networks, env: ImitationEnv) -> dict:
    """The structure of a saved policy (parameters and observation statistics), without computing it."""
    from brax.training.acme import running_statistics

    def build(key):
        params = nets.init(key, env.observation_size)
        return {"params": params, "obs_norm": running_statistics.init_state(env.reset(key).obs)}

    return jax.eval_shape(build, jax.random.PRNGKey(0))


def _scan_clips(env: ImitationEnv, act):
    """jit-able (source, clip indices) -> per-step records from frame 0 of each clip, where
    act(source, state, clip, k) -> (action, extra records) chooses control step k's action; records are kept at
    the reference rate (the state at the end of each frame's `hold` control steps)."""
    def run(source, clips: jax.Array, init_act: jax.Array | None = None) -> dict:
        def one_clip(clip, a0):
            s0 = env.reset_to(clip, jnp.zeros((), jnp.int32), jax.random.PRNGKey(0))
            if a0 is not None:
                s0 = s0.replace(pipeline_state=s0.pipeline_state.replace(act=a0))

            def step(carry, k):
                action, extra = act(source, carry, clip, k)
                nxt = env.step(carry, action)
                d = nxt.pipeline_state
                rec = {"qpos": d.qpos, "ctrl": nxt.info["prev_ctrl"], "act": d.act, "force": d.actuator_force,
                       "velocity": actuator_velocity(d), "reward_joint": nxt.metrics["reward_joint"], **extra}
                return nxt, rec

            _, recs = jax.lax.scan(step, s0, jnp.arange((env.n_frames - 1) * env.hold))
            recs = jax.tree_util.tree_map(lambda x: x[env.hold - 1::env.hold], recs)
            return recs, s0.pipeline_state.act

        return jax.vmap(one_clip)(clips, init_act)

    return run


def make_rollout(env: ImitationEnv, nets: Networks, normalize: bool):
    """jit-able (policy, clip indices) -> per-step records of deterministic rollouts from frame 0."""
    L = nets.intention_size

    def act(policy, state, clip, k):
        nobs = normalize_obs(policy["obs_norm"], state.obs, normalize)
        dist_params, mean, _, z, layers = policy_outputs(nets, policy["params"]["policy"], nobs, jnp.zeros((L,)))
        loc = jnp.split(dist_params, 2, axis=-1)[0]
        # the mode of the squashed Normal's mean
        return jnp.tanh(loc), {"latent": z, **{f"decoder_layer_{i}": h for i, h in enumerate(layers)}}

    run = _scan_clips(env, act)
    return lambda policy, clips: run(policy, clips)


def make_open_loop(env: ImitationEnv):
    """jit-able (controls (C, T, nu), initial activations (C, nu), clip indices) -> records of the clips'
    stored controls replayed without feedback: frame t's control held over its `hold` control steps."""
    def act(ctrl, state, clip, k):
        u = ctrl[clip, jnp.minimum(k // env.hold, ctrl.shape[1] - 1)]
        return env.action_for(u), {}

    run = _scan_clips(env, act)
    return lambda ctrl, act0, clips: run(ctrl, clips, act0)


def action_hf_power(ctrl: np.ndarray, fps: float, cutoff_hz: float) -> float:
    """Share of the (mean-removed) action power above `cutoff_hz`, pooled over clips and muscles."""
    x = ctrl - ctrl.mean(axis=1, keepdims=True)
    power = np.abs(np.fft.rfft(x, axis=1)) ** 2
    freqs = np.fft.rfftfreq(x.shape[1], 1.0 / fps)
    total = power[:, freqs > 0].sum()
    return float(power[:, freqs > cutoff_hz].sum() / total) if total > 0 else 0.0


def moving_keypoints(fm: ForelimbModel) -> np.ndarray:
    """Keypoints whose body has a joint between it and the world (a welded one cannot be tracked badly)."""
    m = fm.model
    moving = []
    for b in fm.keypoint_body_ids:
        b, has_joint = int(b), False
        while b > 0:
            has_joint |= m.body_jntnum[b] > 0
            b = int(m.body_parentid[b])
        moving.append(has_joint)
    return np.array(moving)


def _finish(env: ImitationEnv, recs: dict, act0) -> dict[str, np.ndarray]:
    """Host arrays; the initial frame is prepended to qpos and activations (T frames each)."""
    out = {k: np.asarray(v, np.float64 if k != "latent" and not k.startswith("decoder") else np.float32)
           for k, v in recs.items()}
    out["qpos"] = np.concatenate([np.asarray(env.ref.qpos[:, :1], np.float64), out["qpos"]], axis=1)
    out["act"] = np.concatenate([np.asarray(act0, np.float64)[:, None], out["act"]], axis=1)
    if not np.isfinite(out["qpos"]).all():
        raise DataError(None, "qpos", "a rollout diverged (non-finite joint angles); the policy or physics settings "
                        "are unstable")
    return out


def rollout_clips(env: ImitationEnv, nets: Networks, policy: dict, normalize: bool) -> dict[str, np.ndarray]:
    """Run the policy on every clip of the env."""
    recs, act0 = jax.jit(make_rollout(env, nets, normalize))(policy, jnp.arange(env.n_clips))
    return _finish(env, recs, act0)


def open_loop_clips(env: ImitationEnv, ctrl: np.ndarray, act0: np.ndarray) -> dict[str, np.ndarray]:
    """Replay stored controls (C, T, nu) on every clip of the env, from the reference's first pose and the
    stored initial activations (C, nu)."""
    recs, a0 = jax.jit(make_open_loop(env))(jnp.asarray(ctrl, jnp.float32), jnp.asarray(act0, jnp.float32),
                                            jnp.arange(env.n_clips))
    return _finish(env, recs, a0)


@dataclass(frozen=True)
class Truth:
    """The twin's ground truth of the clips, in the reference's clip order and the model's keypoint order."""

    qpos: np.ndarray        # (C, T, nq) rad
    keypoints: np.ndarray   # (C, T, K, 3) m, noise-free
    activation: np.ndarray  # (C, T, nu)
    excitation: np.ndarray  # (C, T, nu) the controls that made the motion, frame t's held until t + 1

    def subset(self, idx) -> "Truth":
        return Truth(self.qpos[idx], self.keypoints[idx], self.activation[idx], self.excitation[idx])


def load_truth(truth_dir: Path, clip_names: list[str], n_frames: int, kp_names: list[str]) -> Truth:
    """The twin's truth of each clip (one truth file per clip name)."""
    fields: dict[str, list] = {"qpos": [], "keypoints": [], "activation": [], "excitation": []}
    for clip in clip_names:
        path = Path(truth_dir) / f"{clip}.h5"
        t = artifacts.read_truth(path)
        if t.qpos.shape[0] != n_frames:
            raise DataError(path, "qpos", f"has {t.qpos.shape[0]} frames, the reference {n_frames}")
        missing = [k for k in kp_names if k not in t.kp_names]
        if missing:
            raise DataError(path, "kp_names", f"{t.kp_names} lack the keypoint(s) {missing} of the keypoint map")
        fields["qpos"].append(t.qpos)
        fields["keypoints"].append(t.keypoints_clean[:, [t.kp_names.index(k) for k in kp_names]])
        fields["activation"].append(t.activation)
        fields["excitation"].append(t.excitation)
    return Truth(**{k: np.stack(v) for k, v in fields.items()})


def keypoints_of(fm: ForelimbModel, qpos: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Keypoint positions (C, T, K, 3) m of joint angles (C, T, nq) with each clip's offsets (C, K, 3)."""
    sites = jax.jit(jax.vmap(jax.vmap(keypoint_sites_fn(fm.model, fm.keypoint_body_ids), in_axes=(0, None))))
    return np.asarray(sites(jnp.asarray(qpos, jnp.float32), jnp.asarray(offsets, jnp.float32)), np.float64)


def pose_errors(qpos: np.ndarray, kp: np.ndarray, target_qpos: np.ndarray, target_kp: np.ndarray,
                fm: ForelimbModel) -> dict[str, Any]:
    """Joint error (RMS, deg) and keypoint error (mm) of a trajectory against a target, over frames 1.. (frame 0
    is where every rollout starts)."""
    err_mm = np.linalg.norm(kp - target_kp, axis=-1)[:, 1:] * 1e3          # (C, T-1, K)
    moving = moving_keypoints(fm)
    scored = err_mm[..., moving]
    dq = np.degrees(qpos[:, 1:] - target_qpos[:, 1:])
    return {
        "keypoint_error_mm": {
            "mean": float(scored.mean()), "median": float(np.median(scored)),
            "p95": float(np.percentile(scored, 95)),
            "per_keypoint": {k: float(err_mm[..., i].mean()) for i, k in enumerate(fm.keypoint_names)},
            "scored_keypoints": [k for k, mv in zip(fm.keypoint_names, moving) if mv],
        },
        "joint_error_deg": float(np.sqrt(np.mean(dq ** 2))),
        "joint_error_deg_per_joint": {n: float(np.sqrt(np.mean(dq[..., j] ** 2)))
                                      for j, n in enumerate(fm.joint_names)},
    }


def scored_against(qpos: np.ndarray, kp: np.ndarray, clips: ReferenceClips, fm: ForelimbModel,
                   truth: Truth | None) -> dict[str, Any]:
    """Errors against the reference, and under "truth" against the twin's true joint angles and noise-free
    keypoints where there is a truth."""
    out = pose_errors(qpos, kp, clips.qpos, clips.sites, fm)
    if truth is not None:
        out["truth"] = pose_errors(qpos, kp, truth.qpos, truth.keypoints, fm)
    return out


def tracking_metrics(rec: Mapping[str, np.ndarray], clips: ReferenceClips, fm: ForelimbModel, cfg: TrackConfig,
                     truth: Truth | None) -> tuple[dict, np.ndarray]:
    """The tracking metrics of one rollout over `clips`, and its keypoints (C, T, K, 3) m."""
    kp = keypoints_of(fm, rec["qpos"], clips.offsets)
    power = np.abs(rec["velocity"]) * np.abs(rec["force"])
    out: dict[str, Any] = {
        "n_clips": len(clips.clip_names),
        **scored_against(rec["qpos"], kp, clips, fm, truth),
        "joint_reward": float(rec["reward_joint"].mean()),
        "action_hf_power": action_hf_power(rec["ctrl"], clips.fps, cfg.evaluate.hf_cutoff_hz),
        "energy": float(power.sum(-1).mean()),
        "mean_ctrl": float(rec["ctrl"].mean()),
    }
    if truth is not None:
        out["activation_mae"] = float(np.abs(rec["act"][:, 1:] - truth.activation[:, 1:]).mean())
    return out, kp


def take(rec: Mapping[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    """The records of the clips at `idx`."""
    return {k: v[idx] for k, v in rec.items()}


def split_metrics(rec: Mapping[str, np.ndarray], clips: ReferenceClips, fm: ForelimbModel, cfg: TrackConfig,
                  truth: Truth | None, held: np.ndarray) -> tuple[dict, np.ndarray]:
    """{"train": ..., "held_out": ...}: the metrics on each non-empty part, and the keypoints of all clips."""
    kp = keypoints_of(fm, rec["qpos"], clips.offsets)
    out = {}
    for part, mask in (("train", ~held), ("held_out", held)):
        idx = np.flatnonzero(mask)
        if idx.size:
            out[part], _ = tracking_metrics(take(rec, idx), clips.subset(idx), fm, cfg,
                                            truth.subset(idx) if truth is not None else None)
    return out, kp


def baseline_metrics(env: ImitationEnv, clips: ReferenceClips, fm: ForelimbModel, cfg: TrackConfig,
                     truth: Truth | None, held: np.ndarray) -> dict[str, Any]:
    """What trivial outputs score, on the same clips and by the same metrics as the policies:
    - mean_trajectory: every clip gets the frame-by-frame mean of the training clips' reference (clip-agnostic);
    - open_loop: the twin's own stored controls replayed without feedback in the policies' physics (only where
      the clips have a truth);
    - reference: the registered reference itself (against the truth only: it is its own target)."""
    out: dict[str, Any] = {}
    mean_q = np.broadcast_to(clips.qpos[~held].mean(axis=0), clips.qpos.shape)
    parts = {part: np.flatnonzero(mask) for part, mask in (("train", ~held), ("held_out", held)) if mask.any()}

    def score(qpos):
        kp = keypoints_of(fm, qpos, clips.offsets)
        return {part: {"n_clips": int(idx.size), **scored_against(qpos[idx], kp[idx], clips.subset(idx), fm,
                                                                  truth.subset(idx) if truth is not None else None)}
                for part, idx in parts.items()}

    out["mean_trajectory"] = score(np.array(mean_q))
    if truth is not None:
        rec = open_loop_clips(env, truth.excitation, truth.activation[:, 0])
        out["open_loop"], _ = split_metrics(rec, clips, fm, cfg, truth, held)
        kp = keypoints_of(fm, clips.qpos, clips.offsets)
        out["reference"] = {part: {"n_clips": int(idx.size), "truth": pose_errors(
            clips.qpos[idx], kp[idx], truth.qpos[idx], truth.keypoints[idx], fm)} for part, idx in parts.items()}
    return out


def write_rollout(path: Path, rec: Mapping[str, np.ndarray], kp: np.ndarray, clips: ReferenceClips,
                  fm: ForelimbModel, weight: str, label: str) -> None:
    """One HDF5 per policy: states, controls, muscle activity, and the network's internal activity."""
    arrays = {
        "qpos": rec["qpos"],
        "qpos_reference": clips.qpos,
        "keypoints": kp,
        "keypoints_reference": clips.sites,
        "actions": rec["ctrl"],
        "activations": rec["act"],
        "forces": rec["force"],
        "latent": rec["latent"],
        **{k: v for k, v in rec.items() if k.startswith("decoder_layer_")},
    }
    artifacts.write_rollout(path, artifacts.Rollout(list(clips.clip_names), list(fm.joint_names),
                                                    list(fm.muscle_names), list(fm.keypoint_names), arrays,
                                                    clips.fps, label, weight))
