"""Host side of training: progress, per-iteration metrics, orbax checkpoints, the NaN guard.

`fit` runs the trainer's jitted iteration in a loop. Every `checkpoint_every` iterations it
saves the whole TrainState together with every metrics row so far and a SHA-256 of the state, as
one orbax checkpoint (written to a temporary folder and renamed), so a run resumed from its last
checkpoint continues bit for bit, and with the same rows, as if it had never stopped. A checkpoint
that cannot be read back whole (truncated, a flipped byte, bad metadata, an empty folder) is
reported in one line and the newest good one is used instead. A non-finite loss or parameter
stops the run with a clear error; the last good checkpoint stays.
"""
from __future__ import annotations

import csv
import hashlib
import json
import time
from pathlib import Path
from typing import Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

from mimic_core.errors import DataError, MimicError
from mimic_core.io import atomic_dir, atomic_path, write_json
from mimic_core.track import distributed as dist
from mimic_core.track.train import METRIC_KEYS, Trainer, TrainState, finite_metrics, place

CSV_FIELDS = ("iteration", "env_steps", "seconds", "steps_per_s", *METRIC_KEYS)


class TrainingDiverged(MimicError):
    """The loss or the parameters became non-finite."""


def _primary_only() -> dict:
    """Orbax options under jax.distributed: process 0 alone reads and writes (no barrier with the others)."""
    if not dist.is_multiprocess():
        return {}
    return {"multiprocessing_options": ocp.options.MultiprocessingOptions(primary_host=0, active_processes={0})}


def _manager(ckpt_dir: Path) -> ocp.CheckpointManager:
    only = _primary_only()
    if only:   # orbax will not create the folder for a subset of the processes
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    opts = ocp.CheckpointManagerOptions(max_to_keep=2, create=not only, enable_async_checkpointing=False, **only)
    return ocp.CheckpointManager(ckpt_dir.resolve(), options=opts)


def _nonempty(tree, leaves: list | None = None) -> tuple[dict, list, object]:
    """Orbax refuses zero-size arrays (MJX data has some): save the others, keyed by leaf index (`leaves`: the
    tree's leaves as given, e.g. gathered to the host)."""
    flat, treedef = jax.tree_util.tree_flatten(tree)
    leaves = flat if leaves is None else leaves
    return {str(i): x for i, x in enumerate(leaves) if np.prod(x.shape) > 0}, leaves, treedef


class CheckpointError(MimicError):
    """No checkpoint in the folder can be read back whole."""


def state_digest(state: TrainState, leaves: list | None = None) -> str:
    """SHA-256 over every leaf's dtype, shape and bytes: what a restored checkpoint must match."""
    h = hashlib.sha256()
    for x in (jax.tree_util.tree_leaves(jax.device_get(state)) if leaves is None else leaves):
        x = np.ascontiguousarray(x)
        h.update(f"{x.dtype.str}{x.shape}".encode())
        h.update(x.tobytes())
    return h.hexdigest()


def save_state(mngr: ocp.CheckpointManager, step: int, state: TrainState, rows: list[dict] = (),
               leaves: list | None = None) -> None:
    """One checkpoint: the state (or its `leaves` gathered to the host), the metrics rows up to `step`, and the
    state's digest."""
    log = {"rows": list(rows), "state_sha256": state_digest(state, leaves)}
    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(_nonempty(state, leaves)[0]),
                                            log=ocp.args.JsonSave(log)))
    mngr.wait_until_finished()


def restore_checkpoint(mngr: ocp.CheckpointManager, step: int, abstract: TrainState) -> tuple[TrainState, list[dict]]:
    """The state and rows of one checkpoint, checked against its digest; any fault raises."""
    target, leaves, treedef = _nonempty(abstract)
    if dist.is_multiprocess():   # process 0 alone restores: onto its host, then broadcast
        target = {k: np.zeros(v.shape, v.dtype) for k, v in target.items()}
    saved = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                                       log=ocp.args.JsonRestore()))
    arrays, log = saved["state"], saved["log"]
    full = [arrays[str(i)] if str(i) in arrays else np.zeros(x.shape, x.dtype) for i, x in enumerate(leaves)]
    state = jax.tree_util.tree_unflatten(treedef, full)
    if state_digest(state) != log["state_sha256"]:
        raise ValueError("the restored state does not match its SHA-256 (a changed byte)")
    rows = [dict(r) for r in log["rows"]]
    if [r["iteration"] for r in rows] != list(range(1, step + 1)) or int(state.iteration) != step:
        raise ValueError(f"its metrics rows or state are not those of iterations 1-{step}")
    return state, rows


def restore_state(mngr: ocp.CheckpointManager, step: int, abstract: TrainState) -> TrainState:
    return restore_checkpoint(mngr, step, abstract)[0]


def resume(mngr: ocp.CheckpointManager, ckpt_dir: Path, abstract: TrainState,
           log: Callable[[str], None] | None = None) -> tuple[TrainState, list[dict]] | None:
    """The newest checkpoint that reads back whole (state and rows), or None when there is none.

    A bad one is reported in one line through `log` and the next older one is tried; when every
    checkpoint is bad, a CheckpointError names the folder.
    """
    mngr.reload()
    steps = sorted(mngr.all_steps(), reverse=True)
    for step in steps:
        try:
            return restore_checkpoint(mngr, step, abstract)
        except Exception as e:   # orbax, tensorstore and JSON raise many types for a damaged folder
            why = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            if log:
                log(f"checkpoint {ckpt_dir / str(step)} is damaged ({type(e).__name__}: {why}); "
                    "trying the one before it")
    if steps:
        raise CheckpointError(f"{ckpt_dir}: no checkpoint can be read back whole (steps {sorted(steps)}); "
                              "delete the folder to train from the start")
    return None


def fit(trainer: Trainer, key: jax.Array, ckpt_dir: Path, progress: Callable[[dict], None] | None = None,
        stop_after: int | None = None, state: TrainState | None = None,
        log: Callable[[str], None] | None = None) -> tuple[TrainState, list[dict]]:
    """Train to the end (or `stop_after` iterations), resuming from `ckpt_dir` when it holds a checkpoint.

    Returns the final state and one metrics row per iteration (resumed rows included). `state`
    starts from a given state instead (its earlier rows are not known); `log` reports a damaged
    checkpoint that was skipped.
    """
    ckpt_dir = Path(ckpt_dir)
    multi, primary = dist.is_multiprocess(), dist.is_primary()
    mngr = _manager(ckpt_dir) if primary else None   # under jax.distributed, process 0 reads and writes
    abstract = jax.eval_shape(trainer.init, key)
    rows: list[dict] = []
    if state is None:
        found = resume(mngr, ckpt_dir, abstract, log) if primary else None
        if multi:
            found = _share_resumed(found, abstract)
        if found is not None:
            state, rows = place(found[0], trainer.mesh), found[1]
        else:
            state = trainer.jit_init(key)
    start = int(state.iteration)
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
        if progress and primary:
            progress(row)
        if (it + 1) % every == 0 or it + 1 == end:
            leaves = dist.host_leaves(state) if multi else None   # a collective: every process gathers
            if primary:
                save_state(mngr, it + 1, state, rows, leaves)
    if primary:
        mngr.close()
    return state, rows


def _share_resumed(found: tuple[TrainState, list[dict]] | None, abstract: TrainState):
    """Process 0's resumed state on every process (the others start from it too); rows stay with process 0,
    which alone writes them."""
    step = int(dist.broadcast_from_primary(np.int32(-1 if found is None else int(found[0].iteration))))
    if step < 0:
        return None
    leaves = dist.host_leaves(found[0]) if found is not None else \
        [np.zeros(x.shape, x.dtype) for x in jax.tree_util.tree_leaves(abstract)]
    leaves = dist.broadcast_from_primary(leaves)
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(abstract), leaves), \
        (found[1] if found is not None else [])


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
    if dist.is_multiprocess():
        # orbax refuses device arrays of one process in a multi-process run, and brax's UInt64 count turns numpy
        # back into them: save plain nested dicts of numpy (the same layout on disk, read back by load_policy)
        from flax import serialization

        payload = jax.tree_util.tree_map(np.asarray, serialization.to_state_dict(payload))
    with atomic_dir(out_dir) as tmp:
        with ocp.StandardCheckpointer(**_primary_only()) as ckptr:
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
