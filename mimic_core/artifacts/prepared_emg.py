"""Prepared EMG envelopes (`data/prepared/emg.h5`): written by `prepare`, read by `edm` and the report.

Layout: `envelope` (clips, epoch frames, channels) float32; `channels`, `clip_names` (bytes);
`onset_s` (clips,) reach onset from the start of each record; `scale_uv` (channels,) the
normalising scale; attrs `data` (label), `fps`, `epoch_s`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mimic_core.artifacts._checks import (check_names, check_number, check_rate, check_shape, finite_array, names,
                                          read_h5, text)
from mimic_core.errors import DataError
from mimic_core.io import write_h5


@dataclass(frozen=True, eq=False)
class PreparedEmg:
    """EMG envelope epochs, one per clip, around each reach onset."""

    envelope: np.ndarray       # (clips, epoch frames, channels)
    channels: list[str]
    clip_names: list[str]
    onset_s: np.ndarray        # (clips,) reach onset from the start of each record
    scale_uv: np.ndarray       # (channels,) the scale each channel's envelope was divided by
    fps: float
    epoch_s: float
    label: str
    path: Path | None = None   # the file it was read from (for errors naming it)

    def channel(self, name: str) -> int:
        """The index of channel `name`; an unknown channel is a DataError naming the file."""
        if name not in self.channels:
            raise DataError(self.path, "channels", f"no EMG channel {name!r}; the file has {self.channels}")
        return self.channels.index(name)


def write_prepared_emg(path: str | os.PathLike, emg: PreparedEmg) -> None:
    """Write the envelopes (float32), atomically and deterministically."""
    write_h5(path, {
        "envelope": emg.envelope.astype(np.float32),
        "channels": np.array(emg.channels, dtype="S"),
        "clip_names": np.array(emg.clip_names, dtype="S"),
        "onset_s": np.array(emg.onset_s),
        "scale_uv": emg.scale_uv,
    }, {"data": emg.label, "fps": float(emg.fps), "epoch_s": float(emg.epoch_s)})


def read_prepared_emg(path: str | os.PathLike) -> PreparedEmg:
    """Read and check the envelopes (float64): shapes agree with the names, epoch_s * fps frames, all finite."""
    p, d, a = read_h5(path, "prepared EMG file not found (run the `prepare` stage)",
                      ("envelope", "channels", "clip_names", "onset_s", "scale_uv"), attrs=("fps", "epoch_s", "data"))
    channels = list(names(d["channels"], p, "channels"))
    clips = list(names(d["clip_names"], p, "clip_names"))
    env = finite_array(p, "envelope", d["envelope"])
    C = len(clips)
    if env.ndim != 3 or env.shape[0] != C or env.shape[2] != len(channels):
        raise DataError(p, "envelope", f"shape {env.shape} is not (clips {C}, frames, channels {len(channels)})")
    check_names(p, "channels", channels, env.shape[2])
    onset = finite_array(p, "onset_s", d["onset_s"])
    if onset.shape != (C,):
        raise DataError(p, "onset_s", f"shape {onset.shape}; expected one onset per clip ({C})")
    scale = finite_array(p, "scale_uv", d["scale_uv"])
    check_shape(p, "scale_uv", scale, (len(channels),))
    fps, epoch_s = check_rate(p, "fps", a["fps"]), check_number(p, "epoch_s", a["epoch_s"])
    if env.shape[1] != int(round(epoch_s * fps)):
        raise DataError(p, "envelope", f"{env.shape[1]} frames per epoch, but epoch_s * fps = "
                        f"{epoch_s:g} s * {fps:g} Hz")
    return PreparedEmg(env, channels, clips, onset, scale, fps, epoch_s, text(p, "data", a["data"]), Path(p))
