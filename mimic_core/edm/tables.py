"""Data in: an array, a DataFrame or a CSV file, its columns found by name or index and checked
(non-numeric or non-finite cells are DataErrors naming the column and the row)."""
from __future__ import annotations

import os
import warnings
from typing import Sequence

import numpy as np

from mimic_core.errors import DataError


def _check_finite(data: np.ndarray, col_idx: Sequence[int], names, path=None) -> None:
    for c in dict.fromkeys(col_idx):
        bad = np.flatnonzero(~np.isfinite(data[:, c]))
        if bad.size:
            nm = names[c] if names is not None else f"column {c}"
            raise DataError(path, nm, f"row {bad[0] + 1} is NaN or infinite ({bad.size} such rows); "
                                      "remove or fill them before simplex")


def _as_data(data, names=None, need=None):
    """(array (N, C) float64, names).  For a DataFrame only the columns in ``need`` (names or
    indices) must be numeric: a non-numeric cell there is a DataError naming column and row."""
    if hasattr(data, "columns") and hasattr(data, "to_numpy"):   # pandas DataFrame
        import pandas as pd

        names = [str(c) for c in data.columns]
        need_i = set()
        for s in (need or []):
            if isinstance(s, (int, np.integer)):
                need_i.add(int(s))
            elif s in names:
                need_i.add(names.index(s))
        arr = np.full((len(data), len(names)), np.nan)
        for i, c in enumerate(data.columns):
            col = data[c]
            vals = pd.to_numeric(col, errors="coerce")
            if i in need_i:
                bad = np.flatnonzero(vals.isna().to_numpy() & col.notna().to_numpy())
                if bad.size:
                    raise DataError(None, names[i], f"non-numeric cell {col.iloc[bad[0]]!r} at data row {bad[0] + 1}")
            arr[:, i] = vals.to_numpy(dtype=np.float64)
        return arr, names
    try:
        arr = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(None, None, "data must be numeric") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(None, None, f"data must be 2-D (rows, columns), got shape {arr.shape}")
    return arr, names


def _col_index(spec, names, what: str) -> list[int]:
    if isinstance(spec, (str, int, np.integer)):
        spec = spec.split() if isinstance(spec, str) else [spec]
    out = []
    for s in spec:
        if isinstance(s, (int, np.integer)):
            out.append(int(s))
        elif names is not None and s in names:
            out.append(names.index(s))
        else:
            raise DataError(None, str(s), f"{what} column '{s}' not found"
                            + (f" (have: {', '.join(names)})" if names else ""))
    return out


def _header(path: str | os.PathLike) -> list[str]:
    """The CSV's first row as written (pandas renames duplicate names)."""
    import csv

    try:
        with open(path, newline="") as f:
            return next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(path, None, f"cannot read CSV: {e}") from None


def _load_plain(path, need: list[str]):
    """The common case without pandas (whose import is most of a one-off command's start-up): a header of
    distinct names holding every needed column, and finite numbers in those columns, read by numpy.
    None for anything else, which the pandas reader then handles (and names what is wrong)."""
    header = _header(path)
    if len(set(header)) != len(header) or any(c not in header for c in need):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = np.loadtxt(path, delimiter=",", skiprows=1, usecols=[header.index(c) for c in need],
                             dtype=np.float64, ndmin=2, quotechar='"')
    except (ValueError, OSError, UnicodeDecodeError):
        return None
    if arr.shape[0] == 0 or not np.isfinite(arr).all():
        return None
    return arr, need


def load_csv(path: str | os.PathLike, columns: Sequence[str], targets: Sequence[str]):
    """Read a CSV; returns (data (N, C) float64, names).  Missing columns, non-numeric cells and
    NaN cells in the named columns are DataErrors naming the column and the row."""
    need = list(dict.fromkeys(list(columns) + list(targets)))
    if os.path.isfile(path):
        plain = _load_plain(path, need)
        if plain is not None:
            return plain
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(path, None, "file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(path, None, f"cannot read CSV: {e}") from None
    names = [str(c) for c in df.columns]
    header = _header(path)
    dups = sorted({c for c in header if header.count(c) > 1})
    if dups:   # pandas would rename them (a, a.1) and a name would silently pick one
        raise DataError(path, "header", f"duplicate column names {dups}: each column needs a name of its own")
    need = list(dict.fromkeys(list(columns) + list(targets)))
    for c in need:
        if c not in names:
            raise DataError(path, c, f"column not found in CSV (have: {', '.join(names)})")
    for c in need:
        vals = pd.to_numeric(df[c], errors="coerce")
        bad = np.flatnonzero(vals.isna().to_numpy() & df[c].notna().to_numpy())
        if bad.size:
            raise DataError(path, c, f"non-numeric cell {df[c].iloc[bad[0]]!r} at data row {bad[0] + 1}")
        nan = np.flatnonzero(~np.isfinite(vals.to_numpy(dtype=np.float64)))
        if nan.size:
            raise DataError(path, c, f"row {nan[0] + 1} is empty or NaN ({nan.size} such rows)")
        df[c] = vals
    return df[need].to_numpy(dtype=np.float64), need


def _split(spec):
    if isinstance(spec, str):
        return spec.split()
    if isinstance(spec, (int, np.integer)):
        return [spec]
    return list(spec)


def prepare(data, columns, target, names):
    arr, names = _as_data(data, names, need=_split(columns) + _split(target))
    cols = _col_index(columns, names, "columns")
    tgts = _col_index(target, names, "target")
    for c in cols + tgts:
        if not 0 <= c < arr.shape[1]:
            raise DataError(None, "columns", f"column index {c} out of range (data has {arr.shape[1]} columns)")
    _check_finite(arr, cols + tgts, names)
    return arr, cols, tgts
