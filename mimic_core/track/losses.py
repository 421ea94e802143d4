"""PPO loss with the intention bottleneck's KL term (brax's GAE and distributions)."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from brax.training.acme import running_statistics
from brax.training.agents.ppo.losses import compute_gae
from flax import struct

from mimic_core.config import NetworkConfig, PPOConfig
from mimic_core.track.networks import Networks, kl_to_prior


@struct.dataclass
class Transition:
    """One step of a rollout, (T, B, ...) when stacked: what the update needs to replay it exactly."""

    obs: dict
    eps: jax.Array          # the intention noise the action was drawn under
    raw_action: jax.Array   # pre-tanh action
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    termination: jax.Array
    truncation: jax.Array
    prev_z: jax.Array       # the intention of the step before (zeros at an episode's start), for the KL prior


def normalize_obs(norm: running_statistics.RunningStatisticsState, obs: dict, enabled: bool) -> dict:
    return running_statistics.normalize(obs, norm) if enabled else obs


def policy_outputs(nets: Networks, policy_params: Any, nobs: dict, eps: jax.Array):
    """Action-distribution parameters, intention mean and log-variance, z and decoder layers."""
    return nets.policy.apply(policy_params, nobs["reference"], nobs["proprio"], eps)


def action_log_prob(nets: Networks, policy_params: Any, nobs: dict, eps: jax.Array, raw_action: jax.Array):
    """log pi(raw_action | obs, z(eps)): the one function both acting and the update use."""
    params, mean, logvar, _, _ = policy_outputs(nets, policy_params, nobs, eps)
    return nets.dist.log_prob(params, raw_action), params, mean, logvar


def gae(batch: Transition, bootstrap_value: jax.Array, cfg: PPOConfig):
    """Value targets and advantages (brax's compute_gae), (T, B)."""
    return compute_gae(truncation=batch.truncation, termination=batch.termination,
                       rewards=batch.reward * cfg.reward_scaling, values=batch.value,
                       bootstrap_value=bootstrap_value, lambda_=cfg.gae_lambda, discount=cfg.discount)


def ppo_loss(params: dict, nets: Networks, nobs: dict, batch: Transition, targets: jax.Array,
             advantages: jax.Array, key: jax.Array, kl_weight: jax.Array, cfg: PPOConfig, net_cfg: NetworkConfig):
    """Clipped surrogate + value loss - entropy bonus + beta * KL(intention || prior)."""
    log_prob, dist_params, mean, logvar = action_log_prob(nets, params["policy"], nobs, batch.eps, batch.raw_action)
    if cfg.normalize_advantages:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    ratio = jnp.exp(log_prob - batch.log_prob)
    surrogate = jnp.minimum(ratio * advantages, jnp.clip(ratio, 1 - cfg.clip_eps, 1 + cfg.clip_eps) * advantages)
    policy_loss = -jnp.mean(surrogate)
    value = nets.critic.apply(params["critic"], nobs["reference"], nobs["proprio"])
    value_loss = 0.5 * jnp.mean((targets - value) ** 2)
    entropy = jnp.mean(nets.dist.entropy(dist_params, key))
    kl = jnp.mean(kl_to_prior(mean, logvar, batch.prev_z, net_cfg))
    total = policy_loss + cfg.value_cost * value_loss - cfg.entropy_cost * entropy + kl_weight * kl
    return total, {"loss": total, "policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy,
                   "kl": kl, "kl_weight": kl_weight, "approx_kl": jnp.mean(batch.log_prob - log_prob),
                   "clip_fraction": jnp.mean(jnp.abs(ratio - 1) > cfg.clip_eps)}
