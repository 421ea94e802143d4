"""The original TRACK setup as settings (issue 14): action mapping, KL prior, energy, control rate with
reference frames held, termination, observation, reset velocity, batch structure; and the `paper`
profile itself, trained for a few iterations on a tiny env count so that it cannot rot.
"""
from __future__ import annotations

import copy
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimic_core.config import NetworkConfig
from mimic_core.errors import ParamsError
from mimic_core.track.config import track_config
from mimic_core.track.env import ImitationEnv
from mimic_core.track.networks import kl_to_prior
from test_track import _REPO, TINY, _clips


def _paper(**ppo) -> dict:
    """The repository's `paper` profile applied, on a tiny network and env count."""
    t = copy.deepcopy(_REPO["track"])
    paper = t["profiles"]["paper"]
    t["profile"] = "paper"
    paper["network"] = {**paper["network"], "hidden": [16, 16], "intention_size": 2}
    paper["env"] = {**paper["env"], "episode_frames": 10}   # not a multiple of the 8 steps of an iteration
    paper["ppo"] = {**paper["ppo"], "num_envs": 4, "unroll_length": 4, "num_minibatches": 2, "batch_size": 4,
                    "update_epochs": 1, "total_env_steps": 4 * 4 * 2 * 3, **ppo}
    return t


@pytest.fixture(scope="module")
def paper_cfg():
    return track_config(_paper(), 0.1)


@pytest.fixture(scope="module")
def paper_env(fm, paper_cfg):
    return ImitationEnv(fm.model, _clips(fm, n_clips=2), paper_cfg.env, paper_cfg.physics, 0.1)


@pytest.fixture(scope="module")
def logic_env(fm, paper_cfg):
    """The paper profile's env on Euler physics. The frame hold, the action clamp, the costs, the reset and
    the termination rule do not depend on the integrator, and this step compiles in a fraction of the time
    of RK4 + CG (which the training and rollout tests below compile)."""
    physics = dataclasses.replace(paper_cfg.physics, integrator="euler", iterations=1, ls_iterations=1)
    return ImitationEnv(fm.model, _clips(fm, n_clips=2), paper_cfg.env, physics, 0.1)


@pytest.fixture(scope="module")
def paper_step(logic_env):
    return jax.jit(logic_env.step)   # one compile of the step for every test


def test_the_paper_profile_is_the_original_setup():
    c = track_config({**_REPO["track"], "profile": "paper"}, 0.1)
    assert (c.physics.integrator, c.physics.solver, c.physics.substeps, c.physics.timestep) == ("rk4", "cg", 2, 0.00125)
    assert c.env.action_mapping == "clamp" and c.env.energy == "joint" and c.env.energy_cap == 50.0
    assert c.env.termination_error_deg is None and c.env.reset_velocity == "zero" and c.env.obs_ref_frames == 1
    assert c.env.proprio == ("qpos", "qvel", "qfrc_actuator", "end_effector")
    assert (c.network.kl_prior, c.network.kl_reduce, c.network.ar_coef, c.network.ar_var) == (
        "autoregressive", "mean", 0.95, 0.0975)
    assert c.ppo.max_grad_norm == 10.0 and c.ppo.batch_size * c.ppo.num_minibatches == 8192
    assert c.ppo.unrolls_per_update == 2 and c.ppo.learning_rate == 1e-4


def test_each_reference_frame_is_the_target_of_two_control_steps(logic_env, paper_step):
    env = logic_env
    assert env.hold == 2
    s = env.reset_to(jnp.int32(1), jnp.int32(3), jax.random.PRNGKey(0))
    frames, step = [], paper_step
    for _ in range(5):
        s = step(s, jnp.zeros(env.action_size))
        frames.append(int(s.info["frame"]))
    assert frames == [4, 4, 5, 5, 6]
    # the observation shows the next step's target relative to the pose: step 6 still aims at frame 6
    np.testing.assert_allclose(np.asarray(s.obs["reference"]),
                               np.asarray(env.ref.qpos[1, 6] - s.pipeline_state.qpos), atol=1e-6)


def test_clamped_actions_are_off_below_zero_and_the_cost_is_on_the_action(logic_env, paper_step):
    env = logic_env
    a = jnp.array([-1.0, -0.3, 0.0, 0.2, 0.5, 0.8, 1.0, 1.5, -2.0])
    np.testing.assert_allclose(np.asarray(env.controls(a)), [0, 0, 0, 0.2, 0.5, 0.8, 1, 1, 0], atol=1e-7)
    s = env.reset_to(jnp.int32(0), jnp.int32(0), jax.random.PRNGKey(0))
    nxt = paper_step(s, a)
    np.testing.assert_allclose(float(nxt.metrics["reward_ctrl"]), -0.1 * float(jnp.sum(jnp.clip(a, -1, 1) ** 2)),
                               rtol=1e-6)


def test_affine_actions_map_to_mid_range(fm):
    cfg = track_config(TINY, 0.0)
    env = ImitationEnv(fm.model, _clips(fm, n_clips=1), cfg.env, cfg.physics, 0.0)
    np.testing.assert_allclose(np.asarray(env.controls(jnp.array([-1.0, 0.0, 1.0]))), [0, 0.5, 1], atol=1e-7)


def test_joint_space_energy_is_capped(paper_env):
    env = paper_env
    s = env.reset_to(jnp.int32(0), jnp.int32(0), jax.random.PRNGKey(0))
    d = s.pipeline_state.replace(qvel=jnp.full_like(s.pipeline_state.qvel, 1e3),
                                 qfrc_actuator=jnp.full_like(s.pipeline_state.qfrc_actuator, 1.0))
    assert float(env.energy(d)) == pytest.approx(50.0)
    d = d.replace(qvel=jnp.full_like(d.qvel, 2.0), qfrc_actuator=jnp.array([0.5, -1.0, 0.0, 0.25]))
    assert float(env.energy(d)) == pytest.approx(2.0 * 1.75)


def test_reset_is_at_rest_and_only_a_nan_ends_an_episode(logic_env, paper_step):
    env = logic_env
    s = env.reset_to(jnp.int32(0), jnp.int32(2), jax.random.PRNGKey(0))
    assert float(jnp.abs(s.pipeline_state.qvel).max()) == 0.0
    # a pose far from the reference: no termination on error under termination_error_deg: null
    far = s.replace(pipeline_state=s.pipeline_state.replace(qpos=s.pipeline_state.qpos + 1.0))
    nxt = paper_step(far, jnp.zeros(env.action_size))
    assert float(nxt.metrics["joint_error_deg"]) > 30 and float(nxt.done) == 0.0


def test_the_original_observation_has_qvel_joint_forces_and_the_wrist(paper_env, fm):
    env = paper_env
    nq = fm.model.nq
    assert env.observation_size == {"reference": nq, "proprio": 3 * nq + 3}
    s = env.reset_to(jnp.int32(0), jnp.int32(0), jax.random.PRNGKey(0))
    d = s.pipeline_state
    np.testing.assert_allclose(np.asarray(s.obs["proprio"][-3:]), np.asarray(d.xpos[env.ee_body]), atol=1e-7)
    assert float(jnp.linalg.norm(d.xpos[env.ee_body])) > 0   # positions computed at reset, not zeros


def test_autoregressive_kl_by_hand():
    base = track_config(TINY, 0.0).network
    ar = dataclasses.replace(base, kl_prior="autoregressive", kl_reduce="mean")
    prev = jnp.array([0.4, -1.0])
    # the prior itself: zero KL
    mean, logvar = 0.95 * prev, jnp.log(jnp.full(2, 0.0975))
    assert float(kl_to_prior(mean, logvar, prev, ar)) == pytest.approx(0.0, abs=1e-6)
    m, lv = jnp.array([0.1, 0.3]), jnp.array([-1.0, 0.5])
    pm, pv = 0.95 * np.asarray(prev), 0.0975
    closed = 0.5 * (np.exp(lv) / pv + (np.asarray(m) - pm) ** 2 / pv - 1 - np.asarray(lv) + np.log(pv))
    assert float(kl_to_prior(m, lv, prev, ar)) == pytest.approx(closed.mean(), rel=1e-5)
    std_sum = dataclasses.replace(base, kl_prior="standard", kl_reduce="sum")
    closed0 = 0.5 * (np.exp(lv) + np.asarray(m) ** 2 - 1 - np.asarray(lv))
    assert float(kl_to_prior(m, lv, prev, std_sum)) == pytest.approx(closed0.sum(), rel=1e-5)
    assert isinstance(ar, NetworkConfig)


def test_the_paper_profile_trains_a_few_iterations(paper_cfg, paper_env):
    from mimic_core.track.train import make_train

    trainer = make_train(paper_cfg, paper_env)
    assert trainer.n_iterations == 3
    ts = trainer.jit_init(jax.random.PRNGKey(0))
    for _ in range(trainer.n_iterations):
        ts, m = trainer.jit_iteration(ts)
        assert bool(m["params_finite"]) and np.isfinite(float(m["loss"])) and np.isfinite(float(m["kl"]))
    # two unrolls of 4 envs per update: 32 env steps an iteration
    assert int(ts.env_steps) == 3 * 2 * 4 * 4
    # mid-episode after 24 steps of 10-step episodes: each env carries its last intention
    assert ts.prev_z.shape == (4, 2) and float(jnp.abs(ts.prev_z).min()) > 0


def test_the_evaluation_rollout_is_at_the_reference_rate(paper_cfg, paper_env):
    from mimic_core.track.evaluate import make_rollout
    from mimic_core.track.networks import make_networks
    from brax.training.acme import running_statistics

    nets = make_networks(paper_cfg.network, paper_env.action_size)
    key = jax.random.PRNGKey(0)
    policy = {"params": nets.init(key, paper_env.observation_size),
              "obs_norm": running_statistics.init_state(paper_env.reset(key).obs)}
    recs, _ = jax.jit(make_rollout(paper_env, nets, True))(policy, jnp.arange(paper_env.n_clips))
    assert recs["qpos"].shape == (paper_env.n_clips, paper_env.n_frames - 1, paper_env.mj_model.nq)


@pytest.mark.parametrize("key,value,named", [
    ("env", {"proprio": ["qpos", "qpos"]}, "track.env.proprio"),
    ("env", {"proprio": ["qpos", "joint_torque"]}, "track.env.proprio"),
    ("env", {"action_mapping": "sigmoid"}, "track.env.action_mapping"),
    ("network", {"kl_prior": "vamp"}, "track.network.kl_prior"),
    ("ppo", {"batch_size": 3}, "track.ppo.batch_size"),
])
def test_bad_original_settings_name_the_key(key, value, named):
    t = copy.deepcopy(TINY)
    t[key] = {**t[key], **value}
    with pytest.raises(ParamsError, match=named.replace(".", r"\.")):
        track_config(t, 0.0)


def test_an_unknown_end_effector_body_is_named(fm):
    cfg = track_config(_paper(), 0.0)
    env_cfg = dataclasses.replace(cfg.env, end_effector_body="paw")
    with pytest.raises(ParamsError, match=r"'track\.env\.end_effector_body': 'paw'"):
        ImitationEnv(fm.model, _clips(fm, n_clips=1), env_cfg, cfg.physics, 0.0)
