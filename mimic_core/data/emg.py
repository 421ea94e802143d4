"""EMG processing: band-pass, rectification, envelope, scaling and reach epochs (scipy.signal).

The published chain: 4th-order Butterworth band-pass 20-1000 Hz (zero-phase), full-wave
rectification, 50 Hz low-pass envelope, scaling by the 98th percentile, 300 ms reach epochs
resampled to 200 Hz. Every number comes from params (`prepare.emg`).
"""
from __future__ import annotations

from fractions import Fraction
from typing import Sequence

import numpy as np
from scipy import signal

from mimic_core.artifacts import EmgData
from mimic_core.config import PrepareEmg
from mimic_core.errors import DataError


def check_rate(emg: EmgData, cfg: PrepareEmg) -> None:
    """The band-pass needs a sampling rate above twice its top frequency (Nyquist)."""
    top = cfg.bandpass_hz[1]
    if not emg.fs > 2 * top:
        raise DataError(emg.source, "fs", f"EMG sampled at {emg.fs:g} Hz, below twice the band-pass top "
                        f"frequency ({top:g} Hz): need more than {2 * top:g} Hz")


def envelope(emg: EmgData, cfg: PrepareEmg) -> np.ndarray:
    """Unscaled envelope (samples, channels): band-pass, rectify, low-pass; all zero-phase."""
    check_rate(emg, cfg)
    bp = signal.butter(cfg.bandpass_order, cfg.bandpass_hz,
                       btype="bandpass", fs=emg.fs, output="sos")
    lp = signal.butter(cfg.envelope_order, cfg.envelope_lowpass_hz,
                       btype="lowpass", fs=emg.fs, output="sos")
    band = signal.sosfiltfilt(bp, emg.signals, axis=0)
    return signal.sosfiltfilt(lp, np.abs(band), axis=0)


def epoch(env: np.ndarray, fs: float, onset_s: float, cfg: PrepareEmg, source: str = "") -> np.ndarray:
    """Cut `epoch_s` from the reach onset and resample it to `fps` (polyphase, anti-aliased)."""
    epoch_s, fps = cfg.epoch_s, cfg.fps
    start = int(round(onset_s * fs))
    n = int(round(epoch_s * fs))
    if start < 0 or start + n > env.shape[0]:
        raise DataError(source, "onset_s", f"the {epoch_s:g} s epoch from onset {onset_s:g} s runs past the "
                        f"record ({env.shape[0] / fs:g} s)")
    ratio = Fraction(fps / fs).limit_denominator(1_000_000)
    # Resample the whole record, then cut: no filter edge inside the epoch.
    res = signal.resample_poly(env, ratio.numerator, ratio.denominator, axis=0)
    s0 = int(round(onset_s * fps))
    n_out = int(round(epoch_s * fps))
    if s0 + n_out > res.shape[0]:
        raise DataError(source, "onset_s", "the epoch runs past the resampled record")
    return res[s0:s0 + n_out]


def prepare_emg(trials: Sequence[EmgData], cfg: PrepareEmg) -> tuple[np.ndarray, np.ndarray]:
    """Envelope epochs (trials, frames, channels) scaled per channel by the percentile over all trials.

    Returns the scaled epochs and the per-channel scale (envelope units per 1.0).
    """
    if not trials:
        raise DataError(None, "emg", "no EMG trials to prepare")
    channels = trials[0].channels
    epochs = []
    for tr in trials:
        if tr.channels != channels:
            raise DataError(tr.source, "channels", f"channels {list(tr.channels)} differ from {list(channels)}")
        if tr.onset_s is None:
            raise DataError(tr.source, "onset_s", "reach onset time is required to cut the epoch")
        epochs.append(epoch(envelope(tr, cfg), tr.fs, tr.onset_s, cfg, tr.source))
    ep = np.stack(epochs)
    scale = np.percentile(ep.reshape(-1, ep.shape[-1]), cfg.scale_percentile, axis=0)
    if not np.all(np.isfinite(scale) & (scale > 0)):
        bad = [c for c, s in zip(channels, scale) if not (np.isfinite(s) and s > 0)]
        raise DataError(trials[0].source, "emg", f"channel(s) {bad} have no signal to scale by")
    return ep / scale, scale
