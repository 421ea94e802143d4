"""Host side of training: progress, per-iteration metrics, orbax checkpoints, the NaN guard.

`fit` runs the trainer's jitted iteration in a loop. Every `checkpoint_every` iterations it
saves the whole TrainState (orbax writes to a temporary folder and renames it), so a run
resumed from its last checkpoint continues bit for bit as if it had never stopped. A
non-finite loss or parameter stops the run with a clear error; the last good checkpoint stays.
"""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

from mimic_core.errors import DataError, MimicError
from mimic_core.io import atomic_dir, atomic_path, write_json
from mimic_core.track.train import METRIC_KEYS, Trainer, TrainState, finite_metrics, place

CSV_FIELDS = ("iteration", "env_steps", "seconds", "steps_per_s", *METRIC_KEYS)


class TrainingDiverged(MimicError):
    """The loss or the parameters became non-finite."""


def _manager(ckpt_dir: Path) -> ocp.CheckpointManager:
    opts = ocp.CheckpointManagerOptions(max_to_keep=2, create=True, enable_async_checkpointing=False)
    return ocp.CheckpointManager(ckpt_dir.resolve(), options=opts)


def _nonempty(tree) -> tuple[dict, list, object]:
    """Orbax refuses zero-size arrays (MJX data has some): save the others, keyed by leaf index."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return {str(i): x for i, x in enumerate(leaves) if np.prod(x.shape) > 0}, leaves, treedef


def save_state(mngr: ocp.CheckpointManager, step: int, state: TrainState) -> None:
    mngr.save(step, args=ocp.args.StandardSave(_nonempty(state)[0]))
    mngr.wait_until_finished()


def restore_state(mngr: ocp.CheckpointManager, step: int, abstract: TrainState) -> TrainState:
    target, leaves, treedef = _nonempty(abstract)
    saved = mngr.restore(step, args=ocp.args.StandardRestore(target))
    full = [saved[str(i)] if str(i) in saved else np.zeros(x.shape, x.dtype) for i, x in enumerate(leaves)]
    return jax.tree_util.tree_unflatten(treedef, full)


def _read_rows(path: Path, upto: int) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as f:
        rows = [{k: (int(v) if k in ("iteration", "env_steps") else float(v)) for k, v in r.items()}
                for r in csv.DictReader(f)]
    return [r for r in rows if r["iteration"] <= upto]


def fit(trainer: Trainer, key: jax.Array, ckpt_dir: Path, progress: Callable[[dict], None] | None = None,
        stop_after: int | None = None, state: TrainState | None = None) -> tuple[TrainState, list[dict]]:
    """Train to the end (or `stop_after` iterations), resuming from `ckpt_dir` when it holds a checkpoint.

    Returns the final state and one metrics row per iteration (resumed rows included).
    """
    ckpt_dir = Path(ckpt_dir)
    mngr = _manager(ckpt_dir)
    rows_path = ckpt_dir / "metrics.csv"
    abstract = jax.eval_shape(trainer.init, key)
    if state is None:
        latest = mngr.latest_step()
        if latest is not None:
            state = place(restore_state(mngr, latest, abstract), trainer.mesh)
        else:
            state = trainer.jit_init(key)
    start = int(state.iteration)
    rows = _read_rows(rows_path, start)
    step = trainer.jit_iteration
    end = trainer.n_iterations if stop_after is None else min(trainer.n_iterations, stop_after)
    t0, steps0 = time.perf_counter(), int(state.env_steps)
    every = trainer.config.ppo.checkpoint_every
    for it in range(start, end):
        state, m = step(state)
        m = jax.device_get(m)
        if not finite_metrics(m):
            bad = [k for k in ("loss", "reward") if not np.isfinite(m[k])] + ([] if m["params_finite"] else ["params"])
            raise TrainingDiverged(f"training diverged at iteration {it + 1}: non-finite {', '.join(bad)}; "
                                   f"the last good checkpoint (iteration {mngr.latest_step()}) is kept in {ckpt_dir}")
        elapsed = time.perf_counter() - t0
        row = {"iteration": int(m["iteration"]), "env_steps": int(m["env_steps"]), "seconds": elapsed,
               "steps_per_s": (int(m["env_steps"]) - steps0) / max(elapsed, 1e-9),
               **{k: float(m[k]) for k in METRIC_KEYS}}
        rows.append(row)
        if progress:
            progress(row)
        if (it + 1) % every == 0 or it + 1 == end:
            save_state(mngr, it + 1, state)
            with atomic_path(rows_path) as tmp:
                _write_rows(tmp, rows)
    mngr.close()
    return state, rows


def _write_rows(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})


def write_rows(path: Path, rows: list[dict]) -> None:
    """The per-iteration metrics as CSV (dvc plots), written atomically."""
    with atomic_path(path) as tmp:
        _write_rows(tmp, rows)


def save_policy(out_dir: Path, state: TrainState, meta: dict) -> None:
    """The trained policy (parameters and observation statistics) plus a JSON of how it was made.

    Written into a temporary folder and renamed, so `out_dir` is either the old policy or the new one.
    """
    payload = jax.device_get({"params": state.params, "obs_norm": state.obs_norm})
    with atomic_dir(out_dir) as tmp:
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save((tmp / "params").resolve(), payload)
        write_json(tmp / "policy.json", meta)


def policy_meta(policy_dir: Path) -> dict:
    """How a saved policy was made (its policy.json); a folder without one is not a policy."""
    meta_path = Path(policy_dir) / "policy.json"
    if not meta_path.is_file():
        raise DataError(policy_dir, "policy.json", "not a trained policy (run `mimic-bench train` first)")
    return json.loads(meta_path.read_text())


def load_policy(policy_dir: Path, abstract: dict) -> dict:
    """Parameters and observation statistics of a saved policy; `abstract` gives the structure."""
    policy_dir = Path(policy_dir)
    with ocp.StandardCheckpointer() as ckptr:
        try:
            payload = ckptr.restore((policy_dir / "params").resolve(), abstract)
        except Exception as e:  # orbax raises several types for a structure that does not fit
            raise DataError(policy_dir, "params", f"cannot restore the policy (made with other settings?): {e}") from e
    return payload
