"""Reading the rollout files of the control-cost sweep (schema: `mimic_core.track.evaluate.write_rollout`).

Every missing file, dataset or mismatched shape is a DataError naming the file and the field.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from mimic_core.errors import DataError


@dataclass(frozen=True)
class Rollout:
    path: Path
    weight: str                       # the control-cost weight, as written in params
    label: str                        # attrs['data']: "synthetic" | "real"
    fps: float
    clip_names: list[str]
    joint_names: list[str]
    muscle_names: list[str]
    arrays: dict[str, np.ndarray]     # the requested datasets, float64, first axis = clips

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def muscle(self, name: str) -> int:
        if name not in self.muscle_names:
            raise DataError(self.path, "muscle_names", f"no muscle {name!r}; the file has {self.muscle_names}")
        return self.muscle_names.index(name)


def sweep_keys(params: Mapping[str, Any], weights: Sequence[str] | None = None) -> list[str]:
    """The weights' keys (`str` of the YAML values, as the evaluate stage names its files), or `weights`."""
    if weights:
        return [str(w) for w in weights]
    from mimic_core.config import as_params, weight_key

    return [weight_key(w) for w in as_params(params).track.ctrl_cost_weights]


def _names(f, path: Path, field: str) -> list[str]:
    if field not in f:
        raise DataError(path, field, f"dataset missing from the rollout file (it has: {', '.join(sorted(f))})")
    return [s.decode() if isinstance(s, bytes) else str(s) for s in f[field][()]]


def read_rollout(rollouts_dir: str | Path, weight: str, datasets: Sequence[str]) -> Rollout:
    """Read `rollouts_dir/<weight>.h5`: the name lists, attrs and the requested `datasets` (float64)."""
    import h5py

    path = Path(rollouts_dir) / f"{weight}.h5"
    if not path.is_file():
        raise DataError(path, None, f"no rollout file for control-cost weight {weight} (run the `evaluate` "
                        f"stage, or check track.ctrl_cost_weights)")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DataError(path, None, f"cannot read the rollout file: {e}") from e
    with f:
        clips, joints, muscles = (_names(f, path, k) for k in ("clip_names", "joint_names", "muscle_names"))
        arrays = {}
        for name in datasets:
            if name not in f:
                raise DataError(path, name, f"dataset missing from the rollout file (it has: {', '.join(sorted(f))})")
            a = np.asarray(f[name][()], dtype=np.float64)
            if a.ndim < 2 or a.shape[0] != len(clips):
                raise DataError(path, name, f"shape {a.shape} does not start with the {len(clips)} clips of clip_names")
            if not np.isfinite(a).all():
                raise DataError(path, name, "holds NaN or infinite values")
            arrays[name] = a
        for field in ("fps", "data"):
            if field not in f.attrs:
                raise DataError(path, f"attrs/{field}", "attribute missing from the rollout file")
        label = f.attrs["data"]
        fps = float(f.attrs["fps"])
    return Rollout(path, str(weight), label.decode() if isinstance(label, bytes) else str(label), fps,
                   clips, joints, muscles, arrays)


def check_frames(ro: Rollout, frames: str, steps: Sequence[str] = ()) -> int:
    """T from the per-frame dataset `frames` (C, T, ...); each of `steps` must cover the T-1 control steps."""
    T = ro[frames].shape[1]
    for name in steps:
        if ro[name].shape[1] != T - 1:
            raise DataError(ro.path, name, f"has {ro[name].shape[1]} steps; {frames} has {T} frames, "
                            f"so T-1 = {T - 1} control steps were expected")
    return T
