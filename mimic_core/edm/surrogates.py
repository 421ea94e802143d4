"""Surrogate series for EDM significance tests (pyEDM ``SurrogateData``'s methods, and two for epoch data).

* ``random_shuffle``: a permutation of the series (keeps the values, destroys all serial structure).
* ``ebisuzaki`` (Ebisuzaki 1997): the Fourier amplitudes kept, the phases drawn uniformly, so the surrogate
  has the series' periodogram, hence its autocorrelation, and no other structure.  The Nyquist term of an
  even-length series becomes sqrt(2) |a| cos(phi) (the paper's rule), and the result is rescaled to the
  series' standard deviation and shifted to its mean.
* ``clip_ebisuzaki``: the same within each clip (a run of equal labels), so no power leaks across the
  boundaries between separate trials.
* ``clip_swap``: each clip's series replaced by another clip's (a random derangement of the clips), the
  donor linearly resampled onto the recipient's length.  For trial data this is the null that keeps
  everything a reach has in common and breaks only the pairing of this trial's signals.

Deviations from pyEDM 2.5.7's ``SurrogateData(method="ebisuzaki")``, which draws with Python's global
``random`` (no seed): pyEDM builds its spectrum from ``2 * floor(n / 2)`` terms, so an odd-length series
fails; it overwrites the last (negative-frequency) term instead of the Nyquist one, so its inverse
transform is not real and it keeps the real part; and it drops the mean.  Here the transform is a real
FFT (``rfft``/``irfft``), every length works, and the mean is kept.  Simplex and CCM rho do not depend on
a target's mean.
"""
from __future__ import annotations

import numpy as np

from mimic_core.errors import DataError

METHODS = ("random_shuffle", "ebisuzaki", "clip_ebisuzaki", "clip_swap")
CLIP_METHODS = ("clip_ebisuzaki", "clip_swap")

__all__ = ["METHODS", "CLIP_METHODS", "ebisuzaki", "clip_runs", "make_surrogates"]


def ebisuzaki(y, n_surrogates: int, rng: np.random.Generator) -> np.ndarray:
    """(n_surrogates, N) phase-randomised surrogates of the 1-D series ``y``."""
    y = np.asarray(y, np.float64)
    N = y.size
    mu, sd = y.mean(), y.std()
    a = np.fft.rfft(y - mu)
    amp = np.abs(a)
    amp[0] = 0.0
    K = a.size
    out = np.empty((int(n_surrogates), N))
    nyq = N % 2 == 0
    for s in range(int(n_surrogates)):
        phi = rng.uniform(0.0, 2.0 * np.pi, K)
        z = amp * np.exp(1j * phi)
        z[0] = 0.0
        if nyq and K > 1:
            z[-1] = np.sqrt(2.0) * amp[-1] * np.cos(phi[-1])
        x = np.fft.irfft(z, n=N)
        sx = x.std()
        out[s] = mu + (x * (sd / sx) if sx > 0 else x)
    return out


def clip_runs(clips) -> list[slice]:
    """The runs of equal labels in ``clips`` (N,), in order; a label that comes back after another is an
    error (clips must be contiguous)."""
    c = np.asarray(clips)
    if c.ndim != 1 or c.size == 0:
        raise DataError(None, "clips", "expected one clip label per row")
    edges = np.flatnonzero(c[1:] != c[:-1]) + 1
    starts, stops = np.r_[0, edges], np.r_[edges, c.size]
    labels = c[starts]
    if len(set(labels.tolist())) != len(labels):
        raise DataError(None, "clips", "a clip's rows must be contiguous: a label comes back after another clip")
    return [slice(int(a), int(b)) for a, b in zip(starts, stops)]


def _derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    while True:          # rejection: about e tries on average
        p = rng.permutation(n)
        if not (p == np.arange(n)).any():
            return p


def _resample(x: np.ndarray, n: int) -> np.ndarray:
    if x.size == n:
        return x.copy()
    if x.size == 1:
        return np.full(n, x[0])
    return np.interp(np.linspace(0.0, 1.0, n), np.linspace(0.0, 1.0, x.size), x)


def make_surrogates(y, method: str, n_surrogates: int, seed: int, clips=None) -> np.ndarray:
    """(n_surrogates, N) surrogates of ``y`` by ``method`` (see the module); deterministic in ``seed``.
    ``random_shuffle`` draws as ``simplex.shuffled_targets`` does, so its surrogates are the ones the
    shuffled-target test has always used."""
    from mimic_core.edm.simplex import shuffled_targets

    y = np.asarray(y, np.float64)
    if method not in METHODS:
        raise DataError(None, "method", f"unknown surrogate method {method!r} (have: {', '.join(METHODS)})")
    if int(n_surrogates) < 1:
        raise DataError(None, "n_surrogates", f"must be >= 1, got {n_surrogates}")
    if method == "random_shuffle":
        return shuffled_targets(y, n_surrogates, seed)
    rng = np.random.default_rng(seed)
    if method == "ebisuzaki":
        return ebisuzaki(y, n_surrogates, rng)
    if clips is None:
        raise DataError(None, "clips", f"method {method} needs a clip label per row")
    if len(clips) != y.size:
        raise DataError(None, "clips", f"{len(clips)} clip labels for {y.size} rows")
    runs = clip_runs(clips)
    out = np.empty((int(n_surrogates), y.size))
    if method == "clip_ebisuzaki":
        for r in runs:
            out[:, r] = ebisuzaki(y[r], n_surrogates, rng)
        return out
    if len(runs) < 2:
        raise DataError(None, "clips", "clip_swap needs at least 2 clips")
    for s in range(int(n_surrogates)):
        p = _derangement(len(runs), rng)
        for i, r in enumerate(runs):
            out[s, r] = _resample(y[runs[p[i]]], r.stop - r.start)
    return out
