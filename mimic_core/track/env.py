"""The imitation env: the forelimb in MJX, driven by 9 muscle controls to follow reference clips.

A small class over an MJX model (mujoco_playground's convention) with brax's `State`; `reset`
and `step` are pure and vmappable. `AutoReset` starts a fresh episode (a new random clip and
start frame) wherever one ends.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from brax.envs.base import State
from flax import struct
from mujoco import mjx

from mimic_core.errors import DataError, ParamsError
from mimic_core.config import EnvConfig, PhysicsConfig
from mimic_core.track.reference import ReferenceClips

_INTEGRATORS = {"euler": mujoco.mjtIntegrator.mjINT_EULER, "implicitfast": mujoco.mjtIntegrator.mjINT_IMPLICITFAST,
                "rk4": mujoco.mjtIntegrator.mjINT_RK4}
_SOLVERS = {"newton": mujoco.mjtSolver.mjSOL_NEWTON, "cg": mujoco.mjtSolver.mjSOL_CG}

REWARD_TERMS = ("joint", "ctrl", "ctrl_diff", "energy")


@struct.dataclass
class Reference:
    """Reference joint trajectories on the device."""

    qpos: jax.Array   # (C, T, nq)
    qvel: jax.Array   # (C, T, nq)


def physics_model(model: mujoco.MjModel, physics: PhysicsConfig) -> mujoco.MjModel:
    """A copy of the model with the simulation options of params."""
    m = copy.deepcopy(model)
    m.opt.timestep = physics.timestep
    m.opt.integrator = _INTEGRATORS[physics.integrator]
    m.opt.solver = _SOLVERS[physics.solver]
    m.opt.iterations = physics.iterations
    m.opt.ls_iterations = physics.ls_iterations
    return m


WARP_EXTRA = "pip install -e '.[warp]' (mujoco-warp and warp-lang, pinned in pyproject.toml)"


def warp_status() -> tuple[bool, str]:
    """Whether MJX's Warp backend can be used here: (available, why not / what it runs on)."""
    try:
        import importlib

        import warp as wp

        importlib.import_module("mujoco_warp")   # what MJX imports for impl="warp"
    except ImportError as e:
        return False, f"MuJoCo Warp is not installed ({e}); install it with {WARP_EXTRA}"
    try:
        wp.init()
        devices = [str(d) for d in wp.get_devices()]
    except Exception as e:  # warp raises its own types for a broken driver or toolkit
        return False, f"MuJoCo Warp is installed but warp cannot start: {type(e).__name__}: {e}"
    return True, f"warp-lang {wp.__version__} on {', '.join(devices)}"


def check_impl(impl: str) -> None:
    """A clear error for a physics backend that cannot run here."""
    if impl == "warp":
        ok, why = warp_status()
        if not ok:
            raise ParamsError(f"params.yaml: 'track.physics.impl': warp: {why}")
    elif impl != "jax":
        raise ParamsError(f"params.yaml: 'track.physics.impl': {impl!r} is not jax or warp")


def _device(impl: str):
    """Where MJX puts things: its default is jax.devices()[0], which under jax.distributed is process 0's, not
    addressable from the others; there, this process's first device."""
    return jax.local_devices()[0] if impl == "jax" and jax.process_count() > 1 else None


def put_model(model: mujoco.MjModel, impl: str = "jax"):
    """The MJX model of `model` on the backend `impl` (jax or warp), checked first."""
    check_impl(impl)
    return mjx.put_model(model, device=_device(impl), impl=impl)


def make_data(model: mujoco.MjModel, impl: str = "jax") -> mjx.Data:
    """Fresh MJX data for `model` on the backend `impl`."""
    return mjx.make_data(model, device=_device(impl), impl=impl)


def actuator_velocity(d: mjx.Data) -> jax.Array:
    """Actuator (muscle length) velocities; MJX 3.x keeps them with the implementation's fields."""
    return d._impl.actuator_velocity if hasattr(d, "_impl") else d.actuator_velocity


class ImitationEnv:
    """Follow registered reaches with muscle controls; reward = tracking - control - energy costs."""

    def __init__(self, model: mujoco.MjModel, clips: ReferenceClips, env: EnvConfig, physics: PhysicsConfig,
                 ctrl_cost_weight: float):
        control_dt = physics.timestep * physics.substeps
        hold = 1.0 / (control_dt * clips.fps)
        if hold < 1 - 1e-6 or abs(hold - round(hold)) > 1e-6:
            raise ParamsError(f"params.yaml: 'track.physics.timestep' * substeps = {control_dt:g} s must divide the "
                              f"reference frame interval 1/{clips.fps:g} s = {1 / clips.fps:g} s (control at a whole "
                              "multiple of the reference rate)")
        self.hold = int(round(hold))   # control steps per reference frame (the original: 2, at 400 Hz)
        self.episode_ref_frames = -(-env.episode_frames // self.hold)
        window = self.episode_ref_frames + env.obs_ref_frames
        if clips.n_frames < window + 1:
            raise DataError(None, "qpos", f"clips have {clips.n_frames} frames; the reference window needs at "
                            f"least ceil(track.env.episode_frames / {self.hold}) + track.env.obs_ref_frames + 1 "
                            f"= {window + 1}")
        if model.nu == 0 or model.na != model.nu:
            raise ParamsError("the model needs muscle actuators with activation state (one per actuator)")
        self.ee_body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, env.end_effector_body)
        if "end_effector" in env.proprio and self.ee_body < 0:
            raise ParamsError(f"params.yaml: 'track.env.end_effector_body': {env.end_effector_body!r} is not a body "
                              "of the model")
        self.mj_model = physics_model(model, physics)
        self.impl = physics.impl
        self.mx = put_model(self.mj_model, physics.impl)
        self.cfg = env
        self.substeps = physics.substeps
        self.ctrl_cost_weight = float(ctrl_cost_weight)
        self.ref = Reference(jnp.asarray(clips.qpos, jnp.float32), jnp.asarray(clips.qvel, jnp.float32))
        self.n_clips, self.n_frames = clips.qpos.shape[:2]
        self.dt = control_dt
        self._data0 = make_data(self.mj_model, physics.impl)

    @property
    def action_size(self) -> int:
        return self.mj_model.nu

    @property
    def observation_size(self) -> dict[str, int]:
        m = self.mj_model
        sizes = {"qpos": m.nq, "qvel": m.nv, "qvel_dt": m.nv, "act": m.na, "qfrc_actuator": m.nv, "end_effector": 3}
        return {"reference": self.cfg.obs_ref_frames * m.nq, "proprio": sum(sizes[f] for f in self.cfg.proprio)}

    # -- episodes ---------------------------------------------------------------------------
    def reset_to(self, clip: jax.Array, frame: jax.Array, rng: jax.Array) -> State:
        """Start at the reference pose of `clip` at `frame`, muscles at the initial activation."""
        qvel = self.ref.qvel[clip, frame]
        if self.cfg.reset_velocity == "zero":
            qvel = jnp.zeros_like(qvel)
        d = self._data0.replace(qpos=self.ref.qpos[clip, frame], qvel=qvel,
                                act=jnp.full((self.mj_model.na,), self.cfg.init_activation, jnp.float32))
        if {"qfrc_actuator", "end_effector"} & set(self.cfg.proprio):
            d = mjx.forward(self.mx, d)   # actuator forces and body positions of the first observation
        info = {"clip": clip, "frame": frame, "start": frame, "steps": jnp.zeros((), jnp.int32), "rng": rng,
                "prev_ctrl": jnp.zeros(self.mj_model.nu), "prev_action": jnp.zeros(self.mj_model.nu),
                "truncation": jnp.zeros(())}
        zero = jnp.zeros(())
        metrics = {**{f"reward_{k}": zero for k in REWARD_TERMS}, "joint_error_deg": zero}
        return State(d, self._obs(d, clip, frame, jnp.zeros((), jnp.int32)), zero, zero, metrics, info)

    def reset(self, rng: jax.Array) -> State:
        """A random clip and start frame, from the data (no hard-coded counts)."""
        rng, k1, k2 = jax.random.split(rng, 3)
        clip = jax.random.randint(k1, (), 0, self.n_clips)
        last_start = self.n_frames - 1 - self.episode_ref_frames - self.cfg.obs_ref_frames
        frame = jax.random.randint(k2, (), 0, last_start + 1)
        return self.reset_to(clip, frame, rng)

    def controls(self, action: jax.Array) -> jax.Array:
        """Muscle controls in [0, 1] from a policy action in [-1, 1]."""
        a = jnp.clip(action, -1.0, 1.0)
        return 0.5 * (a + 1.0) if self.cfg.action_mapping == "affine" else jnp.clip(a, 0.0, 1.0)

    def action_for(self, ctrl: jax.Array) -> jax.Array:
        """The action whose control is `ctrl` (in [0, 1]): the inverse of `controls`."""
        return 2.0 * ctrl - 1.0 if self.cfg.action_mapping == "affine" else ctrl

    def energy(self, d: mjx.Data) -> jax.Array:
        """The energy term (before its weight): muscle or joint space, capped if set."""
        if self.cfg.energy == "muscle":
            e = jnp.sum(jnp.abs(actuator_velocity(d)) * jnp.abs(d.actuator_force))
        else:
            e = jnp.sum(jnp.abs(d.qvel) * jnp.abs(d.qfrc_actuator))
        return e if self.cfg.energy_cap is None else jnp.minimum(e, self.cfg.energy_cap)

    def step(self, state: State, action: jax.Array) -> State:
        """One control step (substeps of physics). Each reference frame is the target of `hold` control steps;
        the control cost is charged on the action as the policy gave it (in [-1, 1]) under `clamp`, on the
        control under `affine`."""
        ctrl = self.controls(action)
        charged = jnp.clip(action, -1.0, 1.0) if self.cfg.action_mapping == "clamp" else ctrl
        d = state.pipeline_state.replace(ctrl=ctrl)
        d = jax.lax.fori_loop(0, self.substeps, lambda _, d: mjx.step(self.mx, d), d)
        info = state.info
        steps = info["steps"] + 1
        clip, frame = info["clip"], self._target(info["start"], steps)
        err = d.qpos - self.ref.qpos[clip, frame]
        sq = jnp.sum(err ** 2)
        terms = {
            "joint": self.cfg.joint_weight * jnp.exp(-self.cfg.joint_scale * sq),
            "ctrl": -self.ctrl_cost_weight * jnp.sum(charged ** 2),
            "ctrl_diff": -self.cfg.ctrl_diff_weight * jnp.sum((charged - info["prev_action"]) ** 2),
            "energy": -self.cfg.energy_weight * self.energy(d),
        }
        reward = sum(terms.values())
        rms_deg = jnp.degrees(jnp.sqrt(sq / err.shape[0]))
        diverged = ~jnp.all(jnp.isfinite(d.qpos))
        terminated = diverged
        if self.cfg.termination_error_deg is not None:
            terminated = terminated | (rms_deg > self.cfg.termination_error_deg)
        truncated = (steps >= self.cfg.episode_frames) & ~terminated
        reward = jnp.where(diverged, 0.0, reward)
        info = {**info, "frame": frame, "steps": steps, "prev_ctrl": ctrl, "prev_action": charged,
                "truncation": truncated.astype(jnp.float32)}
        metrics = {**{f"reward_{k}": v for k, v in terms.items()}, "joint_error_deg": rms_deg}
        done = (terminated | truncated).astype(jnp.float32)
        return state.replace(pipeline_state=d, obs=self._obs(d, clip, info["start"], steps), reward=reward,
                             done=done, metrics=metrics, info=info)

    def _target(self, start: jax.Array, steps: jax.Array) -> jax.Array:
        """The reference frame that control step `steps` (1, 2, ...) aims at: each frame is held `hold` steps."""
        return start + (steps + self.hold - 1) // self.hold

    # -- observation ------------------------------------------------------------------------
    def _obs(self, d: mjx.Data, clip: jax.Array, start: jax.Array, steps: jax.Array) -> dict[str, jax.Array]:
        """Proprioception, and the reference frames from the next step's target on, relative to the pose."""
        idx = jnp.minimum(self._target(start, steps + 1) + jnp.arange(self.cfg.obs_ref_frames), self.n_frames - 1)
        future = self.ref.qpos[clip, idx] - d.qpos[None, :]
        features = {"qpos": lambda: d.qpos, "qvel": lambda: d.qvel, "qvel_dt": lambda: d.qvel * self.dt,
                    "act": lambda: d.act, "qfrc_actuator": lambda: d.qfrc_actuator,
                    "end_effector": lambda: d.xpos[self.ee_body]}
        proprio = jnp.concatenate([features[f]() for f in self.cfg.proprio])
        return {"reference": future.reshape(-1), "proprio": proprio}


class AutoReset:
    """Wrap an env so that a finished episode restarts at a fresh random clip and start frame.

    The returned state keeps the finished step's reward, done and metrics; its observation and
    physics are the new episode's.
    """

    def __init__(self, env: ImitationEnv):
        self.env = env

    def __getattr__(self, name: str) -> Any:
        return getattr(self.env, name)

    def reset(self, rng: jax.Array) -> State:
        return self.env.reset(rng)

    def step(self, state: State, action: jax.Array) -> State:
        nxt = self.env.step(state, action)
        rng, sub = jax.random.split(nxt.info["rng"])
        fresh = self.env.reset(sub)
        done = nxt.done > 0

        def pick(a, b):
            return jnp.where(done, a, b)

        if self.env.impl == "warp":
            # mapping over MJX-Warp 4.0's derived fields (Data._impl) under vmap leaks a tracer; they are not
            # state (the next mjx.step recomputes them from the picked fields), so the new episode keeps the old
            pipeline = nxt.pipeline_state.replace(**{
                f.name: pick(getattr(fresh.pipeline_state, f.name), getattr(nxt.pipeline_state, f.name))
                for f in dataclasses.fields(nxt.pipeline_state) if f.name != "_impl"})
        else:
            pipeline = jax.tree_util.tree_map(pick, fresh.pipeline_state, nxt.pipeline_state)
        obs = jax.tree_util.tree_map(pick, fresh.obs, nxt.obs)
        info = {k: pick(fresh.info[k], nxt.info[k]) for k in ("clip", "frame", "start", "steps", "prev_ctrl",
                                                              "prev_action")}
        info = {**nxt.info, **info, "rng": rng}
        return nxt.replace(pipeline_state=pipeline, obs=obs, info=info)


def keypoint_sites_fn(model: mujoco.MjModel, body_ids: np.ndarray):
    """jit-able (qpos (nq,), offsets (K, 3) m) -> keypoint positions (K, 3) m, by MJX kinematics."""
    mx = mjx.put_model(model)
    d0 = mjx.make_data(mx)
    ids = jnp.asarray(body_ids)

    def sites(qpos, offsets):
        d = mjx.kinematics(mx, d0.replace(qpos=qpos))
        return d.xpos[ids] + jnp.einsum("kij,kj->ki", d.xmat[ids], offsets)

    return sites
