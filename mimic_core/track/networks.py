"""Encoder-decoder policy with a Gaussian intention bottleneck, and a critic (flax).

The encoder reads the reference (future frames relative to the current pose) and gives a
diagonal Gaussian "intention"; the decoder reads an intention sample and proprioception and
gives the parameters of a tanh-squashed Normal over the 9 muscle controls. Layers are Dense,
SiLU, LayerNorm, as published.

The intention is sampled by reparameterisation, z = mean + std * eps: the rollout stores eps,
so the update recomputes exactly the z the action was drawn under (with unchanged parameters),
while gradients still reach the encoder.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from brax.training.distribution import NormalTanhDistribution

from mimic_core.config import NetworkConfig


class MLP(nn.Module):
    """Dense -> SiLU -> LayerNorm per hidden layer, then a linear output; also returns each hidden layer."""

    hidden: Sequence[int]
    out: int
    out_scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        layers = []
        for i, h in enumerate(self.hidden):
            x = nn.LayerNorm(name=f"norm_{i}")(nn.silu(nn.Dense(h, name=f"dense_{i}")(x)))
            layers.append(x)
        init = nn.initializers.variance_scaling(self.out_scale, "fan_in", "uniform")
        return nn.Dense(self.out, kernel_init=init, name="out")(x), layers


class IntentionPolicy(nn.Module):
    """reference, proprio, eps -> (action parameters, intention mean, log-variance, z, decoder layers)."""

    hidden: Sequence[int]
    intention_size: int
    action_size: int
    std_bias: float
    logvar_bias: float

    def setup(self):
        self.encoder = MLP(self.hidden, 2 * self.intention_size, name="encoder")
        # A small last layer: the untrained policy starts near mid-range controls at init_std.
        self.decoder = MLP(self.hidden, 2 * self.action_size, out_scale=0.01, name="decoder")

    def __call__(self, reference, proprio, eps):
        stats, _ = self.encoder(reference)
        mean, logvar = jnp.split(stats, 2, axis=-1)
        logvar = jnp.clip(logvar + self.logvar_bias, -10.0, 10.0)
        z = mean + jnp.exp(0.5 * logvar) * eps
        params, layers = self.decoder(jnp.concatenate([z, proprio], axis=-1))
        loc, scale = jnp.split(params, 2, axis=-1)
        return jnp.concatenate([loc, scale + self.std_bias], axis=-1), mean, logvar, z, layers


class Critic(nn.Module):
    hidden: Sequence[int]

    @nn.compact
    def __call__(self, reference, proprio):
        v, _ = MLP(self.hidden, 1, name="value")(jnp.concatenate([reference, proprio], axis=-1))
        return v[..., 0]


def _gaussian_kl(mean: jax.Array, logvar: jax.Array, prior_mean, prior_var) -> jax.Array:
    """KL(N(mean, exp(logvar)) || N(prior_mean, prior_var)) per dimension."""
    return 0.5 * ((jnp.exp(logvar) + (mean - prior_mean) ** 2) / prior_var - 1.0 - logvar + jnp.log(prior_var))


def kl_to_standard_normal(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(N(mean, exp(logvar)) || N(0, I)), summed over the intention dimensions."""
    return jnp.sum(_gaussian_kl(mean, logvar, 0.0, 1.0), axis=-1)


def kl_to_prior(mean: jax.Array, logvar: jax.Array, prev_z: jax.Array, cfg: NetworkConfig) -> jax.Array:
    """KL of the intention to its prior: N(0, I), or the original's autoregressive N(ar_coef z_{t-1}, ar_var I)
    (z_{t-1} = 0 at an episode's first step); summed or averaged over the intention's dimensions."""
    if cfg.kl_prior == "standard":
        per_dim = _gaussian_kl(mean, logvar, 0.0, 1.0)
    else:
        per_dim = _gaussian_kl(mean, logvar, cfg.ar_coef * prev_z, cfg.ar_var)
    return jnp.sum(per_dim, axis=-1) if cfg.kl_reduce == "sum" else jnp.mean(per_dim, axis=-1)


@dataclass(frozen=True)
class Networks:
    """The policy and critic modules with the action distribution they share."""

    policy: IntentionPolicy
    critic: Critic
    dist: NormalTanhDistribution
    intention_size: int

    def init(self, key: jax.Array, obs_size: dict[str, int]):
        k1, k2 = jax.random.split(key)
        ref = jnp.zeros((1, obs_size["reference"]))
        pro = jnp.zeros((1, obs_size["proprio"]))
        eps = jnp.zeros((1, self.intention_size))
        return {"policy": self.policy.init(k1, ref, pro, eps), "critic": self.critic.init(k2, ref, pro)}


def make_networks(cfg: NetworkConfig, action_size: int) -> Networks:
    # softplus(x + b) + min_std = init_std at x = 0
    target = cfg.init_std - cfg.min_std
    std_bias = float(np.log(np.expm1(target)))
    return Networks(IntentionPolicy(tuple(cfg.hidden), cfg.intention_size, action_size, std_bias,
                                    cfg.intention_init_logvar),
                    Critic(tuple(cfg.hidden)), NormalTanhDistribution(action_size, min_std=cfg.min_std),
                    cfg.intention_size)

