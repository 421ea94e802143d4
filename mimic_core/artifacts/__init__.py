"""The files the pipeline writes and reads between stages: one module per format, each a frozen
dataclass with a checked reader and an atomic, deterministic writer.

Readers raise `mimic_core.errors.DataError` naming the file and the field; writers go through
`mimic_core.io` (temp path then rename, no NaN where NaN does not mean missing).

  prepared keypoints  data/prepared/keypoints.h5   PreparedKeypoints  read/write_prepared_keypoints
  prepared EMG        data/prepared/emg.h5         PreparedEmg        read/write_prepared_emg
  registered clip     data/registered/<clip>.h5    RegisteredClip     read/write_registered
  rollouts            data/rollouts/<weight>.h5    Rollout            read/write_rollout
  twin truth          data/raw/twin/truth/*.h5     TwinTruth          read/write_truth
  twin raw EMG        data/raw/twin/emg/*.h5       EmgData            read/write_twin_emg
"""
from mimic_core.artifacts._checks import check_clip_names, clip_file, names, text
from mimic_core.artifacts.prepared_emg import PreparedEmg, read_prepared_emg, write_prepared_emg
from mimic_core.artifacts.prepared_keypoints import (PreparedKeypoints, read_prepared_keypoints,
                                                     write_prepared_keypoints)
from mimic_core.artifacts.registered import RegisteredClip, read_registered, write_registered
from mimic_core.artifacts.rollout import Rollout, read_rollout, write_rollout
from mimic_core.artifacts.truth import TwinTruth, read_truth, write_truth
from mimic_core.artifacts.twin_emg import EMG_UNITS, EmgData, read_twin_emg, write_twin_emg

__all__ = [
    "check_clip_names", "clip_file", "names", "text",
    "PreparedKeypoints", "read_prepared_keypoints", "write_prepared_keypoints",
    "PreparedEmg", "read_prepared_emg", "write_prepared_emg",
    "RegisteredClip", "read_registered", "write_registered",
    "Rollout", "read_rollout", "write_rollout",
    "TwinTruth", "read_truth", "write_truth",
    "EMG_UNITS", "EmgData", "read_twin_emg", "write_twin_emg",
]
