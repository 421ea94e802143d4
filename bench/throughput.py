"""Throughput of the imitation stack: steps per second against the number of parallel envs.

For each env count N, four measurements:
  physics   (a) vmapped `mjx.step` over N envs of `physics_model(model, cfg.physics)`;
  env       (b) the real `ImitationEnv` in `AutoReset`, observation and reward included;
  train     (c) the real PPO iteration (collection + update) of `make_train` at num_envs = N;
  mujoco_c  (d) MuJoCo C on the CPU: `mujoco.rollout.rollout` with one thread per core.
(a), (b) and (d) are driven by the same random muscle controls in [0, 1], redrawn every
CONTROL_PERIOD control steps, so the arm keeps moving (a still arm simulates ~10x faster).

(a) and (b) run inside one jit: a loop over control periods (its count is an argument, so one
compile serves every call length), each a `lax.scan` over the period's control steps. Every
figure is steady state: compile is timed apart (`jit(...).lower(...).compile()`, which fills the
jit cache), one warm-up call follows, the work per call is calibrated to last about `seconds`,
and the figure is the median of `repeats` timed calls.
"""
from __future__ import annotations

import copy
import dataclasses
import gc
import math
import os
import re
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mimic_core.errors import DataError, MimicError, ParamsError

MEASUREMENTS = ("physics", "env", "train", "mujoco_c")
IMPLS = ("jax", "warp")       # MJX backends (track.physics.impl); (a)-(c) run on each one asked for
MJX_MEASUREMENTS = ("physics", "env", "train")
TITLES = {
    "physics": "(a) MJX physics (vmapped mjx.step)",
    "env": "(b) env steps (ImitationEnv + AutoReset)",
    "train": "(c) PPO training (collection + update)",
    "mujoco_c": "(d) MuJoCo C (mujoco.rollout, CPU)",
    "physics_warp": "(a) MJX-Warp physics (vmapped mjx.step)",
    "env_warp": "(b) env steps on MJX-Warp",
    "train_warp": "(c) PPO training on MJX-Warp",
}
# The steps/s figure of each measurement: control steps, i.e. env steps (each = substeps physics steps); an MJX
# measurement on Warp has its JAX twin's.
RATE_KEY = {"physics": "control_steps_per_s", "env": "env_steps_per_s", "train": "env_steps_per_s",
            "mujoco_c": "control_steps_per_s"}
RATE_KEY.update({f"{n}_warp": RATE_KEY[n] for n in MJX_MEASUREMENTS})
CONTROL_PERIOD = 20          # control steps between fresh random controls
MIN_ROLLOUT_STEPS = 100_000  # (d): env x physics steps per mujoco.rollout call, at least
ROLLOUT_POOL = 4             # (d): distinct chunks of controls, cycled


def measurement_name(name: str, impl: str) -> str:
    """The report key of an MJX measurement on a backend: `physics` on jax (as always), `physics_warp` on warp."""
    return name if impl == "jax" or name not in MJX_MEASUREMENTS else f"{name}_{impl}"


def parse_impls(text: str | Sequence[str]) -> list[str]:
    """'jax,warp' -> ['jax', 'warp'] (in that order, distinct); a ValueError names a bad one."""
    items = [x.strip() for x in (text.split(",") if isinstance(text, str) else text) if x.strip()]
    bad = [x for x in items if x not in IMPLS]
    if bad or not items:
        raise ValueError(f"{', '.join(map(repr, bad)) or repr(text)}: choose from {', '.join(IMPLS)}, comma-separated")
    return [i for i in IMPLS if i in items]


def shown(names, results: Sequence[dict]) -> list[str]:
    """`names` less the Warp measurements that no row has (a JAX-only report keeps its old columns)."""
    present = {k for r in results for k in r}
    return [n for n in names if not n.endswith("_warp") or n in present]

def paper_figures() -> dict:
    """The paper's training throughput (bench/paper_figures.yaml), as each report records it."""
    from bench.report.figures import load_figures

    figs = load_figures()
    return {"source": f"{figs.source}, training throughput as published",
            "figures": [{"env_steps_per_s": int(f.paper) if float(f.paper).is_integer() else f.paper,
                         "envs": f.envs, "gpus": f.gpus, "gpu": f.gpu, "what": "training"} for f in figs.throughput]}


HOW = {
    "physics": "vmapped mjx.step over N envs from reference poses, random muscle controls in [0, 1] redrawn every "
               f"{CONTROL_PERIOD} control steps; one jit: a loop over control periods, each a lax.scan over its "
               "control steps (substeps mjx.step each). control_steps_per_s = N x control steps / s; "
               "physics_steps_per_s = that x substeps",
    "env": "jax.vmap(AutoReset(ImitationEnv).step) with random actions in [-1, 1] (the same controls as (a)), "
           "observation, reward and resets included; one jit as in (a). env_steps_per_s = N x env steps / s",
    "train": "trainer.jit_iteration of make_train(cfg with ppo.num_envs = N, ppo.num_minibatches = the largest "
             "divisor of N not above the configured count), called as fit() calls it (one call per iteration, its "
             "metrics fetched); env_steps_per_s = N x unroll_length x iterations / s",
    "mujoco_c": "mujoco.rollout.rollout (float64, one MjData per core, a persistent thread pool) over N envs with "
                "the same random controls as (a), from the same poses; calls of at least "
                f"{MIN_ROLLOUT_STEPS:,} env x physics steps, each starting where the last ended",
    "impl": "(a)-(c) on each MJX backend asked for (--impl): MJX-JAX under their own names, MuJoCo Warp as "
            "physics_warp, env_warp, train_warp (the same model, options, controls and poses)",
    "timing": "steady state: compile timed apart (compile_s), one warm-up call, work per call calibrated to about "
              "`seconds`, median of `repeats` timed calls (call_s lists them)",
    "memory": "device_peak_bytes: the largest peak_bytes_in_use over the devices used (None where the backend "
              "reports none, e.g. CPU); max_rss_bytes: the process's peak resident memory. Both are running maxima "
              "of the process up to that env count (counts run in increasing order)",
}


# -- pure helpers ---------------------------------------------------------------------------

def parse_env_counts(text: str | Sequence[Any]) -> list[int]:
    """'1,16,64' (or a list) -> sorted distinct positive ints; a ValueError names every bad value."""
    items = text.split(",") if isinstance(text, str) else list(text)
    items = [str(x).strip() for x in items]
    bad = [x for x in items if not (x.isdigit() and int(x) > 0)]
    if bad or not items:
        shown = ", ".join(repr(x) for x in bad) if bad else repr(text)
        raise ValueError(f"{shown} {'is' if len(bad) <= 1 else 'are'} not "
                         f"{'a positive integer' if len(bad) <= 1 else 'positive integers'} "
                         "(env counts are comma-separated positive integers, e.g. 1,16,64)")
    return sorted({int(x) for x in items})


def minibatches_for(n_envs: int, wanted: int, n_devices: int = 1) -> int | None:
    """The largest minibatch count <= wanted that divides n_envs into minibatches that split over the devices."""
    for mb in range(min(wanted, n_envs), 0, -1):
        if n_envs % mb == 0 and (n_envs // mb) % n_devices == 0:
            return mb
    return None


def is_out_of_memory(exc: BaseException) -> bool:
    """An XLA resource-exhausted error (any backend) or a host MemoryError."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("resource_exhausted" in text or "out of memory" in text)


def calibrated_times(run: Callable[[int], Any], seconds: float, repeats: int,
                     clock: Callable[[], float] = time.perf_counter) -> dict:
    """Time `run(k)` (k units of work, returning when they are done): one warm-up call, k calibrated by
    growing it until a call lasts a quarter of `seconds` and scaling to `seconds`, then `repeats` calls."""
    def once(k: int) -> float:
        t0 = clock()
        run(k)
        return clock() - t0

    once(1)  # warm-up
    k, dt = 1, once(1)
    while dt < seconds / 4:
        k *= min(16, max(2, math.ceil(seconds / 4 / max(dt, 1e-9))))
        dt = once(k)
    k = max(1, round(k * seconds / dt))
    times = [once(k) for _ in range(repeats)]
    return {"units_per_call": k, "call_s": times, "median_call_s": statistics.median(times)}


def random_controls(key: jax.Array, period: jax.Array | int, n_envs: int, nu: int) -> jax.Array:
    """The muscle controls of control period `period`: uniform in [0, 1], (n_envs, nu)."""
    return jax.random.uniform(jax.random.fold_in(key, period), (n_envs, nu))


def initial_poses(qpos: np.ndarray, qvel: np.ndarray, n_envs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference poses (qpos, qvel) at random clips and frames, one per env."""
    rng = np.random.default_rng(seed)
    c = rng.integers(0, qpos.shape[0], n_envs)
    t = rng.integers(0, qpos.shape[1], n_envs)
    return qpos[c, t], qvel[c, t]


def synthetic_clips(fm, n_clips: int, n_frames: int, fps: float, offsets: np.ndarray, seed: int = 0):
    """Minimum-jerk reaches between random postures inside the joint range, keypoint sites from MuJoCo."""
    from mimic_core.model import keypoint_positions
    from mimic_core.track.reference import ReferenceClips

    rng = np.random.default_rng(seed)
    lo, hi = fm.joint_range[:, 0], fm.joint_range[:, 1]
    s = np.linspace(0.0, 1.0, n_frames)[None, :, None]
    start, end = (lo + (hi - lo) * rng.uniform(0.3, 0.7, (2, n_clips, 1, len(lo))))
    qpos = start + (end - start) * s ** 3 * (10 - 15 * s + 6 * s ** 2)
    qvel = np.gradient(qpos, 1.0 / fps, axis=1)
    sites = np.stack([keypoint_positions(fm, q, offsets) for q in qpos])
    return ReferenceClips([f"synthetic{c:02d}" for c in range(n_clips)], fm.joint_names, qpos, qvel,
                          np.broadcast_to(offsets, (n_clips, *offsets.shape)).copy(), sites, fps, "synthetic")


def with_synthetic_clips(params: Mapping[str, Any], weight: float, n_clips: int, seed: int, fn: Callable[[str], Any]):
    """fn(folder) on `n_clips` reaches synthesised from the model (long enough for an episode of the track
    profile), written as registered clips into a temporary folder: (fn's result, what the clips are)."""
    from mimic_core.model import load_forelimb
    from mimic_core.stac.register import stac_settings
    from mimic_core.track.config import track_config

    cfg = track_config(params["track"], weight)
    fm = load_forelimb(params["model"]["xml"], params["model"]["keypoint_map"])
    fps = 1.0 / (cfg.physics.timestep * cfg.physics.substeps)
    frames = max(100, cfg.env.episode_frames + cfg.env.obs_ref_frames + 2)
    synth = synthetic_clips(fm, n_clips, frames, fps, stac_settings(params)[1], seed)
    with tempfile.TemporaryDirectory(prefix="synthetic-clips-") as tmp:
        _write_clips(synth, Path(tmp))
        out = fn(tmp)
    return out, f"synthesised from the model: {n_clips} minimum-jerk reaches of {frames} frames"


def _write_clips(clips, folder: Path) -> None:
    from mimic_core.io import write_h5

    for c, name in enumerate(clips.clip_names):
        write_h5(folder / f"{name}.h5", {
            "qpos": clips.qpos[c], "qvel": clips.qvel[c], "offsets": clips.offsets[c],
            "marker_sites": clips.sites[c], "names_qpos": np.array(clips.joint_names, dtype="S")},
            {"fps": clips.fps, "data": clips.label})


# -- the set-up -----------------------------------------------------------------------------

@dataclass
class Setup:
    """Everything the measurements share: the config, the model, the clips, the env and the devices."""

    cfg: Any                 # TrackConfig
    fm: Any                  # ForelimbModel
    clips: Any               # ReferenceClips
    env: Any                 # ImitationEnv
    devices: list
    mesh: Any                # jax.sharding.Mesh over `devices`
    profile: str
    ctrl_cost_weight: float
    clips_source: str
    synthesised: bool
    seconds: float = 2.0
    repeats: int = 3
    seed: int = 0
    impls: tuple = ("jax",)
    _envs: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def n_devices(self) -> int:
        return len(self.devices)

    def cfg_for(self, impl: str):
        """The config with the physics backend `impl`."""
        return self.cfg.replace(physics=dataclasses.replace(self.cfg.physics, impl=impl))

    def env_for(self, impl: str):
        """The env on the physics backend `impl` (the set-up's own where it matches; built once otherwise)."""
        if impl == self.cfg.physics.impl:
            return self.env
        if impl not in self._envs:
            from mimic_core.track.env import ImitationEnv

            cfg = self.cfg_for(impl)
            with jax.default_device(self.devices[0]):
                self._envs[impl] = ImitationEnv(self.fm.model, self.clips, cfg.env, cfg.physics, self.ctrl_cost_weight)
        return self._envs[impl]


def select_devices(which: str) -> list:
    """`all`: every local device of the default backend; `cpu` or `gpu`: every device of that kind."""
    if which == "all":
        return jax.devices()
    if which not in ("cpu", "gpu"):
        raise MimicError(f"--devices {which!r}: choose all, cpu or gpu")
    try:
        devices = jax.devices(which)
    except RuntimeError:
        devices = []
    if not devices:
        seen = sorted({d.platform for d in jax.devices()})
        hint = " (install the CUDA build of jax: see README, 'GPU')" if which == "gpu" else ""
        raise MimicError(f"--devices {which}: no {which.upper()} device found; JAX sees {', '.join(seen)}{hint}")
    return devices


def build_setup(params: Mapping[str, Any], devices: list, registered: str | Path | None, profile: str | None = None,
                seconds: float = 2.0, repeats: int = 3, seed: int = 0, impls: Sequence[str] | None = None) -> Setup:
    """The env through `mimic_core.track.stage.setup`, on the registered clips, or on clips synthesised from
    the model where there are none (a fresh clone before `dvc repro`)."""
    from mimic_core.track.config import ctrl_cost_weights, resolve_profile
    from mimic_core.track.reference import find_registered
    from mimic_core.track.stage import setup
    from mimic_core.track.train import env_mesh

    params = copy.deepcopy(dict(params))
    if "track" not in params:
        raise ParamsError("params.yaml: missing 'track'")
    if profile is not None:
        params["track"] = {**params["track"], "profile": profile}
    section = resolve_profile(params["track"])  # an unknown profile is named before anything else
    impls = tuple(impls or (section.physics.impl,))
    from mimic_core.track.env import check_impl

    for impl in impls:   # a backend that cannot run here is named before anything compiles
        check_impl(impl)
    weight = float(ctrl_cost_weights(params["track"])[0])
    src = registered
    try:
        found = src is not None and bool(find_registered(src))
    except DataError:
        found = False
    with jax.default_device(devices[0]):
        if found:
            cfg, fm, clips, env = setup(params, weight, registered=src)
            source = str(src)
        else:
            (cfg, fm, clips, env), what = with_synthetic_clips(params, weight, 8, seed,
                                                               lambda tmp: setup(params, weight, registered=tmp))
            source = f"{what} ({src} holds no registered clips; run `dvc repro` for the registered twin)"
    return Setup(cfg, fm, clips, env, list(devices), env_mesh(list(devices)),
                 str(params["track"].get("profile") or "default"), weight, source, not found,
                 float(seconds), int(repeats), int(seed), impls)


def _shardings(s: Setup):
    from jax.sharding import NamedSharding, PartitionSpec as P

    return NamedSharding(s.mesh, P("envs")), NamedSharding(s.mesh, P())


def _constrain(tree, sharding):
    return jax.tree_util.tree_map(lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)


def _timed_loop(s: Setup, body: Callable, carry: tuple) -> tuple[dict, tuple]:
    """Compile `fori_loop(0, periods, body, carry)` (one jit), then time it; returns (timing, final carry)."""
    shard_envs, replicated = _shardings(s)
    carry = (jax.device_put(carry[0], shard_envs), *jax.device_put(carry[1:], replicated))
    run = jax.jit(lambda c, periods: jax.lax.fori_loop(0, periods, body, c))
    t0 = time.perf_counter()
    run.lower(carry, np.int32(1)).compile()
    compile_s = time.perf_counter() - t0
    state = [carry]

    def call(k):
        state[0] = jax.block_until_ready(run(state[0], np.int32(k)))

    timing = calibrated_times(call, s.seconds, s.repeats)
    return {"compile_s": compile_s, **timing}, state[0]


def _rates(n: int, steps_per_unit: int, timing: dict, substeps: int, key: str) -> dict:
    per_s = n * steps_per_unit * timing["units_per_call"] / timing["median_call_s"]
    return {key: per_s, "physics_steps_per_s": per_s * substeps,
            "steps_per_call": n * steps_per_unit * timing["units_per_call"], **timing}


def _finite(*arrays: np.ndarray) -> dict:
    """How many worlds (rows) stayed finite in every array, as mjwarp-testspeed counts them."""
    ok = np.ones(arrays[0].shape[0], bool)
    for a in arrays:
        ok &= np.isfinite(a).all(axis=1)
    return {"finite": bool(ok.all()), "finite_worlds": int(ok.sum()), "worlds": int(ok.size)}


# -- the four measurements ------------------------------------------------------------------

def measure_physics(s: Setup, n: int, impl: str = "jax") -> dict:
    """(a) vmapped mjx.step on the backend `impl`, random moving controls."""
    from mujoco import mjx

    from mimic_core.track.env import make_data, physics_model, put_model

    m = physics_model(s.fm.model, s.cfg.physics)
    mx = put_model(m, impl)
    substeps, nu = s.cfg.physics.substeps, m.nu
    shard_envs, _ = _shardings(s)
    key = jax.random.PRNGKey(s.seed)
    step = jax.vmap(mjx.step, in_axes=(None, 0))

    def control_step(d, _):
        d = jax.lax.fori_loop(0, substeps, lambda _, d: step(mx, d), d)
        d = _constrain(d, shard_envs)
        return d, jnp.mean(jnp.abs(d.qvel))

    def period(_, carry):
        d, p, speed = carry
        d = d.replace(ctrl=random_controls(key, p, n, nu))
        d, v = jax.lax.scan(control_step, d, None, length=CONTROL_PERIOD)
        return d, p + 1, speed + jnp.sum(v)

    qpos, qvel = initial_poses(s.clips.qpos, s.clips.qvel, n, s.seed)
    with jax.default_device(s.devices[0]):
        d0 = make_data(m, impl)
        d = jax.jit(jax.vmap(lambda q, v: d0.replace(qpos=q, qvel=v)))(jnp.asarray(qpos, jnp.float32),
                                                                       jnp.asarray(qvel, jnp.float32))
        timing, (d, p, speed) = _timed_loop(s, period, (d, jnp.int32(0), jnp.float32(0.0)))
    out = _rates(n, CONTROL_PERIOD, timing, substeps, "control_steps_per_s")
    out["mean_abs_joint_velocity_deg_s"] = math.degrees(float(speed) / (int(p) * CONTROL_PERIOD))
    out.update(_finite(np.asarray(d.qpos).reshape(n, -1), np.asarray(d.qvel).reshape(n, -1)))
    return out


def measure_env(s: Setup, n: int, impl: str = "jax") -> dict:
    """(b) the imitation env with AutoReset on the backend `impl`, random actions (the controls of (a)), obs and
    reward."""
    from mimic_core.track.env import AutoReset

    env = AutoReset(s.env_for(impl))
    shard_envs, _ = _shardings(s)
    key = jax.random.PRNGKey(s.seed)
    nu = env.action_size
    step = jax.vmap(env.step)

    def period(_, carry):
        st, p, ret = carry
        action = 2.0 * random_controls(key, p, n, nu) - 1.0

        def one(st, _):
            st = _constrain(step(st, action), shard_envs)
            return st, jnp.mean(st.reward)

        st, r = jax.lax.scan(one, st, None, length=CONTROL_PERIOD)
        return st, p + 1, ret + jnp.sum(r)

    with jax.default_device(s.devices[0]):
        st = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(s.seed + 1), n))
        timing, (st, p, ret) = _timed_loop(s, period, (st, jnp.int32(0), jnp.float32(0.0)))
    out = _rates(n, CONTROL_PERIOD, timing, s.cfg.physics.substeps, "env_steps_per_s")
    out["mean_reward"] = float(ret) / (int(p) * CONTROL_PERIOD)
    out.update(_finite(np.asarray(st.pipeline_state.qpos).reshape(n, -1),
                       np.asarray(st.pipeline_state.qvel).reshape(n, -1)))
    return out


def measure_train(s: Setup, n: int, impl: str = "jax") -> dict:
    """(c) the real PPO iteration (collection and update) at num_envs = n on the backend `impl`."""
    from mimic_core.track.train import make_train

    mb = minibatches_for(n, s.cfg.ppo.num_minibatches, s.n_devices)
    # one unroll of every env per update (batch_size * minibatches = num_envs)
    base = s.cfg_for(impl)
    cfg = base.replace(ppo=dataclasses.replace(base.ppo, num_envs=n, num_minibatches=mb, batch_size=n // mb))
    with jax.default_device(s.devices[0]):
        trainer = make_train(cfg, s.env_for(impl), s.mesh)
        ts = [jax.block_until_ready(trainer.jit_init(jax.random.PRNGKey(s.seed)))]
        t0 = time.perf_counter()
        trainer.jit_iteration.lower(ts[0]).compile()
        compile_s = time.perf_counter() - t0

        def call(k):
            for _ in range(k):
                ts[0], m = trainer.jit_iteration(ts[0])
                jax.device_get(m)  # as fit() does, every iteration

        timing = calibrated_times(call, s.seconds, s.repeats)
    out = _rates(n, cfg.ppo.unroll_length, {"compile_s": compile_s, **timing}, s.cfg.physics.substeps,
                 "env_steps_per_s")
    out["iterations_per_s"] = timing["units_per_call"] / timing["median_call_s"]
    out.update(num_minibatches=mb, unroll_length=cfg.ppo.unroll_length, update_epochs=cfg.ppo.update_epochs)
    return out


def measure_mujoco_c(s: Setup, n: int) -> dict:
    """(d) MuJoCo C on the CPU, all cores, the controls of (a)."""
    import mujoco
    from mujoco import rollout

    from mimic_core.track.env import physics_model

    m = physics_model(s.fm.model, s.cfg.physics)
    substeps, nu = s.cfg.physics.substeps, m.nu
    nthread = os.cpu_count() or 1
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    qpos, qvel = initial_poses(s.clips.qpos, s.clips.qvel, n, s.seed)
    d = mujoco.MjData(m)
    state0 = np.empty((n, mujoco.mj_stateSize(m, spec)))
    for i in range(n):
        d.qpos[:], d.qvel[:], d.act[:] = qpos[i], qvel[i], 0.0
        mujoco.mj_getState(m, d, state0[i], spec)
    per_period = CONTROL_PERIOD * substeps
    periods = max(1, math.ceil(MIN_ROLLOUT_STEPS / (n * per_period)))
    key = jax.random.PRNGKey(s.seed)
    with jax.default_device(jax.devices("cpu")[0]):
        draw = jax.jit(lambda p: random_controls(key, p, n, nu))
        pool = [np.repeat(np.stack([np.asarray(draw(np.int32(c * periods + j)), np.float64)
                                    for j in range(periods)], axis=1), per_period, axis=1)
                for c in range(ROLLOUT_POOL)]  # (n, periods * per_period, nu) each
    out_state = np.empty((n, periods * per_period, state0.shape[1]))
    datas = [mujoco.MjData(m) for _ in range(nthread)]
    cur = [state0]

    def call(k):
        for i in range(k):
            rollout.rollout(m, datas, cur[0], pool[i % ROLLOUT_POOL], state=out_state, persistent_pool=True)
            cur[0] = out_state[:, -1].copy()

    try:
        timing = calibrated_times(call, s.seconds, s.repeats)
    finally:
        rollout.shutdown_persistent_pool()
    out = _rates(n, periods * CONTROL_PERIOD, {"compile_s": None, **timing}, substeps, "control_steps_per_s")
    qv = out_state[:, :, 1 + m.nq:1 + m.nq + m.nv]
    out.update(mean_abs_joint_velocity_deg_s=math.degrees(float(np.mean(np.abs(qv)))), threads=nthread,
               float="float64", **_finite(out_state.reshape(n, -1)))
    return out


def default_measures(impls: Sequence[str] = ("jax",), names: Sequence[str] = MEASUREMENTS
                     ) -> dict[str, Callable[[Setup, int], dict]]:
    """The measurements `names` by report key, (a)-(c) once per backend in `impls` (looked up when called, so a
    test can replace one)."""
    import functools

    mod = sys.modules[__name__]
    out = {}
    for impl in impls:
        for name in names:
            if name in MJX_MEASUREMENTS:
                fn = getattr(mod, f"measure_{name}")
                out[measurement_name(name, impl)] = fn if impl == "jax" else functools.partial(fn, impl=impl)
    if "mujoco_c" in names:
        out["mujoco_c"] = mod.measure_mujoco_c
    return out


# -- the run --------------------------------------------------------------------------------

def memory_now(devices: list) -> dict:
    peaks, limits = [], []
    for dev in devices:
        try:
            stats = dev.memory_stats()
        except Exception:  # some backends raise instead of returning None
            stats = None
        if stats:
            peaks.append(stats.get("peak_bytes_in_use"))
            limits.append(stats.get("bytes_limit"))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"device_peak_bytes": max((p for p in peaks if p is not None), default=None),
            "device_bytes_limit": max((x for x in limits if x is not None), default=None),
            "max_rss_bytes": int(rss if sys.platform == "darwin" else rss * 1024)}


def run_throughput(s: Setup, counts: Sequence[int], bar=None,
                   measures: Mapping[str, Callable[[Setup, int], dict]] | None = None,
                   budget_s: float | None = None, on_row: Callable[[dict], None] | None = None,
                   clock: Callable[[], float] = time.perf_counter) -> dict:
    """Measure each env count in increasing order; stop (keeping what came before) at the first count that
    does not fit in memory, or before the first measurement that would start after ``budget_s`` seconds
    (the count's finished measurements are kept). `bar`: a tqdm-like progress bar over counts x
    measurements; `on_row(partial result)`: called after each env count, so a caller can write what it has."""
    measures = dict(measures or default_measures())
    rows, skipped, stopped = [], [], None
    t0 = clock()

    def result(complete: bool) -> dict:
        return {"results": list(rows), "skipped": list(skipped), "stopped": stopped, "complete": complete,
                "largest_envs": max((r["envs"] for r in rows if set(measures) <= set(r)), default=None)}

    for n in sorted(counts):
        if n % s.n_devices:
            skipped.append({"envs": n, "reason": f"{n} envs do not split evenly over {s.n_devices} devices"})
            if bar is not None:
                bar.update(len(measures))
            continue
        row: dict[str, Any] = {"envs": n}
        name = None
        try:
            for name, fn in measures.items():
                if budget_s is not None and clock() - t0 >= budget_s:
                    stopped = {"envs": n, "measurement": name, "reason": "time budget",
                               "error": f"{budget_s:g} s budget spent after {clock() - t0:.1f} s"}
                    break
                if bar is not None:
                    bar.set_description_str(f"{n} envs: {TITLES.get(name, name)}")
                row[name] = fn(s, n)
                if bar is not None:
                    bar.update(1)
                    key = RATE_KEY.get(name)
                    if key in row[name]:
                        bar.set_postfix_str(f"{row[name][key]:,.0f} steps/s")
        except Exception as e:
            if not is_out_of_memory(e):
                raise
            stopped = {"envs": n, "measurement": name, "reason": "out of memory",
                       "error": str(e).strip().splitlines()[0][:500] if str(e).strip() else type(e).__name__}
            row = None
            gc.collect()
            jax.clear_caches()
            break
        if len(row) > 1:
            row["memory"] = memory_now(s.devices)
            rows.append(row)
            if on_row is not None:
                on_row(result(False))
        if stopped:
            break
    return result(True)


def settings_summary(s: Setup, counts: Sequence[int]) -> dict:
    """What the figures depend on besides the machine."""
    cfg = s.cfg
    return {
        "data": s.clips.label,
        "clips": {"source": s.clips_source, "synthesised": s.synthesised, "n_clips": len(s.clips.clip_names),
                  "n_frames": int(s.clips.n_frames), "fps": float(s.clips.fps)},
        "profile": s.profile,
        "ctrl_cost_weight": s.ctrl_cost_weight,
        "physics": {**dataclasses.asdict(cfg.physics), "control_dt_s": cfg.physics.timestep * cfg.physics.substeps,
                    "mjx_float": "float32", "mujoco_c_float": "float64"},
        "env": dataclasses.asdict(cfg.env),
        "network": dataclasses.asdict(cfg.network),
        "ppo": {k: getattr(cfg.ppo, k) for k in ("unroll_length", "num_minibatches", "update_epochs",
                                                 "normalize_observations")},
        "settings": {"envs": list(counts), "seconds": s.seconds, "repeats": s.repeats, "seed": s.seed,
                     "control_period_steps": CONTROL_PERIOD, "n_devices": s.n_devices,
                     # TF32 (or bf16) matmuls on a GPU change results: brax and mujoco_playground warn of it
                     "matmul_precision": str(jax.config.jax_default_matmul_precision or "default"),
                     "x64": bool(jax.config.jax_enable_x64)},
        "how": HOW,
        "paper": paper_figures(),
        "backends": backends_summary(),
    }


def backends_summary() -> dict:
    """Which MJX backends this machine can run, and why not where one cannot (a report says it, not a crash)."""
    from mimic_core.track.env import warp_status

    ok, why = warp_status()
    return {"jax": {"available": True, "why": f"jax {jax.__version__} on {jax.default_backend()}"},
            "warp": {"available": ok, "why": why}}


_CSV_FIELDS = {"physics": ("control_steps_per_s", "physics_steps_per_s", "compile_s"),
               "env": ("env_steps_per_s", "physics_steps_per_s", "compile_s"),
               "train": ("env_steps_per_s", "iterations_per_s", "compile_s"),
               "mujoco_c": ("control_steps_per_s", "physics_steps_per_s")}
_CSV_FIELDS.update({f"{n}_warp": _CSV_FIELDS[n] for n in MJX_MEASUREMENTS})
_CSV_FIELDS["memory"] = ("device_peak_bytes", "max_rss_bytes")
CSV_COLUMNS = [(name, field) for name, fields in _CSV_FIELDS.items() for field in fields]


def csv_rows(results: Sequence[dict]) -> list[dict]:
    """One flat row per env count: `<measurement>_<field>` columns (memory fields by their own names); a
    missing measurement leaves its columns empty, and a Warp measurement that no row has adds no columns."""
    keep = set(shown(_CSV_FIELDS, results))
    cols = [(n, f) for n, f in CSV_COLUMNS if n in keep]
    return [{"envs": r["envs"], **{(field if name == "memory" else f"{name}_{field}"): (r.get(name) or {}).get(field)
                                   for name, field in cols}} for r in results]


def report_stem(devices: list, now: datetime) -> str:
    """<device kind>-<count>x-<UTC timestamp>: the file name of a report."""
    kind = re.sub(r"[^a-z0-9]+", "-", devices[0].device_kind.lower()).strip("-") or devices[0].platform
    return f"{kind}-{len(devices)}x-{now.strftime('%Y%m%dT%H%M%SZ')}"


def write_csv(path: Path, rows: list[dict]) -> None:
    """The rows as CSV (object dtype: ints stay ints, floats keep every digit, None is empty)."""
    import pandas as pd

    from mimic_core.io import atomic_path

    df = pd.DataFrame(rows, dtype=object) if rows else pd.DataFrame(columns=["envs"])
    with atomic_path(path, suffix=".csv") as tmp:
        df.to_csv(tmp, index=False)


def write_plot(path: Path, report: dict) -> None:
    """Log-log steps/s against envs for (a)-(d), with the paper's training figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    from mimic_core.io import atomic_path

    long = [{"envs": r["envs"], "measurement": TITLES[name], "steps/s": r[name][key]}
            for r in report["results"] for name, key in RATE_KEY.items() if name in r]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    if long:
        sns.lineplot(data=pd.DataFrame(long), x="envs", y="steps/s", hue="measurement", marker="o", ax=ax)
    paper = report["paper"]["figures"]
    ax.scatter([p["envs"] for p in paper], [p["env_steps_per_s"] for p in paper], marker="*", s=160, color="black",
               zorder=5, label="paper: training (" + ", ".join(f"{p['gpus']} x {p['gpu']}" for p in paper) + ")")
    ax.set(xscale="log", yscale="log", xlabel="parallel envs",
           ylabel=f"steps/s (control = env steps; x{report['physics']['substeps']} physics steps)",
           title=f"{report['hardware']['device_kind']} x{report['hardware']['device_count']}, "
                 f"{report['profile']} profile, {report['data']} data")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def format_table(report: dict) -> str:
    """The steps/s of every measurement and env count, for the terminal."""

    short = {"physics": "(a) physics", "env": "(b) env", "train": "(c) train", "mujoco_c": "(d) MuJoCo C",
             "physics_warp": "(a) warp", "env_warp": "(b) env warp", "train_warp": "(c) train warp"}
    names = shown(RATE_KEY, report["results"])
    head = f"  {'envs':>6s} " + " ".join(f"{short[n]:>14s}" for n in names)
    lines = [f"steps/s (control steps = env steps), {report['hardware']['device_kind']} "
             f"x{report['hardware']['device_count']}, {report['profile']} profile, {report['data']} data", head]
    for r in report["results"]:
        cells = [f"{r[n][RATE_KEY[n]]:14,.0f}" if n in r else f"{'-':>14s}" for n in names]
        lines.append(f"  {r['envs']:6d} " + " ".join(cells))
    lines.append("  paper (training): " + "; ".join(f"{p['env_steps_per_s']:,} at {p['envs']} envs on {p['gpus']} x "
                                                    f"{p['gpu']}" for p in report["paper"]["figures"]))
    return "\n".join(lines)
