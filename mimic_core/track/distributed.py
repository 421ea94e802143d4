"""Training over several processes (hosts) with `jax.distributed`.

Every process runs the same program over one global mesh of all processes' devices, so the envs
split by process (each holds its devices' share) and XLA inserts the gradient reductions across
hosts. Process 0 alone reads and writes checkpoints, metrics and the policy: a checkpoint is
gathered to every host (a collective) and saved by process 0; on resume, process 0 reads it and
broadcasts it to the others.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np

from mimic_core.errors import MimicError


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               auto: bool = False) -> bool:
    """Join a multi-process run: explicit (all three of coordinator "host:port", num_processes, process_id), or
    `auto` (JAX's detection of SLURM, Open MPI and other cluster environments). Neither: one process, nothing
    to do. Returns whether jax.distributed was initialised. Call it before anything touches a JAX device."""
    given = [coordinator is not None, num_processes is not None, process_id is not None]
    if any(given) and not all(given):
        raise MimicError("multi-process training needs --coordinator, --num-processes and --process-id together "
                         "(or --distributed to detect them from SLURM / Open MPI)")
    if not (auto or all(given)):
        return False
    if all(given) and not 0 <= process_id < num_processes:
        raise MimicError(f"--process-id {process_id} is not in 0..{num_processes - 1}")
    # cross-process collectives on CPU hosts (GPU hosts use NCCL whatever this says)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        if all(given):
            jax.distributed.initialize(coordinator, num_processes, process_id)
        else:
            jax.distributed.initialize()
    except (RuntimeError, ValueError) as e:
        raise MimicError(f"jax.distributed.initialize failed: {e}") from e
    return True


def is_multiprocess() -> bool:
    return jax.process_count() > 1


def is_primary() -> bool:
    """Whether this process writes (process 0)."""
    return jax.process_index() == 0


def host_leaves(tree: Any) -> list[np.ndarray]:
    """The leaves of `tree`, each one whole numpy array on this host (a list: some pytree nodes turn numpy
    leaves back into device arrays when rebuilt); across processes a collective (every process must call it)."""
    from jax.experimental import multihost_utils

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return [one(x) for x in jax.tree_util.tree_leaves(tree)]


def broadcast_from_primary(leaves: Any) -> Any:
    """Process 0's value of `leaves` (numpy arrays, or a list of them) on every process, as numpy; the identity
    in a single process."""
    if not is_multiprocess():
        return leaves
    from jax.experimental import multihost_utils

    return jax.tree_util.tree_map(np.asarray, multihost_utils.broadcast_one_to_all(leaves))


def barrier(name: str) -> None:
    """Wait here until every process gets here (so none exits while process 0 is still writing)."""
    if is_multiprocess():
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def processes_summary() -> dict:
    """How the run is spread, for the policy's settings (only where there are several processes)."""
    return {"n_processes": jax.process_count(), "local_devices": jax.local_device_count()}
