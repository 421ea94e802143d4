"""What every artifact reader checks: paths, HDF5 access, names, numbers and rates.

Each check reports bad input as a DataError naming the file and the field; the low-level
errors of h5py, pandas and file access never reach the caller for bad data.
"""
from __future__ import annotations

import contextlib
import math
import numbers
import os
import re
import unicodedata
from pathlib import Path
from typing import Any, Iterator, Sequence

import h5py
import numpy as np

from mimic_core.errors import DataError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
NUMERIC_KINDS = "iuf"  # ints, unsigned ints, floats; bools, complex, strings, compounds are refused
# What h5py, pandas and file access raise on corrupt or truncated input (pandas' parser errors
# are ValueErrors). Turned into DataError at the boundary so callers handle one exception type.
READ_ERRORS = (OSError, RuntimeError, ValueError, TypeError, KeyError, IndexError, UnicodeDecodeError, EOFError)


def path_str(path: Any) -> str | None:
    try:
        return os.fsdecode(os.fspath(path))
    except TypeError:
        return None


def writable_path(path: Any) -> str:
    p = path_str(path)
    if p is None:
        raise DataError(None, "path", f"not a file path: {path!r}")
    return p


def existing_file(path: Any, missing: str = "file not found") -> str:
    """The path as a str, after checking it names a readable regular file; `missing` says what to do if absent."""
    p = path_str(path)
    if p is None:
        raise DataError(None, None, f"not a file path: {path!r}")
    if not os.path.exists(p):
        raise DataError(p, None, missing)
    if os.path.isdir(p):
        raise DataError(p, None, "is a directory, not a file")
    if not os.access(p, os.R_OK):
        raise DataError(p, None, "permission denied: cannot read the file")
    return p


@contextlib.contextmanager
def guard(path: str | None, field: str | None = None) -> Iterator[None]:
    """Turn the low-level errors of reading a bad file into a DataError naming file and field."""
    try:
        yield
    except DataError:
        raise
    except PermissionError as e:
        raise DataError(path, field, "permission denied: cannot read the file") from e
    except READ_ERRORS as e:
        raise DataError(path, field, f"cannot read ({type(e).__name__}: {e}); "
                                     "the file may be truncated or corrupt") from e


def read_only(arr: np.ndarray) -> np.ndarray:
    """Frozen means frozen: a read-only view, so no caller edits a shared record in place."""
    view = arr.view()
    view.flags.writeable = False
    return view


def check_rate(path: str | None, field: str, value: Any) -> float:
    """A sampling rate: a real, finite, positive number (bools and strings are refused)."""
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in NUMERIC_KINDS:
        value = value.reshape(()).item()  # HDF5 attributes sometimes come back as 1-element arrays
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise DataError(path, field, f"must be a positive finite number (Hz), got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise DataError(path, field, f"must be a positive finite number (Hz), got {v!r}")
    return v


def check_number(path: str | None, field: str, value: Any) -> float:
    """A finite real number (an HDF5 scalar attribute), bools refused."""
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in NUMERIC_KINDS:
        value = value.reshape(()).item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise DataError(path, field, f"must be a finite number, got {value!r}")
    return float(value)


def check_name(path: str | None, field: str, name: Any) -> str:
    if isinstance(name, np.str_):
        name = str(name)
    if not isinstance(name, str):
        raise DataError(path, field, f"names must be strings, got {name!r}")
    if not name.strip():
        raise DataError(path, field, f"empty name {name!r}")
    # Control, surrogate and line-separator characters do not survive HDF5 byte strings or CSV
    # headers intact; refusing them keeps every writer/loader pair an exact round trip.
    bad = [c for c in name if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp")]
    if bad:
        raise DataError(path, field, f"name {name!r} contains control characters {bad!r}")
    return name


def check_names(path: str | None, field: str, names: Any, count: int) -> tuple[str, ...]:
    """Unique, non-empty names, exactly `count` of them."""
    if isinstance(names, (str, bytes)) or not isinstance(names, (Sequence, np.ndarray)):
        raise DataError(path, field, f"expected a sequence of {count} names, got {names!r}")
    checked = tuple(check_name(path, field, n) for n in names)
    if len(checked) != count:
        raise DataError(path, field, f"{len(checked)} names given for {count} columns/keypoints")
    dups = sorted({n for n in checked if checked.count(n) > 1})
    if dups:
        raise DataError(path, field, f"duplicate names: {dups}")
    return checked


# Clip names become file names (`<dir>/<clip>.h5`), so they are data, never paths: letters, digits,
# '.', '_' and '-', starting with a letter or digit (so never '.', '..' or a hidden file), no '..',
# and unique even where the file system ignores case.
CLIP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_clip_names(path: Any, field: str, clip_names: Sequence[str]) -> list[str]:
    """Clip names that are safe as file names and unique (case-insensitively); else a DataError naming them."""
    p = path_str(path) if path is not None else None
    out = []
    for name in clip_names:
        name = check_name(p, field, name)
        if not CLIP_NAME.fullmatch(name) or ".." in name:
            raise DataError(p, field, f"clip name {name!r} cannot be a file name: use letters, digits, '.', '_' "
                            "and '-' (starting with a letter or digit, no '..', at most 128 characters)")
        out.append(name)
    seen: dict[str, str] = {}
    for name in out:
        if name.casefold() in seen:
            raise DataError(p, field, f"duplicate clip names {seen[name.casefold()]!r} and {name!r} "
                            "(each clip needs a file name of its own)")
        seen[name.casefold()] = name
    return out


def clip_file(directory: str | os.PathLike, clip: str, suffix: str = ".h5") -> Path:
    """`<directory>/<clip><suffix>`, after checking that the clip name cannot leave the directory."""
    check_clip_names(directory, "clip name", [clip])
    return Path(directory) / f"{clip}{suffix}"


def names(raw: Any, path: str | os.PathLike | None = None, field: str | None = None) -> list[str]:
    """A name list as HDF5 stores it (fixed-length bytes, variable-length str, a numpy array or a list) as str."""
    arr = np.asarray(raw)
    if arr.ndim != 1:
        raise DataError(path, field, f"expected a 1-D array of names, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "SOU":
        raise DataError(path, field, f"expected strings, got dtype {arr.dtype}")
    out = []
    for item in arr.tolist():
        if isinstance(item, bytes):
            try:
                item = item.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(path, field, f"name {item!r} is not valid UTF-8") from e
        if not isinstance(item, str):
            raise DataError(path, field, f"expected strings, got {item!r}")
        out.append(item)
    return out


def text(path: str | os.PathLike | None, field: str, value: Any) -> str:
    """A string attribute (h5py gives str or bytes, sometimes a 1-element array) as str."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, (bytes, np.bytes_)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(path, field, f"not valid UTF-8: {value!r}") from e
    if not isinstance(value, str):
        raise DataError(path, field, f"expected a string, got {value!r}")
    return str(value)


def real_array(path: str | None, field: str, value: Any) -> np.ndarray:
    """`value` as a float64 array, refusing non-numeric dtypes (bool, complex, str, object)."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:  # ragged nested lists and the like
        raise DataError(path, field, f"not an array of numbers ({e})") from e
    if arr.dtype.kind not in NUMERIC_KINDS:
        raise DataError(path, field, f"expected numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def finite_array(path: str | None, field: str, value: Any, ndim: int | None = None, nan_ok: bool = False) -> np.ndarray:
    """A float64 array of `ndim` dimensions with no infinity (and no NaN unless `nan_ok`: NaN = missing)."""
    arr = real_array(path, field, value)
    if ndim is not None and arr.ndim != ndim:
        raise DataError(path, field, f"expected {ndim} dimensions, got shape {arr.shape}")
    bad = np.isinf(arr) if nan_ok else ~np.isfinite(arr)
    if bad.any():
        raise DataError(path, field, "holds NaN or infinite values" if not nan_ok else "holds infinite values")
    return arr


def read_dataset(f: h5py.File, path: str, name: str, *, required: bool = True) -> np.ndarray | None:
    with guard(path, name):
        obj = f.get(name)
        if obj is None:
            if required:
                raise DataError(path, name, f"missing dataset (the file has: {', '.join(sorted(f)) or 'none'})")
            return None
        if not isinstance(obj, h5py.Dataset):
            raise DataError(path, name, f"expected a dataset, found {type(obj).__name__}")
        if obj.shape is None:
            raise DataError(path, name, "dataset has no data (null dataspace)")
        return np.asarray(obj[()])


def read_attr(obj: h5py.HLObject, path: str, name: str, *, required: bool = True) -> Any:
    with guard(path, name):
        if name not in obj.attrs:
            if required:
                raise DataError(path, name, "missing attribute")
            return None
        value = obj.attrs[name]
    if isinstance(value, h5py.Empty):
        raise DataError(path, name, "attribute has no value")
    return value


def looks_hdf5(path: str, head: bytes) -> bool:
    if head.startswith(HDF5_SIGNATURE):
        return True
    with guard(path):
        # The signature may also sit after a user block (at 512, 1024, 2048, ... bytes).
        return bool(h5py.is_hdf5(path))


@contextlib.contextmanager
def open_h5(path: str) -> Iterator[h5py.File]:
    """An HDF5 file open for reading; not HDF5, truncated or corrupt is a DataError naming it."""
    with guard(path):
        with open(path, "rb") as fh:
            head = fh.read(len(HDF5_SIGNATURE))
    if not looks_hdf5(path, head):
        raise DataError(path, None, "not an HDF5 file (no HDF5 signature)")
    try:
        f = h5py.File(path, "r")
    except READ_ERRORS as e:
        raise DataError(path, None, f"cannot open as HDF5 ({e}); the file may be truncated or corrupt") from e
    try:
        with guard(path):
            yield f
    finally:
        with contextlib.suppress(Exception):
            f.close()


def read_h5(path: Any, missing: str, datasets: Sequence[str], optional: Sequence[str] = (),
            attrs: Sequence[str] = (), optional_attrs: Sequence[str] = ()) -> tuple[str, dict, dict]:
    """(path, datasets, attrs) of one artifact file; an absent optional entry is None, a required one an error."""
    p = existing_file(path, missing)
    with open_h5(p) as f:
        data = {k: read_dataset(f, p, k, required=k not in optional) for k in (*datasets, *optional)}
        att = {k: read_attr(f, p, k, required=k not in optional_attrs) for k in (*attrs, *optional_attrs)}
    return p, data, att


def check_shape(path: str, field: str, arr: np.ndarray, shape: tuple) -> None:
    """`arr.shape` equals `shape`, None in `shape` matching any length."""
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        want = ", ".join("*" if s is None else str(s) for s in shape)
        raise DataError(path, field, f"shape {arr.shape}, expected ({want})")
