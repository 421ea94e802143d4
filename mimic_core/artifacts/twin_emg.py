"""The synthetic twin's raw EMG (`data/raw/twin/emg/<trial>.h5`): written by `make-twin`, read by `prepare`.

Layout: dataset `emg` (samples, channels) float32 in microvolts, `channels` (bytes); attrs
`fs` (Hz), `units` = "uV", `onset_s` (reach onset, optional), `data` (the label).
"""
from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from typing import Any, Sequence

import h5py
import numpy as np

from mimic_core.artifacts._checks import (NUMERIC_KINDS, check_name, check_names, check_rate, existing_file, names,
                                          open_h5, read_attr, read_dataset, read_only, real_array, text,
                                          writable_path)
from mimic_core.errors import DataError
from mimic_core.io import atomic_path

EMG_UNITS = "uV"


@dataclass(frozen=True, eq=False)
class EmgData:
    """EMG of one record, in microvolts."""

    signals: np.ndarray  # (samples, channels) float64, microvolts
    channels: tuple[str, ...]
    fs: float  # Hz
    onset_s: float | None  # reach onset from the start of the record (s), if known
    source: str

    def __post_init__(self) -> None:
        sig = self.signals
        if not isinstance(sig, np.ndarray) or sig.dtype != np.float64 or sig.ndim != 2:
            raise DataError(self.source, "signals", "expected a float64 (samples, channels) array")
        if sig.shape[0] == 0 or sig.shape[1] == 0 or sig.shape[1] != len(self.channels):
            raise DataError(self.source, "signals",
                            f"shape {sig.shape} does not fit {len(self.channels)} channels and at least one sample")
        object.__setattr__(self, "fs", check_rate(self.source, "fs", self.fs))
        object.__setattr__(self, "signals", read_only(sig))


def check_onset(path: str | None, value: Any, n_samples: int, fs: float) -> float:
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in NUMERIC_KINDS:
        value = value.reshape(()).item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise DataError(path, "onset_s", f"must be a number of seconds, got {value!r}")
    v = float(value)
    duration = n_samples / fs
    if not math.isfinite(v) or not 0.0 <= v < duration:
        raise DataError(path, "onset_s", f"{v!r} s is outside the record [0, {duration!r}) s")
    return v


def read_twin_emg(path: str | os.PathLike) -> EmgData:
    """Read one twin EMG record: emg (samples, channels), channels, attrs fs, units="uV", onset_s."""
    p = existing_file(path)
    with open_h5(p) as f:
        raw = read_dataset(f, p, "emg")
        raw_channels = read_dataset(f, p, "channels")
        fs_raw = read_attr(f, p, "fs")
        units_raw = read_attr(f, p, "units")
        onset_raw = read_attr(f, p, "onset_s", required=False)
    sig = real_array(p, "emg", raw)
    if sig.ndim != 2:
        raise DataError(p, "emg", f"expected a 2-D (samples, channels) array, got shape {sig.shape}")
    if sig.shape[0] == 0:
        raise DataError(p, "emg", "zero samples")
    if sig.shape[1] == 0:
        raise DataError(p, "emg", "zero channels")
    if not np.isfinite(sig).all():
        s, c = np.argwhere(~np.isfinite(sig))[0]
        raise DataError(p, "emg", f"non-finite value {sig[s, c]} at sample {s}, channel {c}")
    channels = check_names(p, "channels", names(raw_channels, p, "channels"), sig.shape[1])
    fs = check_rate(p, "fs", fs_raw)
    units = text(p, "units", units_raw)
    if units != EMG_UNITS:
        raise DataError(p, "units", f"EMG units must be {EMG_UNITS!r}, got {units!r}")
    onset = None if onset_raw is None else check_onset(p, onset_raw, sig.shape[0], fs)
    return EmgData(sig, channels, fs, onset, p)


def write_twin_emg(path: str | os.PathLike, signals_uv: Any, channels: Sequence[str], fs: float, *,
                   onset_s: float | None = None, label: str = "synthetic") -> None:
    """Write EMG (microvolts) atomically as float32; byte-for-byte deterministic for the same input."""
    p = writable_path(path)
    sig = real_array(p, "signals_uv", signals_uv)
    if sig.ndim != 2 or sig.shape[0] == 0 or sig.shape[1] == 0:
        raise DataError(p, "signals_uv", f"expected a non-empty 2-D (samples, channels) array, got shape {sig.shape}")
    with np.errstate(over="ignore"):  # overflow is reported below, as a DataError
        sig32 = sig.astype(np.float32)
    # Checked after the cast too: a finite float64 can overflow float32 to inf.
    if not (np.isfinite(sig).all() and np.isfinite(sig32).all()):
        raise DataError(p, "signals_uv", "non-finite values (or values beyond float32 range)")
    checked = check_names(p, "channels", channels, sig.shape[1])
    fs = check_rate(p, "fs", fs)
    onset = None if onset_s is None else check_onset(p, onset_s, sig.shape[0], fs)
    label = check_name(p, "label", label)
    # h5py directly rather than io.write_h5 (which orders by creation): the twin's files in DVC
    # were written this way, and the layout must not change their bytes.
    with atomic_path(path) as tmp:
        # track_times=False: no creation timestamps in the file, so DVC sees identical bytes.
        with h5py.File(tmp, "w") as f:
            f.create_dataset("emg", data=sig32, track_times=False)
            f.create_dataset("channels", data=np.array([n.encode("utf-8") for n in checked]), track_times=False)
            f.attrs["fs"] = np.float64(fs)
            f.attrs["units"] = EMG_UNITS
            if onset is not None:
                f.attrs["onset_s"] = np.float64(onset)
            f.attrs["data"] = label
