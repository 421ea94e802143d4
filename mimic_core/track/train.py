"""PPO for the imitation env, PureJaxRL style: `make_train(config, env)` gives a pure, jit-able
`train(key)`, and the iteration it scans, so a host loop can add progress and checkpoints.

Envs are sharded across all local devices (`jax.sharding`); parameters are replicated and XLA
inserts the gradient reductions. The observation normaliser is updated after each iteration's
update, so acting and the update see identical inputs: a stored action's log-prob, recomputed
at update time under its stored intention noise, is the same number.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from brax.envs.base import State
from brax.training.acme import running_statistics
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mimic_core.errors import ParamsError
from mimic_core.config import TrackConfig
from mimic_core.track.env import REWARD_TERMS, AutoReset, ImitationEnv
from mimic_core.track.losses import Transition, gae, normalize_obs, ppo_loss, policy_outputs
from mimic_core.track.networks import Networks, make_networks


@struct.dataclass
class TrainState:
    params: dict
    opt_state: Any
    obs_norm: running_statistics.RunningStatisticsState
    env_state: State
    prev_z: jax.Array        # (envs, intention) each env's last intention sample, for the autoregressive KL prior
    key: jax.Array
    iteration: jax.Array
    env_steps: jax.Array


@dataclass(frozen=True, eq=False)
class Trainer:
    """What make_train returns: pure functions over TrainState."""

    init: Callable[[jax.Array], TrainState]
    iteration: Callable[[TrainState], tuple[TrainState, dict]]
    train: Callable[[jax.Array], tuple[TrainState, dict]]
    rollout: Callable[[TrainState], tuple]   # (env state, key, Transition batch, env metrics, done)
    networks: Networks
    env: ImitationEnv
    config: TrackConfig
    mesh: Mesh
    n_iterations: int
    learning_rate: Callable[[Any], Any]   # of the optimizer's update count

    @functools.cached_property
    def jit_init(self):
        return jax.jit(self.init)

    @functools.cached_property
    def jit_iteration(self):
        return jax.jit(self.iteration)

    @functools.cached_property
    def jit_rollout(self):
        return jax.jit(self.rollout)


def env_mesh(devices=None) -> Mesh:
    """A 1-D mesh over all local devices; envs are split along it."""
    return Mesh(jax.devices() if devices is None else devices, ("envs",))


def make_train(config: TrackConfig, env: ImitationEnv, mesh: Mesh | None = None) -> Trainer:
    ppo = config.ppo
    mesh = mesh or env_mesh()
    n_dev = mesh.devices.size
    if ppo.num_envs % n_dev or ppo.batch_size % n_dev:
        raise ParamsError(f"params.yaml: track.ppo.num_envs ({ppo.num_envs}) and batch_size ({ppo.batch_size}) "
                          f"must split evenly over {n_dev} devices")
    nets = make_networks(config.network, env.action_size)
    wrapped = AutoReset(env)
    n_iter = config.iterations
    n_updates = n_iter * ppo.update_epochs * ppo.num_minibatches
    lr = (optax.constant_schedule(ppo.learning_rate) if ppo.lr_schedule == "constant"
          else optax.linear_schedule(ppo.learning_rate, ppo.learning_rate * ppo.lr_final_fraction, n_updates))
    optimizer = optax.chain(optax.clip_by_global_norm(ppo.max_grad_norm), optax.adam(lr))
    shard_envs = NamedSharding(mesh, P("envs"))
    warmup_iters = config.network.kl_warmup_fraction * n_iter
    B, L = ppo.num_envs, config.network.intention_size
    n_unrolls = ppo.unrolls_per_update

    def constrain(tree, sharding):
        return jax.tree_util.tree_map(lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)

    def init(key: jax.Array) -> TrainState:
        k_env, k_net, key = jax.random.split(key, 3)
        params = nets.init(k_net, env.observation_size)
        env_state = constrain(jax.vmap(wrapped.reset)(jax.random.split(k_env, B)), shard_envs)
        prev_z = constrain(jnp.zeros((B, L)), shard_envs)
        obs_norm = running_statistics.init_state(jax.tree_util.tree_map(lambda x: x[0], env_state.obs))
        return TrainState(params, optimizer.init(params), obs_norm, env_state, prev_z, key,
                          jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

    def act(params, obs_norm, obs, prev_z, key):
        k_eps, k_act = jax.random.split(key)
        nobs = normalize_obs(obs_norm, obs, ppo.normalize_observations)
        eps = jax.random.normal(k_eps, (B, L))
        dist_params, _, _, z, _ = policy_outputs(nets, params["policy"], nobs, eps)
        raw = nets.dist.sample_no_postprocessing(dist_params, k_act)
        log_prob = nets.dist.log_prob(dist_params, raw)
        value = nets.critic.apply(params["critic"], nobs["reference"], nobs["proprio"])
        return nets.dist.postprocess(raw), z, Transition(obs, eps, raw, log_prob, value, None, None, None, prev_z)

    def unroll(ts: TrainState, env_state, prev_z, key):
        def one_step(carry, _):
            env_state, prev_z, key = carry
            key, k = jax.random.split(key)
            action, z, tr = act(ts.params, ts.obs_norm, env_state.obs, prev_z, k)
            nxt = constrain(jax.vmap(wrapped.step)(env_state, action), shard_envs)
            trunc = nxt.info["truncation"]
            tr = tr.replace(reward=nxt.reward, termination=nxt.done * (1 - trunc), truncation=trunc)
            prev_z = jnp.where(nxt.done[:, None] > 0, 0.0, z)   # a fresh episode starts from z = 0
            return (nxt, prev_z, key), (constrain(tr, shard_envs), nxt.metrics, nxt.done)

        (env_state, prev_z, key), (batch, metrics, done) = jax.lax.scan(
            one_step, (env_state, prev_z, key), None, length=ppo.unroll_length)
        return env_state, prev_z, key, batch, metrics, done

    def rollout(ts: TrainState):
        env_state, _, key, batch, metrics, done = unroll(ts, ts.env_state, ts.prev_z, ts.key)
        return env_state, key, batch, metrics, done

    def collect(ts: TrainState):
        """brax's batch structure: `n_unrolls` unrolls of every env, laid side by side as n_unrolls * B
        sequences, each with the critic's value after its last step as its bootstrap."""
        def one_unroll(carry, _):
            env_state, prev_z, key = carry
            env_state, prev_z, key, batch, metrics, done = unroll(ts, env_state, prev_z, key)
            nobs_last = normalize_obs(ts.obs_norm, env_state.obs, ppo.normalize_observations)
            bootstrap = nets.critic.apply(ts.params["critic"], nobs_last["reference"], nobs_last["proprio"])
            return (env_state, prev_z, key), (batch, bootstrap, metrics, done)

        (env_state, prev_z, key), (batch, bootstrap, metrics, done) = jax.lax.scan(
            one_unroll, (ts.env_state, ts.prev_z, ts.key), None, length=n_unrolls)

        def side_by_side(x):   # (n, T, B, ...) -> (T, n * B, ...)
            x = jnp.moveaxis(x, 0, 1)
            return x.reshape(x.shape[0], -1, *x.shape[3:])

        batch = jax.tree_util.tree_map(side_by_side, batch)
        bootstrap = bootstrap.reshape(-1)
        return env_state, prev_z, key, batch, bootstrap, metrics, done

    def iteration(ts: TrainState) -> tuple[TrainState, dict]:
        env_state, prev_z, key, batch, bootstrap, env_metrics, done = collect(ts)
        targets, advantages = gae(batch, bootstrap, ppo)
        nobs = normalize_obs(ts.obs_norm, batch.obs, ppo.normalize_observations)
        frac = jnp.where(warmup_iters > 0, jnp.minimum(1.0, ts.iteration / jnp.maximum(warmup_iters, 1e-9)), 1.0)
        kl_weight = config.network.kl_weight * frac
        grad_fn = jax.grad(ppo_loss, has_aux=True)

        def epoch(carry, _):
            params, opt_state, key = carry
            key, k_perm, k_ent = jax.random.split(key, 3)
            perm = jax.random.permutation(k_perm, n_unrolls * B)
            mb = ppo.num_minibatches

            def split(x):  # (T, B, ...) -> (mb, T, B/mb, ...), shuffled along envs
                x = jnp.take(x, perm, axis=1)
                x = x.reshape(x.shape[0], mb, -1, *x.shape[2:])
                return jnp.swapaxes(x, 0, 1)

            data = jax.tree_util.tree_map(split, (nobs, batch.replace(obs=None), targets, advantages))

            def minibatch(carry, xs):
                params, opt_state, k = carry
                k, k_e = jax.random.split(k)
                mb_nobs, mb_batch, mb_targets, mb_adv = xs
                grads, stats = grad_fn(params, nets, mb_nobs, mb_batch, mb_targets, mb_adv, k_e, kl_weight, ppo,
                                       config.network)
                updates, opt_state = optimizer.update(grads, opt_state, params)
                params = optax.apply_updates(params, updates)
                return (params, opt_state, k), {**stats, "grad_norm": optax.tree.norm(grads)}

            (params, opt_state, _), stats = jax.lax.scan(minibatch, (params, opt_state, k_ent), data)
            return (params, opt_state, key), stats

        (params, opt_state, key), stats = jax.lax.scan(
            epoch, (ts.params, ts.opt_state, key), None, length=ppo.update_epochs)
        obs_norm = ts.obs_norm
        if ppo.normalize_observations:
            obs_norm = running_statistics.update(obs_norm, batch.obs)
        steps = ts.env_steps + ppo.unroll_length * B * n_unrolls
        finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(params)]))
        metrics = {
            **{k: jnp.mean(v) for k, v in stats.items()},
            **{k: jnp.mean(v) for k, v in env_metrics.items()},
            "reward": jnp.mean(batch.reward),
            "episodes_done": jnp.sum(done),
            "terminations": jnp.sum(batch.termination),
            "env_steps": steps,
            "iteration": ts.iteration + 1,
            "params_finite": finite,
        }
        new = TrainState(params, opt_state, obs_norm, env_state, prev_z, key, ts.iteration + 1, steps)
        return new, metrics

    def train(key: jax.Array) -> tuple[TrainState, dict]:
        ts = init(key)
        return jax.lax.scan(lambda ts, _: iteration(ts), ts, None, length=n_iter)

    return Trainer(init, iteration, train, rollout, nets, env, config, mesh, n_iter, lr)


def place(ts: TrainState, mesh: Mesh) -> TrainState:
    """Put a (restored) state on the mesh: env state split along envs, the rest replicated."""
    shard_envs, replicated = NamedSharding(mesh, P("envs")), NamedSharding(mesh, P())
    env_state, prev_z = jax.device_put((ts.env_state, ts.prev_z), shard_envs)
    rest = jax.device_put(ts.replace(env_state=None, prev_z=None), replicated)
    return rest.replace(env_state=env_state, prev_z=prev_z)


METRIC_KEYS = ("loss", "policy_loss", "value_loss", "entropy", "kl", "kl_weight", "approx_kl", "clip_fraction",
               "grad_norm", "reward", *[f"reward_{k}" for k in REWARD_TERMS], "joint_error_deg",
               "episodes_done", "terminations")


def finite_metrics(m: dict) -> bool:
    return bool(m["params_finite"]) and all(math.isfinite(float(m[k])) for k in ("loss", "reward"))
