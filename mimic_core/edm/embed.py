"""Takens time-delay embedding with pyEDM's column order and NaN rows."""
from __future__ import annotations

import numpy as np

from mimic_core.errors import DataError


def _check(E: int, tau: int) -> None:
    if int(E) < 1:
        raise DataError(None, "E", f"E = {E} is invalid: must be >= 1")
    if int(tau) == 0:
        raise DataError(None, "tau", "tau must be non-zero")


def check_args(E: int, tau: int, exclusion_radius: int) -> tuple[int, int, int]:
    """(E, tau, exclusion_radius) as ints, or a DataError naming the bad one."""
    _check(E, tau)
    if int(exclusion_radius) < 0:
        raise DataError(None, "exclusion_radius", f"must be >= 0, got {exclusion_radius}")
    return int(E), int(tau), int(exclusion_radius)


def embed(data, E: int, tau: int = -1) -> np.ndarray:
    """Delay-embed every column of ``data`` (N, C) -> (N, E*C), float64.

    Column order is lag-major like ``pyEDM.Embed``: x(t-0), y(t-0), x(t-|tau|), y(t-|tau|), ...
    For tau < 0 lag k holds row t - k|tau| (NaN before the start); for tau > 0 it holds row
    t + k*tau (NaN past the end).
    """
    _check(E, tau)
    x = np.asarray(data, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    n, c = x.shape
    out = np.full((n, int(E) * c), np.nan)
    step = abs(int(tau))
    for k in range(int(E)):
        s = k * step
        cols = slice(k * c, (k + 1) * c)
        if s >= n:
            continue
        if tau < 0:
            out[s:, cols] = x[: n - s]
        else:
            out[: n - s, cols] = x[s:]
    return out


def embed_columns(names, E: int, tau: int = -1) -> list[str]:
    """pyEDM's names for the embedding columns: 'x(t-0)', 'x(t-1)' or 'x(t+1)'."""
    _check(E, tau)
    sign = "+" if tau > 0 else "-"
    return [f"{nm}(t{sign}{k * abs(int(tau))})" for k in range(int(E)) for nm in names]
