"""Time to a target quality (MLPerf's measure; issue 17): PPO training of one policy per seed until its held-out
joint error reaches a target, the way `dvc repro` trains (the same env, networks, schedule and held-out split).

Per seed: the training and evaluation programs are compiled first and timed apart; then PPO iterations run, and
every `eval_every_iterations` a deterministic rollout of every held-out clip (as `evaluate` does) gives the
held-out joint error (RMS over frames 1.., deg, against the reference; tracking.json's joint_error_deg). The seed
reaches the target at the first evaluation at or below it. Training seconds exclude the evaluations and the
compiles, which are reported beside them; env steps are counted as training counts them. Settings:
bench/time_to_target.yaml.
"""
from __future__ import annotations

import copy
import dataclasses
import statistics
import time
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Mapping, Union

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError, model_validator

from mimic_core.errors import DataError, MimicError, ParamsError

SETTINGS = Path(__file__).with_name("time_to_target.yaml")


class Settings(BaseModel):
    """bench/time_to_target.yaml."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    weight: Annotated[Union[StrictInt, StrictFloat], Field(ge=0)]
    target: Literal["mean_trajectory_baseline", "fixed"]
    target_joint_error_deg: Annotated[float, Field(gt=0)] | None = None
    eval_every_iterations: Annotated[int, Field(gt=0)]
    max_env_steps: Annotated[int, Field(gt=0)]
    seeds: Annotated[list[StrictInt], Field(min_length=1)]

    @model_validator(mode="after")
    def _fixed_needs_a_value(self):
        if (self.target == "fixed") != (self.target_joint_error_deg is not None):
            raise ValueError("target_joint_error_deg is the target when target is 'fixed', and only then")
        return self


def load_settings(path: str | Path = SETTINGS, seeds: list[int] | None = None) -> Settings:
    """The checked settings; `seeds` replaces the file's. Errors name the file and the field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ParamsError(f"{path}: cannot be read ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not YAML ({e})") from None
    if seeds is not None and isinstance(raw, dict):
        raw = {**raw, "seeds": list(seeds)}
    try:
        return Settings.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "(top level)"
        raise ParamsError(f"{path}: {where}: {err['msg']}") from None


@dataclasses.dataclass
class Problem:
    """What every seed shares: the config, the two envs (training clips; every clip), and the target."""

    cfg: Any
    fm: Any
    clips: Any                # every clip
    env_train: Any
    env_eval: Any
    held_idx: np.ndarray      # held-out clips' indices into `clips`
    target_deg: float
    target_how: str
    clips_source: str
    profile: str


def build_problem(params: Mapping[str, Any], settings: Settings, registered: str | Path | None,
                  profile: str | None = None) -> Problem:
    """The envs on the registered clips, or on 10 clips synthesised from the model where there are none
    (as `throughput` does: a machine without `dvc repro`); the target from the settings."""
    from bench.throughput import with_synthetic_clips
    from mimic_core.track.config import resolve_profile
    from mimic_core.track.evaluate import baseline_metrics
    from mimic_core.track.reference import find_registered, held_out_split
    from mimic_core.track.stage import setup

    params = copy.deepcopy(dict(params))
    if profile is not None:
        params["track"] = {**params["track"], "profile": profile}
    resolve_profile(params["track"])
    weight = float(settings.weight)
    try:
        found = registered is not None and bool(find_registered(registered))
    except DataError:
        found = False

    def both(src):
        cfg, fm, clips, env_eval = setup(params, weight, registered=src)
        _, _, _, env_train = setup(params, weight, registered=src, training_only=True)
        return cfg, fm, clips, env_train, env_eval

    if found:
        cfg, fm, clips, env_train, env_eval = both(registered)
        source = str(registered)
    else:
        (cfg, fm, clips, env_train, env_eval), what = with_synthetic_clips(params, weight, 10, 0, both)
        source = f"{what} ({registered} holds no registered clips)"
    held = held_out_split(clips.clip_names, cfg.held_out_fraction, cfg.held_out_seed)
    if not held.any():
        raise ParamsError("track.held_out_fraction leaves no held-out clip: time-to-target scores held-out clips")
    if settings.target == "fixed":
        target, how = float(settings.target_joint_error_deg), "fixed in the settings"
    else:
        base = baseline_metrics(env_eval, clips, fm, cfg, None, held)["mean_trajectory"]["held_out"]
        target = float(base["joint_error_deg"])
        how = "the mean-trajectory baseline's held-out joint error on these clips"
    return Problem(cfg, fm, clips, env_train, env_eval, np.flatnonzero(held), target, how, source,
                   str(params["track"].get("profile") or "default"))


def held_out_error(rec_qpos: np.ndarray, ref_qpos: np.ndarray) -> float:
    """RMS joint error (deg) of rollouts (C, T-1, nq), frames 1.., against the reference (C, T, nq)."""
    return float(np.sqrt(np.mean(np.degrees(np.asarray(rec_qpos, np.float64) - ref_qpos[:, 1:]) ** 2)))


def run_seed(pb: Problem, seed: int, settings: Settings, deadline: float | None = None,
             clock: Callable[[], float] = time.perf_counter, log: Callable[[str], None] | None = None) -> dict:
    """Train one seed until the target, `max_env_steps`, or `deadline` (a `clock()` value)."""
    import jax
    import jax.numpy as jnp

    from mimic_core.track.evaluate import make_rollout
    from mimic_core.track.train import finite_metrics, make_train

    cfg = pb.cfg.replace(ppo=dataclasses.replace(pb.cfg.ppo, seed=int(seed)))
    trainer = make_train(cfg, pb.env_train)
    rollout = jax.jit(make_rollout(pb.env_eval, trainer.networks, cfg.ppo.normalize_observations))
    held = jnp.asarray(pb.held_idx)
    ref = np.asarray(pb.clips.qpos[pb.held_idx], np.float64)

    t0 = clock()
    state = jax.block_until_ready(trainer.jit_init(jax.random.PRNGKey(cfg.ppo.seed)))
    step = trainer.jit_iteration.lower(state).compile()
    policy = {"params": state.params, "obs_norm": state.obs_norm}
    evaluate = rollout.lower(policy, held).compile()
    compile_s = clock() - t0

    curve, train_s, eval_s, reached, why = [], 0.0, 0.0, False, "max_env_steps"
    env_steps, it = int(state.env_steps), 0
    while env_steps < settings.max_env_steps:
        if deadline is not None and clock() >= deadline:
            why = "time budget"
            break
        t = clock()
        state, m = step(state)
        m = jax.device_get(m)
        train_s += clock() - t
        it += 1
        env_steps = int(m["env_steps"])
        if not finite_metrics(m):
            why = "diverged"
            break
        if it % settings.eval_every_iterations == 0:
            t = clock()
            recs, _ = evaluate({"params": state.params, "obs_norm": state.obs_norm}, held)
            q = np.asarray(recs["qpos"])
            eval_s += clock() - t
            err = held_out_error(q, ref) if np.isfinite(q).all() else float("nan")
            curve.append({"iteration": it, "env_steps": env_steps, "train_seconds": train_s,
                          "held_out_joint_error_deg": err,
                          "finite_worlds": int(np.isfinite(q).reshape(q.shape[0], -1).all(axis=1).sum())})
            if log:
                log(f"seed {seed}: {env_steps:,} env steps, {train_s:.1f} s: held-out joint error {err:.2f} deg "
                    f"(target {pb.target_deg:.2f})")
            if err <= pb.target_deg:
                reached, why = True, "reached"
                break
    return {"seed": int(seed), "reached": reached, "stopped": why, "iterations": it, "env_steps": env_steps,
            "train_seconds": train_s, "eval_seconds": eval_s, "compile_seconds": compile_s,
            "final_held_out_joint_error_deg": curve[-1]["held_out_joint_error_deg"] if curve else None,
            "curve": curve}


def _spread(values: list[float]) -> dict | None:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)} if values else None


def summarise(runs: list[dict]) -> dict:
    """Median and range over the seeds that reached the target (MLPerf reports its runs' spread likewise)."""
    ok = [r for r in runs if r["reached"]]
    return {"n_seeds": len(runs), "n_reached": len(ok),
            "train_seconds": _spread([r["train_seconds"] for r in ok]),
            "env_steps": _spread([float(r["env_steps"]) for r in ok]),
            "compile_seconds": _spread([r["compile_seconds"] for r in runs])}


def run_time_to_target(params: Mapping[str, Any], settings: Settings, registered: str | Path | None,
                       profile: str | None = None, budget_s: float | None = None,
                       on_seed: Callable[[dict], None] | None = None, log: Callable[[str], None] | None = None,
                       clock: Callable[[], float] = time.perf_counter) -> dict:
    """Every seed in turn (one after another: the device is the unit being timed); `on_seed(partial report)`
    after each, so a caller can write what it has. A seed that the budget cuts short says so."""
    import jax

    pb = build_problem(params, settings, registered, profile)
    deadline = None if budget_s is None else clock() + budget_s
    runs: list[dict] = []

    def report(complete: bool) -> dict:
        return {"profile": pb.profile, "ctrl_cost_weight": settings.weight, "clips": pb.clips_source,
                "data": pb.clips.label, "n_clips": len(pb.clips.clip_names), "n_held_out": int(pb.held_idx.size),
                "target": {"held_out_joint_error_deg": pb.target_deg, "how": pb.target_how},
                "settings": settings.model_dump(),
                "matmul_precision": str(jax.config.jax_default_matmul_precision or "default"),
                "runs": list(runs), "summary": summarise(runs), "complete": complete}

    for seed in settings.seeds:
        if deadline is not None and clock() >= deadline:
            break
        runs.append(run_seed(pb, seed, settings, deadline, clock, log))
        if on_seed:
            on_seed(report(False))
    if not runs:
        raise MimicError("the time budget ended before the first seed started")
    return report(len(runs) == len(settings.seeds) and all(r["stopped"] != "time budget" for r in runs))


def format_table(rep: dict) -> str:
    lines = [f"time to a held-out joint error of {rep['target']['held_out_joint_error_deg']:.2f} deg "
             f"({rep['target']['how']}); {rep['profile']} profile, lambda {rep['ctrl_cost_weight']}, "
             f"{rep['data']} data", f"  {'seed':>4s} {'reached':>8s} {'env steps':>12s} {'train s':>9s} "
                                    f"{'eval s':>8s} {'compile s':>10s} {'final deg':>10s}"]
    for r in rep["runs"]:
        fin = r["final_held_out_joint_error_deg"]
        lines.append(f"  {r['seed']:4d} {('yes' if r['reached'] else r['stopped']):>8s} {r['env_steps']:12,d} "
                     f"{r['train_seconds']:9.1f} {r['eval_seconds']:8.1f} {r['compile_seconds']:10.1f} "
                     f"{fin if fin is None else round(fin, 2)!s:>10s}")
    s = rep["summary"]
    if s["train_seconds"]:
        lines.append(f"  {s['n_reached']} of {s['n_seeds']} seeds reached it: median {s['train_seconds']['median']:.1f} s "
                     f"(range {s['train_seconds']['min']:.1f}-{s['train_seconds']['max']:.1f}), median "
                     f"{s['env_steps']['median']:,.0f} env steps")
    else:
        lines.append(f"  0 of {s['n_seeds']} seeds reached it")
    return "\n".join(lines)
