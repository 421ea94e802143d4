"""Micro-benchmarks (pytest-benchmark) of the hot paths: a STAC solve of one clip, a batch of MJX steps, one
PPO iteration and a simplex scan.

Not part of `make test` (pyproject's norecursedirs leaves this folder out); run them with

    .venv/bin/python -m pytest tests/benchmarks --benchmark-only

Each fixture builds its inputs, compiles its function and runs it once, so the benchmark times only the
steady state (no compile). Inputs are small, fixed and synthetic: no pipeline data are needed.
"""
from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bench.throughput import synthetic_clips
from mimic_core.model import load_forelimb
from mimic_core.params import load_params
from mimic_core.track.config import track_config

PARAMS = load_params(Path(__file__).resolve().parents[2] / "params.yaml")
FPS = 200.0
N_FRAMES = 100


@pytest.fixture(scope="module")
def fm():
    return load_forelimb(None, PARAMS["model"]["keypoint_map"])


@pytest.fixture(scope="module")
def offsets_m():
    return np.asarray(PARAMS["stac"]["initial_offsets_mm"], float) * 1e-3


@pytest.fixture(scope="module")
def stac_solve(fm, offsets_m):
    """The jitted STAC registration (params `stac`) of one 100-frame clip with 0.25 mm keypoint noise."""
    from mimic_core.stac.register import stac_settings
    from mimic_core.stac.solver import make_kinematics, make_register

    cfg, off0 = stac_settings(PARAMS)
    clip = synthetic_clips(fm, 1, N_FRAMES, FPS, offsets_m, seed=1)
    y = clip.sites + np.random.default_rng(0).normal(0.0, 0.25e-3, clip.sites.shape)
    mask = np.ones(y.shape[:3], bool)
    register = make_register(make_kinematics(fm.model, fm.keypoint_body_ids), cfg)

    def run():
        return jax.block_until_ready(register(y, mask, off0))

    run()
    return run


@pytest.fixture(scope="module")
def mjx_batch(fm):
    """64 envs of the physics model (params `track.physics`), a lax.scan of 20 vmapped mjx.step calls."""
    from mujoco import mjx

    from mimic_core.track.env import physics_model

    n_envs, n_steps = 64, 20
    m = physics_model(fm.model, track_config(PARAMS["track"]).physics)
    mx = mjx.put_model(m)
    lo, hi = fm.joint_range[:, 0], fm.joint_range[:, 1]
    rng = np.random.default_rng(0)
    qpos = jnp.asarray(lo + (hi - lo) * rng.uniform(0.3, 0.7, (n_envs, m.nq)), jnp.float32)
    ctrl = jnp.asarray(rng.uniform(0.0, 1.0, (n_envs, m.nu)), jnp.float32)
    d0 = mjx.make_data(mx)
    d = jax.jit(jax.vmap(lambda q, u: d0.replace(qpos=q, ctrl=u)))(qpos, ctrl)
    step = jax.vmap(mjx.step, in_axes=(None, 0))
    scan = jax.jit(lambda d: jax.lax.scan(lambda d, _: (step(mx, d), None), d, None, length=n_steps)[0])

    def run():
        return jax.block_until_ready(scan(d))

    run()
    return run


@pytest.fixture(scope="module")
def ppo_iteration(fm, offsets_m):
    """One `trainer.jit_iteration` (collection + update) of make_train: params `track` with small networks
    (2 x 32), 16 envs, an unroll of 10, 2 minibatches, 1 epoch."""
    from mimic_core.track.env import ImitationEnv
    from mimic_core.track.train import make_train

    t = PARAMS["track"]
    track = {**t, "network": {**t["network"], "hidden": [32, 32]},
             "ppo": {**t["ppo"], "num_envs": 16, "unroll_length": 10, "num_minibatches": 2, "batch_size": 8, "update_epochs": 1,
                     "total_env_steps": 16 * 10 * 100}}
    cfg = track_config(track, 0.1)
    clips = synthetic_clips(fm, 4, N_FRAMES, FPS, offsets_m, seed=2)
    env = ImitationEnv(fm.model, clips, cfg.env, cfg.physics, cfg.ctrl_cost_weight)
    trainer = make_train(cfg, env)
    state = [trainer.jit_init(jax.random.PRNGKey(0))]

    def run():
        state[0], metrics = trainer.jit_iteration(state[0])
        return jax.device_get(metrics)    # as `fit` does, every iteration

    run()
    return run


@pytest.fixture(scope="module")
def simplex_grid():
    """simplex_scan of x, one of two coupled logistic maps (1,000 rows; library 1-500, prediction 501-1000),
    E 1-5 x Tp 1-5 in one compiled call."""
    from mimic_core.edm import simplex_scan

    x, y = np.empty(1000), np.empty(1000)
    x[0], y[0] = 0.4, 0.2
    for t in range(999):
        x[t + 1] = x[t] * (3.8 - 3.8 * x[t] - 0.02 * y[t])
        y[t + 1] = y[t] * (3.5 - 3.5 * y[t] - 0.1 * x[t])
    data = np.column_stack([x, y])

    def run():
        return simplex_scan(data, [0], 0, [1, 500], [501, 1000], E=range(1, 6), Tp=range(1, 6), tau=-1)

    run()
    return run


@pytest.mark.benchmark(group="stac")
def test_stac_solve_one_clip(benchmark, stac_solve):
    qpos, offsets = benchmark(stac_solve)
    assert qpos.shape == (1, N_FRAMES, 4) and np.isfinite(np.asarray(qpos)).all()


@pytest.mark.benchmark(group="mjx")
def test_mjx_step_batch(benchmark, mjx_batch):
    d = benchmark(mjx_batch)
    assert d.qpos.shape[0] == 64 and np.isfinite(np.asarray(d.qpos)).all()


@pytest.mark.benchmark(group="ppo")
def test_ppo_iteration(benchmark, ppo_iteration):
    metrics = benchmark(ppo_iteration)
    assert np.isfinite(metrics["loss"])


@pytest.mark.benchmark(group="simplex")
def test_simplex_scan(benchmark, simplex_grid):
    out = benchmark(simplex_grid)
    assert out["rho"].shape == (5, 1, 5, 1) and out["rho"][0, 0, 0, 0] > 0.9     # E 1, Tp 1: the map itself
