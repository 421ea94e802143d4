"""The `train` and `evaluate` stages: params + registered clips -> policies -> rollouts and metrics."""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import numpy as np

from mimic_core.config import Params, as_params
from mimic_core.errors import DataError, ParamsError
from mimic_core.io import atomic_dir, write_json
from mimic_core.model import ForelimbModel, load_forelimb
from mimic_core.params import params_hash
from mimic_core.config import TrackConfig, weight_key
from mimic_core.track.env import ImitationEnv
from mimic_core.track.reference import ReferenceClips, find_registered, held_out_split, load_registered



BASELINES = "baselines"           # the key of the baselines in tracking.json (beside the weights)


def setup(params: Mapping[str, Any] | Params, weight: float, registered: str | Path | None = None,
          fps: float | None = None, training_only: bool = False
          ) -> tuple[TrackConfig, ForelimbModel, ReferenceClips, ImitationEnv]:
    """Check params and data, then build the env: every error comes before anything compiles. With
    `training_only`, the env holds the training clips alone (the held-out ones by `track.held_out_fraction`)."""
    p = as_params(params)
    cfg = p.track.policy(weight)
    fm = load_forelimb(p.model.xml, p.model.keypoint_map)
    src = registered
    clips = load_registered(find_registered(src), fm.joint_names, fps=fps, kp_names=fm.keypoint_names)
    if clips.offsets.shape[1] != len(fm.keypoint_names):
        raise DataError(src, "offsets", f"clips have {clips.offsets.shape[1]} keypoints, the keypoint map "
                        f"{len(fm.keypoint_names)}")
    if training_only:
        held = held_out_split(clips.clip_names, cfg.held_out_fraction, cfg.held_out_seed)
        clips = clips.subset(np.flatnonzero(~held))
    env = ImitationEnv(fm.model, clips, cfg.env, cfg.physics, cfg.ctrl_cost_weight)
    return cfg, fm, clips, env


def find_weight(params: Mapping[str, Any] | Params, key: str) -> float:
    """The sweep weight whose report key is `key` (as written in params)."""
    ws = as_params(params).track.ctrl_cost_weights
    for w in ws:
        if weight_key(w) == key or _same_number(w, key):
            return float(w)
    raise ParamsError(f"control-cost weight {key!r} is not in track.ctrl_cost_weights {ws}")


def _same_number(w, key: str) -> bool:
    try:
        return float(key) == float(w)
    except ValueError:
        return False


def run_train(params: Mapping[str, Any] | Params, weight: str, out_dir: Path, metrics_csv: Path, ckpt_root: Path,
              progress: Callable[[dict], None] | None = None, registered: str | None = None,
              stop_after: int | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Train one policy of the sweep; resumes from its newest good checkpoint when the settings are the same
    (`log`: where a damaged checkpoint that was skipped is reported)."""
    from mimic_core.track import distributed as dist
    from mimic_core.track.run import fit, save_policy, write_rows
    from mimic_core.track.train import make_train

    p = as_params(params)
    w = find_weight(p, weight)
    cfg, fm, clips, env = setup(p, w, registered, training_only=True)
    trainer = make_train(cfg, env)
    settings = {"track": dataclasses.asdict(cfg), "model": p.model.model_dump(), "clips": clips.clip_names,
                "n_devices": trainer.mesh.devices.size}
    if dist.is_multiprocess():
        settings["processes"] = dist.processes_summary()
    reference_md5 = hashlib.md5(np.ascontiguousarray(clips.qpos).tobytes()).hexdigest()
    h = params_hash({**settings, "reference_md5": reference_md5})
    ckpt = Path(ckpt_root) / f"{weight_key(w)}-{h}"
    state, rows = fit(trainer, jax.random.PRNGKey(cfg.ppo.seed), ckpt, progress, stop_after=stop_after, log=log)
    last = rows[-1] if rows else {}
    meta = {"ctrl_cost_weight": weight_key(w), "data": clips.label, "settings_hash": h,
            "iterations": int(state.iteration), "env_steps": int(state.env_steps),
            "final": {k: float(v) for k, v in last.items() if k not in ("iteration", "env_steps")},
            "settings": settings}
    if dist.is_primary():   # under jax.distributed, process 0 writes while the others wait
        write_rows(Path(metrics_csv), rows)
        if stop_after is None or int(state.iteration) >= trainer.n_iterations:
            save_policy(Path(out_dir), state, meta)
    dist.barrier("mimic-bench train: written")
    return meta


@dataclasses.dataclass(frozen=True)
class Evaluated:
    """One policy rolled out on a set of clips, and what its metrics were computed from."""

    weight: str
    metrics: dict
    rec: dict
    keypoints: np.ndarray
    clips: ReferenceClips
    fm: ForelimbModel
    env: ImitationEnv
    cfg: TrackConfig
    truth: Any               # evaluate.Truth | None
    held: np.ndarray         # (C,) bool: clips the policy was not trained on


def evaluate_policy(params: Mapping[str, Any] | Params, policy_dir: Path, registered: str | None, label: str | None = None,
                    truth_dir: str | None = None, fps: float | None = None) -> Evaluated:
    """Roll out one saved policy on clips, scored on the clips it trained on and the others apart."""
    from mimic_core.track.evaluate import abstract_policy, load_truth, rollout_clips, split_metrics
    from mimic_core.track.networks import make_networks
    from mimic_core.track.run import load_policy, policy_meta

    meta = policy_meta(Path(policy_dir))
    weight = meta["ctrl_cost_weight"]
    cfg, fm, clips, env = setup(params, float(weight), registered, fps=fps)
    trained = meta.get("settings", {}).get("clips")
    if not isinstance(trained, list):
        raise DataError(Path(policy_dir) / "policy.json", "settings.clips", "does not list the clips the policy "
                        "trained on (re-run `mimic-bench train`)")
    held = np.array([n not in set(trained) for n in clips.clip_names])
    nets = make_networks(cfg.network, env.action_size)
    policy = load_policy(Path(policy_dir), abstract_policy(nets, env))
    rec = rollout_clips(env, nets, policy, cfg.ppo.normalize_observations)
    truth = load_truth(Path(truth_dir), clips.clip_names, clips.n_frames, fm.keypoint_names) if truth_dir else None
    parts, kp = split_metrics(rec, clips, fm, cfg, truth, held)
    metrics = {"data": label or clips.label, "n_clips": len(clips.clip_names), "env_steps_trained": meta["env_steps"],
               "trained_on": meta["data"], "held_out_clips": [n for n, h in zip(clips.clip_names, held) if h],
               **parts}
    return Evaluated(weight, metrics, rec, kp, clips, fm, env, cfg, truth, held)


def baselines_of(ev: Evaluated) -> dict:
    """The trivial baselines on the clips of an evaluation, split as it is (evaluate.baseline_metrics)."""
    from mimic_core.track.evaluate import baseline_metrics

    return baseline_metrics(ev.env, ev.clips, ev.fm, ev.cfg, ev.truth, ev.held)


def summary_line(key: str, m: Mapping[str, Any]) -> str:
    """One line per policy: its held-out tracking (training clips where nothing is held out)."""
    part = "held_out" if "held_out" in m else "train"
    e = m[part]
    line = (f"lambda_ctrl {key} ({part.replace('_', '-')}, {e['n_clips']} clips): keypoint error "
            f"{e['keypoint_error_mm']['mean']:.3f} mm, joint error {e['joint_error_deg']:.2f} deg")
    if "truth" in e:
        line += f" ({e['truth']['joint_error_deg']:.2f} deg from the truth)"
    return line + f", action HF power {e['action_hf_power']:.3f}"


def policy_folder(policies_dir: Path, weight: float) -> Path:
    """`<policies_dir>/<weight>`, the weight as params write it (0.15); a folder named another way for the same
    number (0.150, 1.5e-1) is taken when it is the only one, since `train --out` is the user's path."""
    exact = policies_dir / weight_key(weight)
    if exact.is_dir() or not policies_dir.is_dir():
        return exact
    same = sorted(d for d in policies_dir.iterdir() if d.is_dir() and _same_number(weight, d.name))
    if len(same) > 1:
        raise DataError(policies_dir, None, f"several policy folders for weight {weight_key(weight)}: "
                        f"{[d.name for d in same]}; keep one")
    return same[0] if same else exact


def run_evaluate(params: Mapping[str, Any] | Params, policies_dir: Path, out_dir: Path, metrics_path: Path,
                 registered: str | None = None, echo: Callable[[str], None] = print) -> dict:
    """The stage: every weight of the sweep, rollouts into `out_dir`, metrics keyed by weight, and the
    baselines under "baselines"."""
    from mimic_core.track.evaluate import write_rollout

    p = as_params(params)
    ws = p.track.ctrl_cost_weights
    truth = p.data.truth_dir or None
    report: dict[str, Any] = {}
    ev = None
    with atomic_dir(out_dir) as tmp:
        for w in ws:
            key = weight_key(w)
            policy = policy_folder(Path(policies_dir), w)
            ev = evaluate_policy(p, policy, registered, truth_dir=truth)
            expected = held_out_split(ev.clips.clip_names, ev.cfg.held_out_fraction, ev.cfg.held_out_seed)
            if not np.array_equal(ev.held, expected):
                raise DataError(policy / "policy.json", "settings.clips", "the policy trained on other clips than "
                                "track.held_out_fraction leaves for training (re-run `mimic-bench train`)")
            write_rollout(tmp / f"{key}.h5", ev.rec, ev.keypoints, ev.clips, ev.fm, key, ev.metrics["data"])
            report[key] = ev.metrics
            echo(summary_line(key, ev.metrics))
        report[BASELINES] = baselines_of(ev)
    write_json(metrics_path, report)
    return report
