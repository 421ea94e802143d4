"""Prepared keypoints (`data/prepared/keypoints.h5`): written by `prepare`, read by `register` and `bench-stac`.

Layout: `keypoints` (clips, frames, K, 3) float32 metres, NaN where missing; `valid` (clips,
frames, K) bool; `clip_names`, `kp_names` (bytes); attrs `data` (label), `fps`, `units` = "m",
`nan_allowed`, `missing`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from mimic_core.artifacts._checks import check_clip_names, check_names, check_rate, finite_array, names, read_h5, text
from mimic_core.errors import DataError
from mimic_core.io import write_h5


@dataclass(frozen=True, eq=False)
class PreparedKeypoints:
    """Every clip's keypoints in the model's keypoint order, cut to the clip window."""

    clip_names: list[str]
    kp_names: tuple[str, ...]
    keypoints: np.ndarray   # (clips, frames, K, 3) m, NaN where missing
    valid: np.ndarray       # (clips, frames, K) bool
    fps: float
    label: str = "unknown"  # attrs['data']: "synthetic" | "real"


def write_prepared_keypoints(path: str | os.PathLike, kp: PreparedKeypoints) -> None:
    """Write the prepared keypoints (float32), atomically and deterministically."""
    check_clip_names(path, "clip_names", kp.clip_names)
    write_h5(path, {
        "keypoints": kp.keypoints.astype(np.float32),
        "valid": kp.valid,
        "clip_names": np.array(kp.clip_names, dtype="S"),
        "kp_names": np.array(kp.kp_names, dtype="S"),
    }, {"data": kp.label, "fps": kp.fps, "units": "m", "nan_allowed": ["keypoints"],
        "missing": "keypoints are NaN where valid is False"})


def read_prepared_keypoints(path: str | os.PathLike) -> PreparedKeypoints:
    """Read and check the prepared keypoints (float64); a point is valid where `valid` says so and it is finite."""
    p, d, a = read_h5(path, "prepared keypoints not found (run `mimic-bench prepare` or `dvc repro`)",
                      ("keypoints", "valid", "clip_names", "kp_names"), attrs=("fps", "data"),
                      optional_attrs=("units",))
    kp = finite_array(p, "keypoints", d["keypoints"], ndim=4, nan_ok=True)
    if kp.shape[-1] != 3:
        raise DataError(p, "keypoints", f"shape {kp.shape}, expected (clips, frames, keypoints, 3)")
    if d["valid"].dtype != bool or d["valid"].shape != kp.shape[:3]:
        raise DataError(p, "valid", f"expected a bool array of shape {kp.shape[:3]}, got {d['valid'].dtype} "
                        f"{d['valid'].shape}")
    if a["units"] is not None and text(p, "units", a["units"]) != "m":
        raise DataError(p, "units", f"prepared keypoints are in metres, the file says {a['units']!r}")
    clips = check_clip_names(p, "clip_names", check_names(p, "clip_names", names(d["clip_names"], p, "clip_names"),
                                                          kp.shape[0]))
    kp_names = check_names(p, "kp_names", names(d["kp_names"], p, "kp_names"), kp.shape[2])
    valid = d["valid"] & np.isfinite(kp).all(-1)
    return PreparedKeypoints(clips, kp_names, np.where(valid[..., None], kp, np.nan), valid,
                             check_rate(p, "fps", a["fps"]), text(p, "data", a["data"]))
