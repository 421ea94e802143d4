"""The rollout files of the control-cost sweep, by weight (schema: `mimic_core.artifacts.rollout`).

Every missing file, dataset or mismatched shape is a DataError naming the file and the field.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from mimic_core import artifacts
from mimic_core.artifacts import Rollout
from mimic_core.errors import DataError

__all__ = ["Rollout", "check_frames", "read_rollout", "sweep_keys"]


def sweep_keys(params: Mapping[str, Any], weights: Sequence[str] | None = None) -> list[str]:
    """The weights' keys (`str` of the YAML values, as the evaluate stage names its files), or `weights`."""
    if weights:
        return [str(w) for w in weights]
    from mimic_core.config import as_params, weight_key

    return [weight_key(w) for w in as_params(params).track.ctrl_cost_weights]


def read_rollout(rollouts_dir: str | Path, weight: str, datasets: Sequence[str]) -> Rollout:
    """Read `rollouts_dir/<weight>.h5` (see `mimic_core.artifacts.read_rollout`): names, attrs, `datasets`."""
    path = Path(rollouts_dir) / f"{weight}.h5"
    if not path.is_file():
        raise DataError(path, None, f"no rollout file for control-cost weight {weight} (run the `evaluate` "
                        f"stage, or check track.ctrl_cost_weights)")
    return artifacts.read_rollout(path, datasets)


def check_frames(ro: Rollout, frames: str, steps: Sequence[str] = ()) -> int:
    """T from the per-frame dataset `frames` (C, T, ...); each of `steps` must cover the T-1 control steps."""
    T = ro[frames].shape[1]
    for name in steps:
        if ro[name].shape[1] != T - 1:
            raise DataError(ro.path, name, f"has {ro[name].shape[1]} steps; {frames} has {T} frames, "
                            f"so T-1 = {T - 1} control steps were expected")
    return T
