"""Keypoints checked against the model's geometry before any fit: units, identities, scale.

A clip stored in metres but declared as millimetres (or the reverse) registers with frozen joints
or huge errors, and two swapped keypoints register too; both would be reported as results. Here
each clip's keypoint distances are compared with the distances the model allows over its joint
ranges (keypoints at their bodies' origins), and a keypoint on a body that no joint moves must
move less than the keypoints that joints move. A swap of the Elbow and Wrist keypoints is not
caught: in this model the humerus and the forearm are of one length (6.8 and 6.9 mm). A clip that fails is a DataError naming its file, the keypoints, the measured and the
expected values, and the likely units.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from mimic_core.config import Plausibility
from mimic_core.errors import DataError
from mimic_core.model import ForelimbModel, keypoint_positions

UNITS_TO_M = {"m": 1.0, "cm": 1e-2, "mm": 1e-3}
N_POSES = 256   # random poses over the joint ranges (seeded): enough to bound each pair's distance


@dataclass(frozen=True)
class Geometry:
    """What the model allows: per keypoint pair the distance range (m), and which keypoints never move."""

    names: tuple[str, ...]
    dist_min: np.ndarray      # (K, K) m
    dist_max: np.ndarray      # (K, K) m
    anchored: np.ndarray      # (K,) bool: on a body that no joint moves
    scale_m: float            # the shortest median pair distance: the model's own length scale


def model_geometry(fm: ForelimbModel, seed: int = 0) -> Geometry:
    """Distances between the keypoint bodies' origins over random poses within the joint ranges."""
    rng = np.random.default_rng(seed)
    r = np.array(fm.joint_range, float)
    unlimited = ~fm.model.jnt_limited.astype(bool) | (r[:, 1] <= r[:, 0])
    r[unlimited] = (-math.pi, math.pi)
    q = np.vstack([np.zeros(len(r)), rng.uniform(r[:, 0], r[:, 1], size=(N_POSES, len(r)))])
    x = keypoint_positions(fm, q, np.zeros((len(fm.keypoint_names), 3)))          # (N, K, 3)
    d = np.linalg.norm(x[:, :, None] - x[:, None], axis=-1)                       # (N, K, K)
    motion = np.linalg.norm(x - x[0], axis=-1).max(0)
    k = len(fm.keypoint_names)
    off = ~np.eye(k, dtype=bool)
    med = np.median(d, 0)
    scale = float(med[off].min()) if k > 1 else float("nan")
    return Geometry(tuple(fm.keypoint_names), d.min(0), d.max(0), motion < 1e-9, scale)


def _units_hint(ratio: float, units: str | None) -> str:
    """The units that would bring a distance ratio near 1, if a unit error explains it."""
    if units not in UNITS_TO_M or not np.isfinite(ratio) or ratio <= 0:
        return ""
    actual = UNITS_TO_M[units] / ratio            # the unit factor the file would need
    guess = min(UNITS_TO_M, key=lambda u: abs(math.log10(UNITS_TO_M[u] / actual)))
    if guess != units and abs(math.log10(UNITS_TO_M[guess] / actual)) < 0.5:
        return f"; the file looks like {guess}, not {units} (units: {guess} / --units {guess})"
    return ""


def _rms_motion(p: np.ndarray) -> float:
    """RMS distance (m) of a keypoint's frames from its median position; NaN with fewer than 2 frames."""
    p = p[np.isfinite(p).all(-1)]
    if len(p) < 2:
        return float("nan")
    return float(np.sqrt(np.mean(np.sum((p - np.median(p, 0)) ** 2, -1))))


def check_keypoints(geom: Geometry, keypoints: np.ndarray, clip_names: Sequence[str], sources: Sequence[Any],
                    cfg: Plausibility, units: str | None = None, log: Callable[[str], None] | None = None,
                    override: str | None = None) -> dict:
    """Check clips (C, T, K, 3) in metres, NaN = missing; returns what was measured (for the metrics).

    `sources` names each clip's file; `units` are the units the file was declared in (for the hint).
    With cfg.check false (or an `override` saying why), nothing is checked and that is recorded.
    """
    if not cfg.check or override:
        why = override or "data.keypoints.plausibility.check: false"
        if log:
            log(f"keypoint plausibility not checked ({why})")
        return {"checked": False, "why": why}
    lo, hi = cfg.distance_ratio
    k = len(geom.names)
    # Keypoints on one point of the model (two on one body, both at its origin) give no length to compare.
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k) if geom.dist_max[i, j] > 1e-9]
    ratios: dict[str, list[float]] = {f"{geom.names[i]}-{geom.names[j]}": [] for i, j in pairs}
    anchored: dict[str, list[float]] = {geom.names[i]: [] for i in range(k) if geom.anchored[i]}
    for c, name in enumerate(clip_names):
        x = np.asarray(keypoints[c], float)
        src = sources[c]
        for i, j in pairs:
            d = np.linalg.norm(x[:, i] - x[:, j], axis=-1)
            d = d[np.isfinite(d)]
            if d.size == 0:
                continue
            m = float(np.median(d))
            low, high = lo * geom.dist_min[i, j], hi * geom.dist_max[i, j]
            pair = f"{geom.names[i]}-{geom.names[j]}"
            mid = 0.5 * (geom.dist_min[i, j] + geom.dist_max[i, j])
            ratios[pair].append(m / mid)
            if not low <= m <= high:
                raise DataError(src, f"keypoints {geom.names[i]}, {geom.names[j]}",
                                f"clip {name!r}: median distance {m * 1e3:.3g} mm, but the model allows "
                                f"{geom.dist_min[i, j] * 1e3:.3g}-{geom.dist_max[i, j] * 1e3:.3g} mm "
                                f"(checked against {low * 1e3:.3g}-{high * 1e3:.3g} mm, "
                                f"data.keypoints.plausibility.distance_ratio {[lo, hi]})"
                                f"{_units_hint(m / mid, units)}")
        motion = [_rms_motion(x[:, i]) for i in range(k)]
        moving = [motion[j] for j in range(k) if not geom.anchored[j] and np.isfinite(motion[j])]
        floor = cfg.anchored_floor_ratio * geom.scale_m
        for i in np.flatnonzero(geom.anchored):
            if not np.isfinite(motion[i]):
                continue
            anchored[geom.names[i]].append(motion[i] * 1e3)
            least = min(moving, default=float("inf"))
            if motion[i] > floor and motion[i] > cfg.anchored_motion_ratio * least:
                others = [geom.names[j] for j in range(k) if not geom.anchored[j]]
                raise DataError(src, f"keypoint {geom.names[i]}",
                                f"clip {name!r}: moves {motion[i] * 1e3:.3g} mm RMS, more than "
                                f"{cfg.anchored_motion_ratio:g} x the least-moving of {', '.join(others)} "
                                f"({least * 1e3:.3g} mm), yet it sits on a body that no joint moves "
                                "(data.keypoints.plausibility.anchored_motion_ratio); is it swapped with "
                                f"{' or '.join(others)}, or are the keypoints not in the shoulder's frame?")
    return {"checked": True,
            "distance_ratio_median": {p: float(np.median(v)) for p, v in ratios.items() if v},
            "anchored_motion_mm_max": {n: float(np.max(v)) for n, v in anchored.items() if v}}


def check_clips_plausible(fm: ForelimbModel, keypoints: np.ndarray, clip_names: Sequence[str],
                          sources: Sequence[Any], cfg: Plausibility, units: str | None = None,
                          log: Callable[[str], None] | None = None, override: str | None = None) -> dict:
    """`check_keypoints` against this model's geometry."""
    geom = model_geometry(fm) if (cfg.check and not override) else None
    return check_keypoints(geom, keypoints, clip_names, sources, cfg, units, log, override)
