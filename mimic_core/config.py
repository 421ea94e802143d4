"""The params schema: one pydantic model per section, every key known, types and ranges declared.

`Section` is the base of every model: unknown keys are refused (and named with the closest known
key), values are not coerced (``"3"`` is not a number, ``true`` is not an integer, ``99.7`` is not a
frame count), and non-finite numbers are refused. `validate(model, data, where, file)` turns
pydantic's errors into one `ParamsError` that names the file and each offending key.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Mapping, TypeVar, Union

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict, StrictFloat, StrictInt,
                      TypeAdapter, ValidationError, model_validator)

from mimic_core.errors import ParamsError

M = TypeVar("M", bound=BaseModel)


class Section(BaseModel):
    """A params section: strict types, no unknown keys, finite numbers, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


def _fields(node: Any) -> dict[str, Any] | None:
    """{field name: annotation} of a model or dataclass, else None."""
    if isinstance(node, type) and issubclass(node, BaseModel):
        return {k: f.annotation for k, f in node.model_fields.items()}
    if isinstance(node, type) and dataclasses.is_dataclass(node):
        return {k: f.annotation for k, f in node.__pydantic_fields__.items()} if hasattr(
            node, "__pydantic_fields__") else {f.name: f.type for f in dataclasses.fields(node)}
    return None


def _known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names of the (nested) model that `loc` (up to its last part) points into."""
    node: Any = model
    parts = iter(loc[:-1])
    for part in parts:
        fields = _fields(node)
        if isinstance(part, int) or fields is None:
            continue
        if node is TrackSection and part == "profiles":
            next(parts, None)   # profiles.<name>.<key>: the override of track.<key>
            continue
        if part not in fields:
            return []
        node = _model_of(fields[part])
        if _is_mapping(fields[part]):
            next(parts, None)   # the mapping's own key (e.g. an analysis name)
    return list(_fields(node) or [])


def _is_mapping(annotation: Any) -> bool:
    """Whether an annotation is dict[...] (through Annotated and | None)."""
    origin = typing.get_origin(annotation)
    if origin is dict:
        return True
    return origin in (Annotated, Union, types.UnionType) and any(_is_mapping(a) for a in typing.get_args(annotation))


def _model_of(annotation: Any) -> Any:
    """The model or dataclass inside an annotation (X, X | None, dict[str, X], list[X]), else the annotation."""
    if _fields(annotation) is not None:
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if _fields(found) is not None:
            return found
    return annotation


def _dotted(where: str, loc: tuple) -> str:
    parts = [where] if where else []
    for p in loc:
        if isinstance(p, int):
            parts[-1:] = [f"{parts[-1]}[{p}]" if parts else f"[{p}]"]
        else:
            parts.append(str(p))
    return ".".join(parts)


def describe(e: ValidationError, model: type[BaseModel], where: str) -> list[str]:
    """One line per error: the dotted key, what is wrong, and for an unknown key the closest known one."""
    lines = []
    for err in e.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, Invalid):   # a cross-field check: it names its key
            lines.append(f"'{_dotted(where, loc + tuple(cause.key.split('.')))}': {cause}")
            continue
        key = _dotted(where, loc)
        if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            known = _known_keys(model, loc)
            close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            hint = f"; did you mean '{_dotted(where, loc[:-1] + (close[0],))}'?" if close else ""
            lines.append(f"'{key}': unknown key{hint} (known: {', '.join(known) or 'none'})")
        elif err["type"] in ("missing", "missing_argument"):
            lines.append(f"'{key}': missing")
        else:
            value = err.get("input")
            shown = "" if isinstance(value, Mapping) else f" (got {value!r})"
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"'{key}': {msg}{shown}")
    return lines


def validate(model: type[M], data: Any, where: str = "", file: str = "params.yaml") -> M:
    """`model` built from `data`, or a ParamsError naming the file and every bad key."""
    try:
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model.model_validate(data)
        return TypeAdapter(model).validate_python(data)   # a dataclass section
    except ValidationError as e:
        lines = describe(e, model, where)
        head = f"{file}: " + (lines[0] if len(lines) == 1 else f"{len(lines)} problems in '{where or 'params'}':")
        body = "" if len(lines) == 1 else "".join(f"\n  {line}" for line in lines)
        raise ParamsError(head + body) from None


# ----------------------------------------------------------------------------------------------
# value types: every leaf strict (models holding a dataclass must be lax at their own level,
# because pydantic's strict mode takes only dataclass instances, so strictness lives in the leaves)
# ----------------------------------------------------------------------------------------------
Int = Annotated[int, Strict()]
PosInt = Annotated[int, Strict(), Field(gt=0)]
NonNegInt = Annotated[int, Strict(), Field(ge=0)]
Float = Annotated[float, Strict()]          # an integer is taken (and stored as a float)
PosFloat = Annotated[float, Strict(), Field(gt=0)]
NonNegFloat = Annotated[float, Strict(), Field(ge=0)]
Fraction = Annotated[float, Strict(), Field(ge=0, le=1)]
ShareBelowOne = Annotated[float, Strict(), Field(ge=0, lt=1)]
Str = Annotated[str, Strict()]
Bool = Annotated[bool, Strict()]
Vec3 = Annotated[list[Float], Field(min_length=3, max_length=3)]
Point = Annotated[Vec3, AfterValidator(tuple)]   # a hashable [x, y, z]


class Invalid(ValueError):
    """A cross-field check that failed: `key` (dotted, relative to where it is raised) is the culprit."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


def _ordered(v: list) -> list:
    if v[0] > v[1]:
        raise ValueError("the first value must not exceed the second")
    return v


def _increasing(v: list) -> list:
    if not v[0] < v[1]:
        raise ValueError("low must be below high")
    return v


Range = Annotated[list[Int], Field(min_length=2, max_length=2), AfterValidator(_ordered)]   # [low, high], inclusive
Interval = Annotated[list[PosFloat], Field(min_length=2, max_length=2), AfterValidator(_ordered)]
Band = Annotated[list[PosFloat], Field(min_length=2, max_length=2), AfterValidator(_increasing)]   # Hz


def _as_tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


# Config of the dataclass sections (pydantic reads it from the class).
_DATACLASS = ConfigDict(extra="forbid", allow_inf_nan=False)


# ----------------------------------------------------------------------------------------------
# model, data
# ----------------------------------------------------------------------------------------------
class ModelSection(Section):
    """`model`: the MJCF and how keypoints and EMG channels attach to it."""

    xml: Str
    keypoint_map: Annotated[dict[Str, Str], Field(min_length=1)]
    emg_muscles: dict[Str, Str]


def _brackets_one(v: list) -> list:
    if not v[0] < 1 < v[1]:
        raise ValueError(f"expected [low, high] with low < 1 < high, got {v}")
    return v


class Plausibility(Section):
    """`data.keypoints.plausibility`: keypoints checked against the model's geometry before any fit."""

    check: Bool
    distance_ratio: Annotated[list[PosFloat], Field(min_length=2, max_length=2), AfterValidator(_brackets_one)]
    anchored_motion_ratio: PosFloat
    anchored_floor_ratio: PosFloat


class KeypointSource(Section):
    glob: Annotated[str, Strict(), Field(min_length=1)]
    format: Literal["stac_h5", "sleap_anipose_h5", "anipose_csv"]
    units: Literal["m", "mm", "cm"]
    fps: PosFloat
    names: list[Str] | None
    plausibility: Plausibility


class EmgSource(Section):
    glob: Str                     # empty: no EMG
    format: Literal["twin_emg_h5"]


class DataSection(Section):
    """`data`: where the raw keypoints and EMG are and how they are stored."""

    label: Literal["synthetic", "real"]
    keypoints: KeypointSource
    emg: EmgSource
    truth_dir: Str                # empty: no ground truth


# ----------------------------------------------------------------------------------------------
# twin
# ----------------------------------------------------------------------------------------------
class Posture(Section):
    mean: list[Float]             # degrees, in the model's joint order
    sd: list[NonNegFloat]

    @model_validator(mode="after")
    def _same_length(self):
        if len(self.mean) != len(self.sd):
            raise Invalid("sd", f"has {len(self.sd)} values, mean {len(self.mean)}")
        return self


class Offsets(Section):
    mean: list[Vec3]              # mm, one [x, y, z] per keypoint
    sd: NonNegFloat


class TwinEmg(Section):
    fs: PosFloat
    channels: Annotated[list[Str], Field(min_length=1)]
    gain_uv: NonNegFloat
    muap_hz: Band
    floor_uv: NonNegFloat
    artefact_uv: NonNegFloat
    artefact_hz: Band
    hf_noise_uv: NonNegFloat
    hf_noise_hz: Band


class TwinSection(Section):
    """`twin`: the synthetic twin generator (`mimic-bench make-twin`)."""

    seed: NonNegInt
    n_trials: PosInt
    n_frames: PosInt
    fps: PosFloat
    joint_margin_deg: NonNegFloat
    onset_frame: Range
    lift_duration_s: Interval
    grasp_duration_s: Interval
    rest_deg: Posture
    lift_deg: Posture
    grasp_deg: Posture
    offsets_mm: Offsets
    keypoint_noise_mm: NonNegFloat
    dropout_fraction: Fraction
    static_opt_regularization: PosFloat
    cmc_bandwidth_hz: PosFloat
    emg: TwinEmg

    @model_validator(mode="after")
    def _reach_fits(self):
        if self.onset_frame[0] < 0 or self.onset_frame[1] >= self.n_frames:
            raise Invalid("onset_frame", f"must lie in the trial's frames 0-{self.n_frames - 1}")
        return self


# ----------------------------------------------------------------------------------------------
# prepare
# ----------------------------------------------------------------------------------------------
class ClipWindow(Section):
    start_frame: NonNegInt
    n_frames: PosInt


class PrepareEmg(Section):
    bandpass_hz: Band
    bandpass_order: PosInt
    envelope_lowpass_hz: PosFloat
    envelope_order: PosInt
    scale_percentile: Annotated[float, Strict(), Field(gt=0, le=100)]
    epoch_s: PosFloat
    fps: PosFloat


class PrepareSection(Section):
    """`prepare`: the clip window and the EMG envelope."""

    clip: ClipWindow
    emg: PrepareEmg


# ----------------------------------------------------------------------------------------------
# stac: a frozen dataclass, because the solver's jit cache keys on it
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TemporalPrior:
    """`stac.temporal`: the prior on each clip's joint trajectory (mimic_core/stac/smoother.py)."""

    __pydantic_config__ = _DATACLASS

    order: Annotated[int, Strict(), Field(ge=2, le=4)]   # white noise on this derivative of the joint angles
    log10_ratio: Annotated[list[Float], Field(min_length=2, max_length=2), AfterValidator(_increasing),
                           AfterValidator(tuple)]        # [low, high] of the search over qc / sigma^2
    coarse_step: PosFloat         # decades between the coarse grid's points
    fine_step: PosFloat           # decades between the fine points placed around the coarse grid's best
    gn_iters: PosInt              # damped Gauss-Newton (smoother) steps per solve
    max_gap_frames: PosInt        # longest run of frames with no keypoint the prior may bridge
    on_long_gap: Literal["error", "per_frame"]          # a longer gap: stop, or register that clip per frame

    def __post_init__(self):
        if not 0 < 2 * self.fine_step <= self.coarse_step:
            raise Invalid("fine_step", "must be at most half of coarse_step (the fine points lie between coarse ones)")


@dataclass(frozen=True)
class StacConfig:
    """Solver settings (params `stac`, less the initial offsets and the metrics' settings)."""

    __pydantic_config__ = _DATACLASS

    mode: Literal["temporal", "per_frame"]   # temporal: the prior over each clip's frames; per_frame: the original
    n_iters: NonNegInt            # alternations of (a) IK and (b) offsets
    lm_max_iters: PosInt          # Levenberg-Marquardt iterations per frame and pass
    lm_tol: PosFloat              # stop when the largest step (rad) is below this
    lm_ftol: NonNegFloat          # ... or when an accepted step lowers the cost by less than this share
    lm_damping: PosFloat          # initial LM damping (relative to diag(J^T J))
    offset_reg: NonNegFloat       # penalty toward the initial offsets, in frame-equivalents
    min_fit_frames: PosInt        # frames with every keypoint present needed to fit offsets
    n_init: PosInt                # starts per joint for the first frame (grid over the range)
    temporal: TemporalPrior

    @classmethod
    def from_params(cls, stac: Any) -> "StacConfig":
        """The solver settings of params['stac'] alone, checked (every key known and present)."""
        return validate(StacSection, stac, "stac").solver()


@dataclass(frozen=True)
class StacSection(StacConfig):
    """`stac`: the solver settings and the initial offsets (mm, one [x, y, z] per keypoint)."""

    initial_offsets_mm: Annotated[tuple[Point, ...], Field(min_length=1)]
    hf_cutoff_hz: PosFloat        # joint motion above this is scored as high-frequency (registration.json)

    def solver(self) -> StacConfig:
        """The solver settings alone (so that the offsets do not key the jit cache)."""
        return StacConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(StacConfig)})


# ----------------------------------------------------------------------------------------------
# track: frozen dataclasses, as env/train/evaluate use them and the checkpoints hash
# dataclasses.asdict(TrackConfig): field order, names and types here are that hash
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PhysicsConfig:
    __pydantic_config__ = _DATACLASS

    timestep: PosFloat            # s
    substeps: PosInt              # physics steps per control step: timestep * substeps = 1 / reference fps
    integrator: Literal["euler", "implicitfast", "rk4"]
    solver: Literal["newton", "cg"]
    iterations: PosInt
    ls_iterations: PosInt
    impl: Literal["jax", "warp"] = "jax"   # MJX backend: MJX-JAX (the original's) or MuJoCo Warp (the `warp` extra)


@dataclass(frozen=True)
class EnvConfig:
    __pydantic_config__ = _DATACLASS

    episode_frames: PosInt        # control steps per episode (at most)
    obs_ref_frames: PosInt        # future reference frames in the observation
    joint_weight: NonNegFloat     # lambda_joint
    joint_scale: PosFloat         # alpha_joint, in 1/rad^2
    ctrl_diff_weight: NonNegFloat  # cost on the change of the controls between steps
    energy_weight: NonNegFloat    # lambda_energy, on sum |actuator velocity| * |actuator force|
    termination_error_deg: PosFloat | None  # end the episode when the RMS joint error passes this (null: on NaN only)
    init_activation: Fraction     # muscle activation at reset
    action_mapping: Literal["affine", "clamp"]   # affine: u = (a + 1) / 2; clamp: u = clip(a, 0, 1) (the original)
    energy: Literal["muscle", "joint"]   # muscle: sum |v_m| |f_m|; joint: sum |qvel| |qfrc_actuator| (the original)
    energy_cap: PosFloat | None   # the energy term is capped at this (null: no cap)
    reset_velocity: Literal["reference", "zero"]   # joint velocities at reset: the reference's, or zero (the original)
    proprio: Annotated[tuple[Literal["qpos", "qvel", "qvel_dt", "act", "qfrc_actuator", "end_effector"], ...],
                       BeforeValidator(_as_tuple), Field(min_length=1)]   # proprioception, in this order
    end_effector_body: Str        # the body whose position `end_effector` observes

    def __post_init__(self):
        if len(set(self.proprio)) != len(self.proprio):
            raise Invalid("proprio", f"{list(self.proprio)} names a feature twice")


@dataclass(frozen=True)
class NetworkConfig:
    __pydantic_config__ = _DATACLASS

    hidden: Annotated[tuple[PosInt, ...], BeforeValidator(_as_tuple), Field(min_length=1)]
    intention_size: PosInt
    kl_weight: NonNegFloat
    kl_warmup_fraction: Fraction  # linear warm-up of the KL weight over this share of training
    min_std: PosFloat             # floor of the action std (pre-tanh)
    init_std: PosFloat            # action std (pre-tanh) of the untrained policy
    intention_init_logvar: Float  # log-variance of the untrained intention (0: N(mean, I))
    kl_prior: Literal["standard", "autoregressive"]   # N(0, I), or N(ar_coef z_{t-1}, ar_var I) (the original)
    kl_reduce: Literal["sum", "mean"]   # over the intention's dimensions (the original: mean)
    ar_coef: Fraction             # of the autoregressive prior
    ar_var: PosFloat              # its step variance (0.0975 = 1 - 0.95^2: stationary variance 1)

    def __post_init__(self):
        if not self.init_std > self.min_std:
            raise Invalid("init_std", f"{self.init_std} must exceed min_std ({self.min_std})")


@dataclass(frozen=True)
class PPOConfig:
    __pydantic_config__ = _DATACLASS

    seed: NonNegInt
    total_env_steps: PosInt
    num_envs: PosInt
    unroll_length: PosInt
    num_minibatches: PosInt
    batch_size: PosInt            # sequences per minibatch; an update uses batch_size * num_minibatches sequences
    update_epochs: PosInt
    learning_rate: PosFloat
    lr_schedule: Literal["constant", "linear"]   # linear: annealed over training (the original: constant)
    lr_final_fraction: Fraction   # linear: the learning rate at the last update, as a share of learning_rate
    max_grad_norm: PosFloat
    clip_eps: PosFloat
    discount: Fraction
    gae_lambda: Fraction
    entropy_cost: NonNegFloat
    value_cost: NonNegFloat
    normalize_observations: Bool
    normalize_advantages: Bool
    reward_scaling: PosFloat
    checkpoint_every: PosInt      # iterations between checkpoints

    def __post_init__(self):
        if (self.batch_size * self.num_minibatches) % self.num_envs:
            raise Invalid("batch_size", f"batch_size * num_minibatches = {self.batch_size * self.num_minibatches} "
                          f"sequences per update is not a multiple of num_envs ({self.num_envs})")

    @property
    def unrolls_per_update(self) -> int:
        """Unrolls of all envs collected for one update (brax's batch structure)."""
        return self.batch_size * self.num_minibatches // self.num_envs


@dataclass(frozen=True)
class EvaluateConfig:
    __pydantic_config__ = _DATACLASS

    hf_cutoff_hz: PosFloat        # action power above this counts as high-frequency


@dataclass(frozen=True)
class TrackConfig:
    """The settings of one policy: the track sections with its profile applied, and its weight."""

    physics: PhysicsConfig
    env: EnvConfig
    network: NetworkConfig
    ppo: PPOConfig
    evaluate: EvaluateConfig
    ctrl_cost_weight: float       # lambda_ctrl of this policy (one value of the sweep)
    held_out_fraction: float      # share of the clips never trained on (chosen by `held_out_seed` from the names)
    held_out_seed: int

    @property
    def iterations(self) -> int:
        """PPO iterations that reach the step budget (at least one)."""
        per_iter = self.ppo.num_envs * self.ppo.unroll_length * self.ppo.unrolls_per_update
        return max(1, -(-self.ppo.total_env_steps // per_iter))

    def replace(self, **kw) -> "TrackConfig":
        """A copy with some fields replaced."""
        return dataclasses.replace(self, **kw)


BASE_PROFILE = "cpu"              # `track.profile` naming the base values themselves
Weight = Annotated[Union[StrictInt, StrictFloat], Field(ge=0)]   # kept as written: its str is a report key


def _merge(base: Mapping, over: Mapping) -> dict:
    """`base` with `over` merged in, nested mappings key by key."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def _line_errors(e: ValidationError, prefix: tuple) -> list[dict]:
    return [{"type": err["type"], "loc": prefix + tuple(err["loc"]), "input": err["input"],
             **({"ctx": err["ctx"]} if "ctx" in err else {})} for err in e.errors(include_url=False)]


class TrackSection(Section):
    """`track` with `profiles.<profile>` merged over the base; every profile is checked merged."""

    model_config = ConfigDict(strict=False)   # holds dataclasses: see the value types

    profile: Str
    ctrl_cost_weights: Annotated[list[Weight], Field(min_length=1)]
    physics: PhysicsConfig
    env: EnvConfig
    network: NetworkConfig
    ppo: PPOConfig
    evaluate: EvaluateConfig
    held_out_fraction: ShareBelowOne   # the original's train_subset_ratio 0.8: 20% of the clips held out
    held_out_seed: NonNegInt
    profiles: dict[Str, dict[Str, Any]]   # the overrides as written (each checked merged over the base)

    @model_validator(mode="wrap")
    @classmethod
    def _apply_profile(cls, data: Any, handler):
        if not (isinstance(data, Mapping) and isinstance(data.get("profiles"), Mapping)
                and isinstance(data.get("profile"), str)):
            return handler(data)   # the field checks say what is wrong
        profiles, name = data["profiles"], data["profile"]
        if name != BASE_PROFILE and name not in profiles:
            raise Invalid("profile", f"{name!r} is not defined; defined profiles: "
                          f"{', '.join([BASE_PROFILE + ' (the base values)', *profiles])}")
        base = handler({**data, "profile": BASE_PROFILE})   # the base's own errors, once
        chosen, errors = base, []
        for other, over in profiles.items():
            if isinstance(over, Mapping) and {"profile", "profiles"} & set(over):
                raise Invalid(f"profiles.{other}", "a profile cannot set profile or profiles")
            try:
                got = handler({**_merge(data, over if isinstance(over, Mapping) else {}), "profile": other})
            except ValidationError as e:
                errors += _line_errors(e, ("profiles", other))
                continue
            if other == name:
                chosen = got
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return chosen

    def policy(self, ctrl_cost_weight: float) -> TrackConfig:
        """The config of the policy of one weight of the sweep."""
        return TrackConfig(self.physics, self.env, self.network, self.ppo, self.evaluate, float(ctrl_cost_weight),
                           self.held_out_fraction, self.held_out_seed)


def weight_key(w: Any) -> str:
    """The report key of a weight: Python's str of the YAML value, as DVC's templating renders it."""
    return str(w)


# ----------------------------------------------------------------------------------------------
# edm, latents
# ----------------------------------------------------------------------------------------------
class Analysis(Section):
    """One simplex projection: `sim` (a simulated muscle from the joints) or `emg` (an envelope channel
    from the reference joints and the actions of its muscle, `channel`, or of all muscles, `all`)."""

    kind: Literal["sim", "emg"]
    E: PosInt
    muscle: Str | None = None     # sim only (not a number: absent means not this kind)
    channel: Str | None = None    # emg only
    actions: Literal["channel", "all"] | None = None   # emg only

    @model_validator(mode="after")
    def _keys_of_kind(self):
        need = {"sim": {"muscle"}, "emg": {"channel", "actions"}}[self.kind]
        for k in ("muscle", "channel", "actions"):
            if (getattr(self, k) is None) == (k in need):
                raise Invalid(k, f"{'needed' if k in need else 'not used'} for kind {self.kind}")
        return self


class CcmPair(Section):
    """One CCM over the reach epochs: joint angles and a muscle signal, `sim` (the simulated joints and the
    simulated activation of `muscle`, per weight) or `emg` (the reference joints and an envelope channel)."""

    kind: Literal["sim", "emg"]
    muscle: Str | None = None     # sim only
    channel: Str | None = None    # emg only

    @model_validator(mode="after")
    def _keys_of_kind(self):
        need = {"sim": "muscle", "emg": "channel"}[self.kind]
        for k in ("muscle", "channel"):
            if (getattr(self, k) is None) == (k == need):
                raise Invalid(k, f"{'needed' if k == need else 'not used'} for kind {self.kind}")
        return self


SurrogateMethod = Literal["random_shuffle", "ebisuzaki", "clip_ebisuzaki", "clip_swap"]


class CcmSection(Section):
    """`edm.ccm`: convergent cross mapping (pyEDM 2.5.7 semantics) and its surrogate tests."""

    E: PosInt
    lib_fractions: Annotated[list[Annotated[float, Strict(), Field(gt=0, le=1)]], Field(min_length=2)]
    sample: PosInt
    seed: NonNegInt
    exclusion: Literal["clip"] | NonNegInt
    surrogates: Annotated[list[SurrogateMethod], Field(min_length=1)]
    n_surrogates: PosInt
    pairs: Annotated[dict[Str, CcmPair], Field(min_length=1)]

    @model_validator(mode="after")
    def _rising(self):
        if any(b <= a for a, b in zip(self.lib_fractions, self.lib_fractions[1:])):
            raise Invalid("lib_fractions", "must rise")
        return self


class SmapSection(Section):
    """`edm.smap`: S-map nonlinearity (pyEDM PredictNonlinear) of each EMG envelope channel."""

    E: PosInt
    thetas: Annotated[list[NonNegFloat], Field(min_length=2)]
    channels: Annotated[list[Str], Field(min_length=1)]

    @model_validator(mode="after")
    def _has_zero(self):
        if 0.0 not in self.thetas:
            raise Invalid("thetas", "must include 0 (the global linear map the others are measured against)")
        return self


class EdmSection(Section):
    """`edm`: simplex projection settings and the analyses; CCM and S-map (absent: not run)."""

    tau: Int
    Tp: NonNegInt
    lib_fraction: Annotated[float, Strict(), Field(gt=0, lt=1)]
    n_surrogates: PosInt
    seed: NonNegInt
    exclusion_radius: NonNegInt
    analyses: Annotated[dict[Str, Analysis], Field(min_length=1)]
    ccm: CcmSection | None = None
    smap: SmapSection | None = None

    @model_validator(mode="after")
    def _tau_not_zero(self):
        if self.tau == 0:
            raise Invalid("tau", "must be non-zero")
        return self


class LatentsSection(Section):
    """`latents`: the rollout datasets to analyse and how many PCs to report."""

    layers: Annotated[list[Str], Field(min_length=1)]
    n_components: PosInt


class ConvergenceSettings(Section):
    """How the report reads convergence off a training curve (reports/training/<weight>.csv)."""

    smooth_iterations: PosInt   # trailing moving average of joint_error_deg over this many iterations
    tolerance_deg: NonNegFloat  # converged: from the first env step where the average stays this close to its end


class ReportSection(Section):
    """`report`: the stage's own settings (the paper's figures are in bench/paper_figures.yaml)."""

    weight: Weight               # lambda_ctrl of the policy set against the paper's analysis figures
    convergence: ConvergenceSettings


# ----------------------------------------------------------------------------------------------
# the whole file
# ----------------------------------------------------------------------------------------------
class Params(Section):
    """params.yaml, every section typed (the paper's figures and the compare rules live in their own files)."""

    model_config = ConfigDict(strict=False)   # holds dataclasses: see the value types

    model: ModelSection
    data: DataSection
    twin: TwinSection
    prepare: PrepareSection
    stac: StacSection
    track: TrackSection
    edm: EdmSection
    latents: LatentsSection
    report: ReportSection

    @model_validator(mode="after")
    def _across_sections(self):
        n, kmap = len(self.model.keypoint_map), ", ".join(self.model.keypoint_map)
        if len(self.stac.initial_offsets_mm) != n:
            raise Invalid("stac.initial_offsets_mm", f"has {len(self.stac.initial_offsets_mm)} offsets; "
                          f"expected one [x, y, z] per keypoint of model.keypoint_map ({kmap})")
        if len(self.twin.offsets_mm.mean) != n:
            raise Invalid("twin.offsets_mm.mean", f"has {len(self.twin.offsets_mm.mean)} offsets; "
                          f"expected one [x, y, z] per keypoint of model.keypoint_map ({kmap})")
        unmapped = [c for c in self.twin.emg.channels if c not in self.model.emg_muscles]
        if unmapped:
            raise Invalid("twin.emg.channels", f"{unmapped} are not channels of model.emg_muscles")
        for name, a in self.edm.analyses.items():
            if a.actions == "channel" and a.channel not in self.model.emg_muscles:
                raise Invalid(f"edm.analyses.{name}.channel", f"{a.channel!r} has no muscle in model.emg_muscles")
        return self


def as_params(params: "Mapping[str, Any] | Params", file: str = "params.yaml") -> Params:
    """`params` as a checked `Params` (a raw params.yaml dict is validated; a `Params` is returned as is)."""
    return params if isinstance(params, Params) else validate(Params, params, "", file)


def load_config(path: str | os.PathLike = "params.yaml") -> Params:
    """Read and check params.yaml: a ParamsError names the file and every bad key."""
    from mimic_core.params import load_params

    return validate(Params, load_params(path), "", str(path))
