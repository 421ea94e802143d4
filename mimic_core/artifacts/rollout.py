"""Rollouts of one policy over every clip (`data/rollouts/<weight>.h5`): written by `evaluate`,
read by `latents`, `edm` and the report.

Layout: `clip_names`, `joint_names`, `muscle_names`, `kp_names` (bytes); then float32 arrays,
first axis = clips: `qpos`, `qpos_reference`, `keypoints`, `keypoints_reference`, `activations`
(T frames), `actions`, `forces`, `latent`, `decoder_layer_<i>` (the T-1 control steps); attrs
`data` (label), `fps`, `ctrl_cost_weight`, `layout`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mimic_core.artifacts._checks import check_rate, existing_file, names, open_h5, read_attr, read_dataset, text
from mimic_core.errors import DataError
from mimic_core.io import write_h5

NAME_LISTS = ("clip_names", "joint_names", "muscle_names", "kp_names")
LAYOUT = ("qpos/activations/keypoints: frames 0..T-1; actions, forces, latent, "
          "decoder layers: the T-1 control steps")


@dataclass(frozen=True, eq=False)
class Rollout:
    """A policy's rollouts: the name lists, attrs and arrays (read as float64, first axis = clips)."""

    clip_names: list[str]
    joint_names: list[str]
    muscle_names: list[str]
    kp_names: list[str] | None
    arrays: Mapping[str, np.ndarray] = field(default_factory=dict)
    fps: float = 0.0
    label: str = "unknown"            # attrs['data']: "synthetic" | "real"
    weight: str = ""                  # the control-cost weight, as written in params
    path: Path | None = None          # the file it was read from (for errors naming it)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def muscle(self, name: str) -> int:
        """The index of muscle `name`; an unknown muscle is a DataError naming the file."""
        if name not in self.muscle_names:
            raise DataError(self.path, "muscle_names", f"no muscle {name!r}; the file has {self.muscle_names}")
        return self.muscle_names.index(name)


def write_rollout(path: str | os.PathLike, ro: Rollout) -> None:
    """Write the name lists then every array (float32, in `ro.arrays` order), atomically and deterministically."""
    lists = {"clip_names": ro.clip_names, "joint_names": ro.joint_names, "muscle_names": ro.muscle_names,
             "kp_names": ro.kp_names}
    data = {k: np.array(v, dtype="S") for k, v in lists.items() if v is not None}
    data.update({k: np.asarray(v).astype(np.float32) for k, v in ro.arrays.items()})
    write_h5(path, data, {"data": ro.label, "fps": ro.fps, "ctrl_cost_weight": ro.weight, "layout": LAYOUT})


def read_rollout(path: str | os.PathLike, datasets: Sequence[str] | None = None) -> Rollout:
    """Read the name lists, attrs and `datasets` (all arrays if None), checked: finite, one row per clip."""
    p = existing_file(path, "rollout file not found (run the `evaluate` stage)")
    with open_h5(p) as f:
        lists = {k: read_dataset(f, p, k, required=k != "kp_names") for k in NAME_LISTS}
        wanted = [k for k in f if k not in NAME_LISTS] if datasets is None else list(datasets)
        raw = {k: read_dataset(f, p, k) for k in wanted}
        att = {k: read_attr(f, p, k) for k in ("fps", "data")}
        weight = read_attr(f, p, "ctrl_cost_weight", required=False)
    lists = {k: None if v is None else names(v, p, k) for k, v in lists.items()}
    C = len(lists["clip_names"])
    arrays = {}
    for name, a in raw.items():
        if a.dtype.kind not in "iuf":
            raise DataError(p, name, f"expected numbers, got dtype {a.dtype}")
        a = np.asarray(a, dtype=np.float64)
        if a.ndim < 2 or a.shape[0] != C:
            raise DataError(p, name, f"shape {a.shape} does not start with the {C} clips of clip_names")
        if not np.isfinite(a).all():
            raise DataError(p, name, "holds NaN or infinite values")
        arrays[name] = a
    return Rollout(lists["clip_names"], lists["joint_names"], lists["muscle_names"], lists["kp_names"], arrays,
                   check_rate(p, "fps", att["fps"]), text(p, "data", att["data"]),
                   Path(p).stem if weight is None else text(p, "ctrl_cost_weight", weight), Path(p))
