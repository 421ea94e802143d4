"""Deterministic rollouts of trained policies over every clip, and their tracking metrics.

The policy acts with its mean action under the mean intention (no sampling), from each clip's
first frame to its last, without early termination; records are kept at the reference rate (the
last control step of each frame where control runs faster). Keypoints are scored with the clip's
registered offsets, against the reference's own keypoint sites.
"""
from __future__ import annotations

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


def make_rollout(env: ImitationEnv, nets: Networks, normalize: bool):
    """jit-able (policy, clip indices) -> per-step records of deterministic rollouts from frame 0."""
    L = nets.intention_size

    def rollout(policy: dict, clips: jax.Array) -> dict:
        def one_clip(clip):
            s0 = env.reset_to(clip, jnp.zeros((), jnp.int32), jax.random.PRNGKey(0))

            def step(state, _):
                nobs = normalize_obs(policy["obs_norm"], state.obs, normalize)
                dist_params, mean, _, z, layers = policy_outputs(nets, policy["params"]["policy"], nobs,
                                                                 jnp.zeros((L,)))
                loc = jnp.split(dist_params, 2, axis=-1)[0]
                action = jnp.tanh(loc)  # the mode of the squashed Normal's mean
                nxt = env.step(state, action)
                d = nxt.pipeline_state
                rec = {"qpos": d.qpos, "ctrl": nxt.info["prev_ctrl"], "act": d.act, "force": d.actuator_force,
                       "velocity": actuator_velocity(d), "latent": z, "reward_joint": nxt.metrics["reward_joint"],
                       **{f"decoder_layer_{i}": h for i, h in enumerate(layers)}}
                return nxt, rec

            _, recs = jax.lax.scan(step, s0, None, length=(env.n_frames - 1) * env.hold)
            # at the reference rate: the state at the end of each frame's `hold` control steps
            recs = jax.tree_util.tree_map(lambda x: x[env.hold - 1::env.hold], recs)
            return recs, s0.pipeline_state.act

        return jax.vmap(one_clip)(clips)

    return rollout


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


def rollout_clips(env: ImitationEnv, nets: Networks, policy: dict, normalize: bool) -> dict[str, np.ndarray]:
    """Run every clip; the initial frame is prepended to qpos and activations (T frames each)."""
    recs, act0 = jax.jit(make_rollout(env, nets, normalize))(policy, jnp.arange(env.n_clips))
    out = {k: np.asarray(v, np.float64 if k != "latent" and not k.startswith("decoder") else np.float32)
           for k, v in recs.items()}
    out["qpos"] = np.concatenate([np.asarray(env.ref.qpos[:, :1], np.float64), out["qpos"]], axis=1)
    out["act"] = np.concatenate([np.asarray(act0, np.float64)[:, None], out["act"]], axis=1)
    if not np.isfinite(out["qpos"]).all():
        raise DataError(None, "qpos", "a rollout diverged (non-finite joint angles); the policy or physics settings "
                        "are unstable")
    return out


def tracking_metrics(rec: Mapping[str, np.ndarray], clips: ReferenceClips, fm: ForelimbModel, cfg: TrackConfig,
                     truth_activation: np.ndarray | None) -> tuple[dict, np.ndarray]:
    """The tracking metrics of one policy, and the rollout's keypoints (C, T, K, 3) m."""
    sites = jax.jit(jax.vmap(jax.vmap(keypoint_sites_fn(fm.model, fm.keypoint_body_ids), in_axes=(0, None))))
    kp = np.asarray(sites(jnp.asarray(rec["qpos"], jnp.float32), jnp.asarray(clips.offsets, jnp.float32)),
                    np.float64)
    err_mm = np.linalg.norm(kp - clips.sites, axis=-1)[:, 1:] * 1e3          # (C, T-1, K)
    moving = moving_keypoints(fm)
    scored = err_mm[..., moving]
    dq = np.degrees(rec["qpos"][:, 1:] - clips.qpos[:, 1:])
    power = np.abs(rec["velocity"]) * np.abs(rec["force"])
    out: dict[str, Any] = {
        "keypoint_error_mm": {
            "mean": float(scored.mean()), "median": float(np.median(scored)),
            "p95": float(np.percentile(scored, 95)),
            "per_keypoint": {k: float(err_mm[..., i].mean()) for i, k in enumerate(fm.keypoint_names)},
            "scored_keypoints": [k for k, mv in zip(fm.keypoint_names, moving) if mv],
        },
        "joint_error_deg": float(np.sqrt(np.mean(dq ** 2))),
        "joint_error_deg_per_joint": {n: float(np.sqrt(np.mean(dq[..., j] ** 2)))
                                      for j, n in enumerate(fm.joint_names)},
        "joint_reward": float(rec["reward_joint"].mean()),
        "action_hf_power": action_hf_power(rec["ctrl"], clips.fps, cfg.evaluate.hf_cutoff_hz),
        "energy": float(power.sum(-1).mean()),
        "mean_ctrl": float(rec["ctrl"].mean()),
    }
    if truth_activation is not None:
        out["activation_mae"] = float(np.abs(rec["act"][:, 1:] - truth_activation[:, 1:]).mean())
    return out, kp


def load_truth_activation(truth_dir: Path, clip_names: list[str], n_frames: int) -> np.ndarray:
    """The twin's true activations (clips, n_frames, nu), one truth file per clip."""
    acts = []
    for clip in clip_names:
        path = Path(truth_dir) / f"{clip}.h5"
        a = artifacts.read_truth(path).activation
        if a.shape[0] != n_frames:
            raise DataError(path, "activation", f"has {a.shape[0]} frames, the reference {n_frames}")
        acts.append(a)
    return np.stack(acts)


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
