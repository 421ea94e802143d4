"""Reference clips for imitation: registered joint angles (stac-mjx schema) loaded onto the device."""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from mimic_core.artifacts import RegisteredClip, read_registered
from mimic_core.errors import DataError, ParamsError


@dataclass(frozen=True)
class ReferenceClips:
    """Registered clips of equal length: what the policy imitates, and how its keypoints are scored."""

    clip_names: list[str]
    joint_names: list[str]
    qpos: np.ndarray      # (C, T, nq) rad
    qvel: np.ndarray      # (C, T, nq) rad/s
    offsets: np.ndarray   # (C, K, 3) m, keypoint offsets in their bodies' frames
    sites: np.ndarray     # (C, T, K, 3) m, the model's keypoint sites at the reference pose
    fps: float
    label: str            # "synthetic" | "real" | "unknown"

    @property
    def n_frames(self) -> int:
        return self.qpos.shape[1]

    def subset(self, index: Sequence[int] | np.ndarray) -> "ReferenceClips":
        """The clips at `index` (in that order)."""
        idx = np.asarray(index, int)
        return replace(self, clip_names=[self.clip_names[i] for i in idx], qpos=self.qpos[idx], qvel=self.qvel[idx],
                       offsets=self.offsets[idx], sites=self.sites[idx])


def held_out_split(clip_names: Sequence[str], fraction: float, seed: int) -> np.ndarray:
    """Which clips are held out (a bool mask): round(fraction * C) of them, the first when the names are sorted by
    sha256("<seed>:<name>"). A clip's fate depends on its name and the seed alone, not on file order."""
    names = list(clip_names)
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise DataError(None, "clip_names", f"clip names must be unique to split them; repeated: {dup}")
    n_held = math.floor(fraction * len(names) + 0.5)
    if names and n_held >= len(names):
        raise ParamsError(f"params.yaml: 'track.held_out_fraction': {fraction} holds out {n_held} of {len(names)} "
                          "clips and leaves none to train on")
    order = sorted(range(len(names)), key=lambda i: hashlib.sha256(f"{seed}:{names[i]}".encode()).hexdigest())
    mask = np.zeros(len(names), bool)
    mask[order[:n_held]] = True
    return mask


def _keypoint_order(path: Path, clip: RegisteredClip, kp_names: Sequence[str] | None, n: int) -> np.ndarray:
    """Indices that put the file's keypoints in the model's keypoint order."""
    if kp_names is None:
        return np.arange(n)
    if clip.kp_names is None:
        if n != len(kp_names):
            raise DataError(path, "offsets", f"{n} keypoints, the keypoint map has {len(kp_names)}")
        return np.arange(n)
    names = clip.kp_names
    missing = [k for k in kp_names if k not in names]
    if missing or len(names) != n:
        raise DataError(path, "kp_names", f"{names} lack the keypoint(s) {missing} of the keypoint map")
    return np.array([names.index(k) for k in kp_names])


def load_registered(paths: Sequence[str | Path], joint_names: Sequence[str], fps: float | None = None,
                    label: str | None = None, kp_names: Sequence[str] | None = None) -> ReferenceClips:
    """Read registered clips (ours or stac-mjx's), checked against the model's joints; keypoints are
    put in `kp_names` order (the model's keypoint map) by the files' own `kp_names`."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise DataError(None, None, "no registered clips found (run the `register` stage first)")
    qpos, qvel, offsets, sites, rates, labels = [], [], [], [], set(), set()
    for p in paths:
        clip = read_registered(p)
        q, names = clip.qpos, clip.names_qpos
        if q.shape[1] != len(joint_names):
            raise DataError(p, "qpos", f"expected shape (frames, {len(joint_names)}), got {q.shape}")
        # stac-mjx names the elbow `elbow_joint`; the order is what must agree.
        if len(names) != len(joint_names):
            raise DataError(p, "names_qpos", f"{names} do not match the model's joints {list(joint_names)}")
        order = _keypoint_order(p, clip, kp_names, clip.offsets.shape[0])
        v, o, s = clip.qvel, clip.offsets[order], clip.marker_sites[:, order]
        rates.add(clip.fps if clip.fps is not None else fps)
        labels.add(clip.label if clip.label is not None else (label or "unknown"))
        qpos.append(q), qvel.append(v), offsets.append(o), sites.append(s)
    lengths = {q.shape[0] for q in qpos}
    if len(lengths) != 1:
        raise DataError(paths[0].parent, "qpos", f"clips differ in length ({sorted(lengths)} frames)")
    rates.discard(None)
    if fps is not None:
        rates = {float(fps)}
    if len(rates) != 1:
        raise DataError(paths[0].parent, "fps", f"clips need one frame rate; found {sorted(rates) or 'none'} "
                        "(pass the rate for files that do not store it)")
    if label is None:
        label = labels.pop() if len(labels) == 1 else "unknown"
    stems = [p.stem for p in paths]
    dup = next((p for i, p in enumerate(paths) if p.stem in stems[:i]), None)
    if dup is not None:   # clips are scored, split and reported by name
        raise DataError(dup, "clip name", f"{paths[stems.index(dup.stem)]} and {dup} share the clip name {dup.stem!r}")
    return ReferenceClips(stems, list(joint_names), np.stack(qpos), np.stack(qvel),
                          np.stack(offsets), np.stack(sites), rates.pop(), label)


def find_registered(pattern_or_dir: str | Path) -> list[Path]:
    """`dir` -> dir/*.h5; otherwise a glob pattern. Sorted, so clip order is stable."""
    from mimic_core.data.prepare import find_files

    p = Path(pattern_or_dir)
    return find_files(str(p / "*.h5") if p.is_dir() else str(pattern_or_dir), "registered clips")
