"""The synthetic twin's ground truth (`data/raw/twin/truth/<trial>.h5`): written by `make-twin`, read only
to score the pipeline (registration, envelopes, tracking), never as its input.

Layout (float64): `qpos`, `qvel`, `qacc`, `qpos_intended` (frames, nq); `names_qpos`; `offsets`
(K, 3) m; `kp_names`; `keypoints_clean` (frames, K, 3) m; `activation`, `excitation` (frames,
nu); `muscle_names`; `torque_residual` (frames,); attrs `data` (label), `fps`, `onset_frame`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from mimic_core.artifacts._checks import check_rate, check_shape, finite_array, names, read_h5, text
from mimic_core.errors import DataError
from mimic_core.io import write_h5

ARRAYS = ("qpos", "qvel", "qacc", "qpos_intended", "offsets", "keypoints_clean", "activation", "excitation",
          "torque_residual")
NAME_LISTS = ("names_qpos", "kp_names", "muscle_names")


@dataclass(frozen=True, eq=False)
class TwinTruth:
    """One trial's truth: the joint trajectory, keypoint offsets and muscle activity that made its inputs."""

    qpos: np.ndarray             # (F, nq) rad
    qvel: np.ndarray             # (F, nq) rad/s
    qacc: np.ndarray             # (F, nq) rad/s^2
    qpos_intended: np.ndarray    # (F, nq) the minimum-jerk reach the muscles were driven to follow
    names_qpos: list[str]
    offsets: np.ndarray          # (K, 3) m, in each keypoint's body frame
    kp_names: list[str]
    keypoints_clean: np.ndarray  # (F, K, 3) m
    activation: np.ndarray       # (F, nu) in [0, 1]
    excitation: np.ndarray       # (F, nu)
    muscle_names: list[str]
    torque_residual: np.ndarray  # (F,)
    fps: float
    onset_frame: int
    label: str = "synthetic"


def write_truth(path: str | os.PathLike, truth: TwinTruth) -> None:
    """Write one trial's truth, atomically and deterministically."""
    write_h5(path, {
        "qpos": truth.qpos,
        "qvel": truth.qvel,
        "qacc": truth.qacc,
        "qpos_intended": truth.qpos_intended,
        "names_qpos": np.array(truth.names_qpos, dtype="S"),
        "offsets": truth.offsets,
        "kp_names": np.array(truth.kp_names, dtype="S"),
        "keypoints_clean": truth.keypoints_clean,
        "activation": truth.activation,
        "excitation": truth.excitation,
        "muscle_names": np.array(truth.muscle_names, dtype="S"),
        "torque_residual": truth.torque_residual,
    }, {"data": truth.label, "fps": truth.fps, "onset_frame": truth.onset_frame})


def read_truth(path: str | os.PathLike) -> TwinTruth:
    """Read and check one trial's truth: every field present, finite, the shapes agreeing with the names."""
    p, d, a = read_h5(path, "the twin's ground truth not found (run `mimic-bench make-twin`)",
                      (*ARRAYS, *NAME_LISTS), attrs=("data", "fps", "onset_frame"))
    arr = {k: finite_array(p, k, d[k]) for k in ARRAYS}
    lists = {k: names(d[k], p, k) for k in NAME_LISTS}
    F, nq, K, nu = len(arr["qpos"]), len(lists["names_qpos"]), len(lists["kp_names"]), len(lists["muscle_names"])
    for k, shape in (("qpos", (F, nq)), ("qvel", (F, nq)), ("qacc", (F, nq)), ("qpos_intended", (F, nq)),
                     ("offsets", (K, 3)), ("keypoints_clean", (F, K, 3)), ("activation", (F, nu)),
                     ("excitation", (F, nu)), ("torque_residual", (F,))):
        check_shape(p, k, arr[k], shape)
    onset = a["onset_frame"]
    if isinstance(onset, np.ndarray) and onset.size == 1:
        onset = onset.reshape(()).item()
    if isinstance(onset, (bool, np.bool_)) or not isinstance(onset, (int, np.integer)) or not 0 <= onset < F:
        raise DataError(p, "onset_frame", f"expected a frame index in [0, {F}), got {onset!r}")
    return TwinTruth(arr["qpos"], arr["qvel"], arr["qacc"], arr["qpos_intended"], lists["names_qpos"],
                     arr["offsets"], lists["kp_names"], arr["keypoints_clean"], arr["activation"],
                     arr["excitation"], lists["muscle_names"], arr["torque_residual"],
                     check_rate(p, "fps", a["fps"]), int(onset), text(p, "data", a["data"]))
