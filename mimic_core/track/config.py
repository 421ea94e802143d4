"""The `track` section of params.yaml, checked before anything compiles.

Every key is known: a mistyped or unknown key is an error that names it and lists the valid
ones, so a typo never silently falls back to a default. A profile (e.g. `paper`) is a set of
overrides merged over the base section.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, fields
from typing import Any, Mapping

from mimic_core.errors import ParamsError


@dataclass(frozen=True)
class PhysicsConfig:
    timestep: float = 0.0025          # s
    substeps: int = 2                 # physics steps per control step: timestep * substeps = 1 / reference fps
    integrator: str = "euler"         # euler | implicitfast | rk4
    solver: str = "newton"            # newton | cg
    iterations: int = 4
    ls_iterations: int = 4


@dataclass(frozen=True)
class EnvConfig:
    episode_frames: int = 60          # control steps per episode (at most)
    obs_ref_frames: int = 5           # future reference frames in the observation
    joint_weight: float = 5.0         # lambda_joint
    joint_scale: float = 0.2          # alpha_joint, in 1/rad^2
    ctrl_diff_weight: float = 0.0     # cost on the change of the controls between steps
    energy_weight: float = 0.0        # lambda_energy, on sum |actuator velocity| * |actuator force|
    termination_error_deg: float = 30.0  # end the episode when the RMS joint error passes this
    init_activation: float = 0.0      # muscle activation at reset


@dataclass(frozen=True)
class NetworkConfig:
    hidden: tuple[int, ...] = (512, 512, 512)
    intention_size: int = 4
    kl_weight: float = 1e-5
    kl_warmup_fraction: float = 0.25  # linear warm-up of the KL weight over this share of training
    min_std: float = 0.001            # floor of the action std (pre-tanh)
    init_std: float = 0.7             # action std (pre-tanh) of the untrained policy
    intention_init_logvar: float = 0.0  # log-variance of the untrained intention (0: N(mean, I))


@dataclass(frozen=True)
class PPOConfig:
    seed: int = 0
    total_env_steps: int = 1_000_000
    num_envs: int = 1024
    unroll_length: int = 20
    num_minibatches: int = 8
    update_epochs: int = 4
    learning_rate: float = 1e-4
    max_grad_norm: float = 1.0
    clip_eps: float = 0.2
    discount: float = 0.95
    gae_lambda: float = 0.95
    entropy_cost: float = 1e-3
    value_cost: float = 0.5
    normalize_observations: bool = True
    normalize_advantages: bool = True
    reward_scaling: float = 1.0
    checkpoint_every: int = 10        # iterations between checkpoints


@dataclass(frozen=True)
class EvaluateConfig:
    hf_cutoff_hz: float = 10.0        # action power above this counts as high-frequency


@dataclass(frozen=True)
class TrackConfig:
    physics: PhysicsConfig = PhysicsConfig()
    env: EnvConfig = EnvConfig()
    network: NetworkConfig = NetworkConfig()
    ppo: PPOConfig = PPOConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    ctrl_cost_weight: float = 0.0     # lambda_ctrl of this policy (one value of the sweep)

    @property
    def iterations(self) -> int:
        """PPO iterations that reach the step budget (at least one)."""
        per_iter = self.ppo.num_envs * self.ppo.unroll_length
        return max(1, -(-self.ppo.total_env_steps // per_iter))

    def replace(self, **kw) -> "TrackConfig":
        return dataclasses.replace(self, **kw)


_SECTIONS = {"physics": PhysicsConfig, "env": EnvConfig, "network": NetworkConfig, "ppo": PPOConfig,
             "evaluate": EvaluateConfig}
# Keys of `track` that are not a config section.
_TOP_KEYS = {"profile", "profiles", "ctrl_cost_weights", "registered_dir", *_SECTIONS}
_CHOICES = {("physics", "integrator"): ("euler", "implicitfast", "rk4"), ("physics", "solver"): ("newton", "cg")}


def _merge(base: dict, over: Mapping, where: str) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(out[k], v, f"{where}.{k}")
        else:
            out[k] = copy.deepcopy(v)
    return out


def resolve_profile(track: Mapping[str, Any]) -> dict:
    """The `track` section with its selected profile's overrides merged in."""
    if not isinstance(track, Mapping):
        raise ParamsError("params.yaml: 'track' must be a mapping")
    unknown = sorted(set(track) - _TOP_KEYS)
    if unknown:
        raise ParamsError(f"params.yaml: unknown key(s) {['track.' + k for k in unknown]}; "
                          f"valid keys of track: {sorted(_TOP_KEYS)}")
    name = track.get("profile")
    profiles = track.get("profiles") or {}
    base = {k: v for k, v in track.items() if k not in ("profile", "profiles")}
    if name in (None, "", "default", "cpu"):
        return base
    if name not in profiles:
        raise ParamsError(f"params.yaml: track.profile '{name}' is not defined; "
                          f"defined profiles: {sorted(profiles) or 'none'} (or 'cpu' for the base values)")
    return _merge(base, profiles[name], f"track.profiles.{name}")


def _coerce(section: str, cls, values: Any) -> Any:
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ParamsError(f"params.yaml: 'track.{section}' must be a mapping")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ParamsError(f"params.yaml: unknown key(s) {['track.' + section + '.' + k for k in unknown]}; "
                          f"valid keys of track.{section}: {sorted(known)}")
    out = {}
    for k, v in values.items():
        default = getattr(cls(), k)
        where = f"track.{section}.{k}"
        try:
            if isinstance(default, bool):
                if not isinstance(v, bool):
                    raise TypeError
                out[k] = v
            elif isinstance(default, int):
                if isinstance(v, bool) or float(v) != int(float(v)):
                    raise TypeError
                out[k] = int(float(v))
            elif isinstance(default, float):
                if isinstance(v, bool):
                    raise TypeError
                out[k] = float(v)
            elif isinstance(default, tuple):
                out[k] = tuple(int(x) for x in v)
                if not out[k] or any(x <= 0 for x in out[k]):
                    raise TypeError
            else:
                out[k] = str(v)
        except (TypeError, ValueError):
            raise ParamsError(f"params.yaml: '{where}' = {v!r} is not a valid {type(default).__name__}") from None
        if (section, k) in _CHOICES and out[k] not in _CHOICES[(section, k)]:
            raise ParamsError(f"params.yaml: '{where}' = {v!r}; choose one of {_CHOICES[(section, k)]}")
    return cls(**out)


def ctrl_cost_weights(track: Mapping[str, Any]) -> list:
    """The sweep of control-cost weights, as written in params (keys of the reports)."""
    ws = resolve_profile(track).get("ctrl_cost_weights")
    if not isinstance(ws, list) or not ws:
        raise ParamsError("params.yaml: 'track.ctrl_cost_weights' must be a non-empty list of numbers")
    for w in ws:
        if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
            raise ParamsError(f"params.yaml: 'track.ctrl_cost_weights' holds {w!r}; expected numbers >= 0")
    return ws


def weight_key(w: Any) -> str:
    """The report key of a weight: Python's str of the YAML value, as DVC's templating renders it."""
    return str(w)


def track_config(track: Mapping[str, Any], ctrl_cost_weight: float = 0.0) -> TrackConfig:
    """Build and check the config of one policy from params['track'] (profile applied)."""
    t = resolve_profile(track)
    cfg = TrackConfig(**{name: _coerce(name, cls, t.get(name)) for name, cls in _SECTIONS.items()},
                      ctrl_cost_weight=float(ctrl_cost_weight))
    _check(cfg)
    return cfg


def _check(cfg: TrackConfig) -> None:
    positive = {
        "physics.timestep": cfg.physics.timestep, "physics.substeps": cfg.physics.substeps,
        "physics.iterations": cfg.physics.iterations, "physics.ls_iterations": cfg.physics.ls_iterations,
        "env.episode_frames": cfg.env.episode_frames, "env.obs_ref_frames": cfg.env.obs_ref_frames,
        "env.termination_error_deg": cfg.env.termination_error_deg,
        "network.intention_size": cfg.network.intention_size, "network.min_std": cfg.network.min_std,
        "network.init_std": cfg.network.init_std,
        "ppo.total_env_steps": cfg.ppo.total_env_steps, "ppo.num_envs": cfg.ppo.num_envs,
        "ppo.unroll_length": cfg.ppo.unroll_length, "ppo.num_minibatches": cfg.ppo.num_minibatches,
        "ppo.update_epochs": cfg.ppo.update_epochs, "ppo.learning_rate": cfg.ppo.learning_rate,
        "ppo.checkpoint_every": cfg.ppo.checkpoint_every, "evaluate.hf_cutoff_hz": cfg.evaluate.hf_cutoff_hz,
    }
    for k, v in positive.items():
        if not v > 0:
            raise ParamsError(f"params.yaml: 'track.{k}' must be positive, got {v!r}")
    if cfg.network.init_std <= cfg.network.min_std:
        raise ParamsError("params.yaml: 'track.network.init_std' must exceed 'track.network.min_std'")
    if cfg.ppo.num_envs % cfg.ppo.num_minibatches:
        raise ParamsError(f"params.yaml: 'track.ppo.num_envs' ({cfg.ppo.num_envs}) must be a multiple of "
                          f"'track.ppo.num_minibatches' ({cfg.ppo.num_minibatches})")
    for k in ("discount", "gae_lambda"):
        if not 0 <= getattr(cfg.ppo, k) <= 1:
            raise ParamsError(f"params.yaml: 'track.ppo.{k}' must be in [0, 1]")
    if not 0 <= cfg.network.kl_warmup_fraction <= 1:
        raise ParamsError("params.yaml: 'track.network.kl_warmup_fraction' must be in [0, 1]")
