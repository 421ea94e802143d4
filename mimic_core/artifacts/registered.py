"""Registered clips in the stac-mjx schema (`data/registered/<clip>.h5`): written by `register`, read by `train`.

The real clips (stac-mjx's own output) use the same schema, without the attributes. Layout:
`qpos`, `qvel` (frames, nq); `offsets` (K, 3); `kp_data` (frames, K*3), NaN where missing;
`kp_names` (bytes); `marker_sites` (frames, K, 3); `xpos` (frames, nbody, 3); `xquat` (frames,
nbody, 4); `names_qpos`, `names_xpos` (bytes); `config` (YAML bytes); all float32. Ours add
attrs `data` (label), `fps`, `nan_allowed`, `missing`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from mimic_core.artifacts._checks import check_rate, check_shape, finite_array, names, read_h5, text
from mimic_core.errors import DataError
from mimic_core.io import write_h5

REQUIRED = ("qpos", "qvel", "offsets", "marker_sites", "names_qpos")
OPTIONAL = ("kp_data", "kp_names", "xpos", "xquat", "names_xpos", "config")


@dataclass(frozen=True, eq=False)
class RegisteredClip:
    """One registered clip; the fields stac-mjx may leave out are None."""

    qpos: np.ndarray            # (T, nq) rad
    qvel: np.ndarray            # (T, nq) rad/s
    offsets: np.ndarray         # (K, 3) m, in each keypoint's body frame
    marker_sites: np.ndarray    # (T, K, 3) m, the model's keypoint sites
    names_qpos: list[str]
    kp_data: np.ndarray | None = None     # (T, K*3) m input keypoints, NaN = missing
    kp_names: list[str] | None = None
    xpos: np.ndarray | None = None        # (T, nbody, 3)
    xquat: np.ndarray | None = None       # (T, nbody, 4)
    names_xpos: list[str] | None = None
    config: str | None = None             # YAML: the settings it was made with
    fps: float | None = None              # attrs; stac-mjx stores none
    label: str | None = None              # attrs['data']


def write_registered(path: str | os.PathLike, clip: RegisteredClip) -> None:
    """Write one clip in the full schema, float32 like stac-mjx, atomically and deterministically."""
    missing = [k for k in (*REQUIRED, *OPTIONAL) if getattr(clip, k) is None]
    if missing or clip.fps is None or clip.label is None:
        raise DataError(path, ", ".join(missing) or "attrs", "a registered clip is written with every field")
    f32 = np.float32
    write_h5(path, {
        "qpos": clip.qpos.astype(f32),
        "qvel": clip.qvel.astype(f32),
        "offsets": clip.offsets.astype(f32),
        "kp_data": clip.kp_data.astype(f32),
        "kp_names": np.array(clip.kp_names, dtype="S"),
        "marker_sites": clip.marker_sites.astype(f32),
        "xpos": clip.xpos.astype(f32),
        "xquat": clip.xquat.astype(f32),
        "names_qpos": np.array(clip.names_qpos, dtype="S"),
        "names_xpos": np.array(clip.names_xpos, dtype="S"),
        "config": np.array(clip.config.encode()),
    }, {"data": clip.label, "fps": clip.fps, "nan_allowed": ["kp_data"],
        "missing": "kp_data is NaN where the keypoint was not measured"})


def read_registered(path: str | os.PathLike) -> RegisteredClip:
    """Read and check one clip (float64): shapes agree, no NaN outside kp_data."""
    p, d, a = read_h5(path, "registered clip not found (run the `register` stage)", REQUIRED, OPTIONAL,
                      optional_attrs=("fps", "data"))
    q = finite_array(p, "qpos", d["qpos"], ndim=2)
    T, nq = q.shape
    joints = names(d["names_qpos"], p, "names_qpos")
    if len(joints) != nq:
        raise DataError(p, "names_qpos", f"{len(joints)} names for {nq} joint angles in qpos")
    v = finite_array(p, "qvel", d["qvel"])
    if v.shape != q.shape:
        raise DataError(p, "qvel", f"expected shape {q.shape}, got {v.shape}")
    o = finite_array(p, "offsets", d["offsets"], ndim=2)
    K = o.shape[0]
    check_shape(p, "offsets", o, (K, 3))
    s = finite_array(p, "marker_sites", d["marker_sites"])
    if s.ndim != 3 or s.shape[0] != T or s.shape[1:] != (K, 3):
        raise DataError(p, "marker_sites", f"expected shape ({T}, {K}, 3), got {s.shape}")
    opt: dict = {}
    if d["kp_data"] is not None:
        opt["kp_data"] = finite_array(p, "kp_data", d["kp_data"], nan_ok=True)
        check_shape(p, "kp_data", opt["kp_data"], (T, 3 * K))
    for k in ("xpos", "xquat"):
        if d[k] is not None:
            opt[k] = finite_array(p, k, d[k])
            check_shape(p, k, opt[k], (T, None, 3 if k == "xpos" else 4))
    for k in ("kp_names", "names_xpos"):
        if d[k] is not None:
            opt[k] = names(d[k], p, k)
    if d["config"] is not None:
        opt["config"] = text(p, "config", d["config"])
    if a["fps"] is not None:
        opt["fps"] = check_rate(p, "fps", a["fps"])
    if a["data"] is not None:
        opt["label"] = text(p, "data", a["data"])
    return RegisteredClip(q, v, o, s, joints, **opt)
