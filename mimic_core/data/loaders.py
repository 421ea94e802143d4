"""Keypoint and EMG loaders: one function per file format, one typed result each.

Every loader checks what it reads and reports bad input as a DataError that names
the file and the field at fault; no other exception type reaches the caller for
bad data. Keypoints always come back in metres, with NaN marking missing points.

Formats (see the functions for the details and the sources they follow):
  stac_h5           stac-mjx registration output (the real clips): kp_data, kp_names
  sleap_anipose_h5  sleap-anipose `points3d.h5`: tracks (n_frames, n_tracks, n_nodes, 3)
  anipose_csv       anipose pose-3d CSV: <name>_x/_y/_z/_error/_ncams/_score, M_ij, center_i, fnum
  twin EMG h5       the synthetic twin's EMG: emg (samples, channels), channels, fs, units
"""
from __future__ import annotations

import contextlib
import csv
import io
import math
import numbers
import os
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import h5py
import numpy as np
import pandas as pd

from mimic_core.errors import DataError
from mimic_core.io import atomic_path

UNITS = {"m": 1.0, "cm": 1e-2, "mm": 1e-3}  # scale to metres
EMG_UNITS = "uV"

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_NUMERIC_KINDS = "iuf"  # ints, unsigned ints, floats; bools, complex, strings, compounds are refused
_AXES = ("x", "y", "z")
_ANIPOSE_EXTRA = ("error", "ncams", "score")
# What h5py, the csv module and file access raise on corrupt or truncated input. Turned into
# DataError at the boundary so callers only ever handle one exception type for bad data.
_READ_ERRORS = (OSError, RuntimeError, ValueError, TypeError, KeyError, IndexError,
                UnicodeDecodeError, csv.Error, EOFError)


# --------------------------------------------------------------------------- structures


# eq=False: fields are arrays, so generated __eq__/__hash__ would be ambiguous or fail.
@dataclass(frozen=True, eq=False)
class KeypointData:
    """3D keypoints of one clip, in metres; NaN marks a missing point (all three coordinates)."""

    keypoints: np.ndarray  # (frames, keypoints, 3) float64, metres
    names: tuple[str, ...]
    fps: float  # Hz
    source: str  # the file it came from

    def __post_init__(self) -> None:
        kp, names = self.keypoints, self.names
        if not isinstance(kp, np.ndarray) or kp.dtype != np.float64 or kp.ndim != 3 or kp.shape[2] != 3:
            raise DataError(self.source, "keypoints", "expected a float64 (frames, keypoints, 3) array")
        if kp.shape[0] == 0 or kp.shape[1] == 0 or kp.shape[1] != len(names):
            raise DataError(self.source, "keypoints",
                            f"shape {kp.shape} does not fit {len(names)} names and at least one frame")
        object.__setattr__(self, "fps", _check_rate(self.source, "fps", self.fps))
        object.__setattr__(self, "keypoints", _read_only(kp))


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
        object.__setattr__(self, "fs", _check_rate(self.source, "fs", self.fs))
        object.__setattr__(self, "signals", _read_only(sig))


def _read_only(arr: np.ndarray) -> np.ndarray:
    """Frozen means frozen: a read-only view, so no caller edits a shared record in place."""
    view = arr.view()
    view.flags.writeable = False
    return view


# --------------------------------------------------------------------------- checks


def _path_str(path: Any) -> str | None:
    try:
        return os.fsdecode(os.fspath(path))
    except TypeError:
        return None


def _writable_path(path: Any) -> str:
    p = _path_str(path)
    if p is None:
        raise DataError(None, "path", f"not a file path: {path!r}")
    return p


def _existing_file(path: Any) -> str:
    """The path as a str, after checking it names a readable regular file."""
    p = _path_str(path)
    if p is None:
        raise DataError(None, None, f"not a file path: {path!r}")
    if not os.path.exists(p):
        raise DataError(p, None, "file not found")
    if os.path.isdir(p):
        raise DataError(p, None, "is a directory, not a file")
    if not os.access(p, os.R_OK):
        raise DataError(p, None, "permission denied: cannot read the file")
    return p


@contextlib.contextmanager
def _guard(path: str | None, field: str | None = None) -> Iterator[None]:
    """Turn the low-level errors of reading a bad file into a DataError naming file and field."""
    try:
        yield
    except DataError:
        raise
    except PermissionError as e:
        raise DataError(path, field, "permission denied: cannot read the file") from e
    except _READ_ERRORS as e:
        raise DataError(path, field, f"cannot read ({type(e).__name__}: {e}); "
                                     "the file may be truncated or corrupt") from e


def _check_units(path: str | None, units: Any) -> float:
    if not isinstance(units, str) or units not in UNITS:
        raise DataError(path, "units", f"unknown units {units!r}; allowed: {', '.join(UNITS)}")
    return UNITS[units]


def _check_rate(path: str | None, field: str, value: Any) -> float:
    """A sampling rate: a real, finite, positive number (bools and strings are refused)."""
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in _NUMERIC_KINDS:
        value = value.reshape(()).item()  # HDF5 attributes sometimes come back as 1-element arrays
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise DataError(path, field, f"must be a positive finite number (Hz), got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise DataError(path, field, f"must be a positive finite number (Hz), got {v!r}")
    return v


def _check_name(path: str | None, field: str, name: Any) -> str:
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


def _check_names(path: str | None, field: str, names: Any, count: int) -> tuple[str, ...]:
    """Unique, non-empty names, exactly `count` of them."""
    if isinstance(names, (str, bytes)) or not isinstance(names, (Sequence, np.ndarray)):
        raise DataError(path, field, f"expected a sequence of {count} names, got {names!r}")
    checked = tuple(_check_name(path, field, n) for n in names)
    if len(checked) != count:
        raise DataError(path, field, f"{len(checked)} names given for {count} columns/keypoints")
    dups = sorted({n for n in checked if checked.count(n) > 1})
    if dups:
        raise DataError(path, field, f"duplicate names: {dups}")
    return checked


def _decode_names(path: str, field: str, raw: Any) -> list[str]:
    """Names stored in HDF5 (fixed-length bytes or variable-length strings) as str."""
    arr = np.asarray(raw)
    if arr.ndim != 1:
        raise DataError(path, field, f"expected a 1-D array of names, got shape {arr.shape}")
    if arr.dtype.kind not in "SOU":
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


def _real_array(path: str | None, field: str, value: Any) -> np.ndarray:
    """`value` as a float64 array, refusing non-numeric dtypes (bool, complex, str, object)."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:  # ragged nested lists and the like
        raise DataError(path, field, f"not an array of numbers ({e})") from e
    if arr.dtype.kind not in _NUMERIC_KINDS:
        raise DataError(path, field, f"expected numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _keypoint_array(path: str, field: str, arr: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Check a (frames, keypoints, 3) float64 array; NaN is missing, inf is an error."""
    if arr.shape[0] == 0:
        raise DataError(path, field, "zero frames")
    if arr.shape[1] == 0:
        raise DataError(path, field, "zero keypoints")
    inf = np.isinf(arr)
    if inf.any():
        f, k, _ = np.argwhere(inf)[0]
        name = names[k] if k < len(names) else k
        raise DataError(path, field, f"infinite value at frame {f}, keypoint {name!r} "
                                     "(NaN marks a missing point; infinity is not allowed)")
    # A point is missing as a whole: a NaN in any coordinate makes all three NaN, so consumers
    # can test any one coordinate.
    arr = arr.copy()
    arr[np.isnan(arr).any(axis=-1)] = np.nan
    if np.isnan(arr).all():
        raise DataError(path, field, "all keypoints are missing (NaN) in every frame")
    return arr


def _read_dataset(f: h5py.File, path: str, name: str, *, required: bool = True) -> np.ndarray | None:
    with _guard(path, name):
        obj = f.get(name)
        if obj is None:
            if required:
                raise DataError(path, name, "missing dataset")
            return None
        if not isinstance(obj, h5py.Dataset):
            raise DataError(path, name, f"expected a dataset, found {type(obj).__name__}")
        if obj.shape is None:
            raise DataError(path, name, "dataset has no data (null dataspace)")
        return np.asarray(obj[()])


def _read_attr(obj: h5py.HLObject, path: str, name: str, *, required: bool = True) -> Any:
    with _guard(path, name):
        if name not in obj.attrs:
            if required:
                raise DataError(path, name, "missing attribute")
            return None
        value = obj.attrs[name]
    if isinstance(value, h5py.Empty):
        raise DataError(path, name, "attribute has no value")
    return value


def _attr_str(path: str, name: str, value: Any) -> str:
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, (bytes, np.bytes_)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(path, name, f"not valid UTF-8: {value!r}") from e
    if not isinstance(value, str):
        raise DataError(path, name, f"expected a string, got {value!r}")
    return str(value)


def _looks_hdf5(path: str, head: bytes) -> bool:
    if head.startswith(_HDF5_SIGNATURE):
        return True
    with _guard(path):
        # The signature may also sit after a user block (at 512, 1024, 2048, ... bytes).
        return bool(h5py.is_hdf5(path))


@contextlib.contextmanager
def _open_h5(path: str) -> Iterator[h5py.File]:
    with _guard(path):
        with open(path, "rb") as fh:
            head = fh.read(len(_HDF5_SIGNATURE))
    if not _looks_hdf5(path, head):
        raise DataError(path, None, "not an HDF5 file (no HDF5 signature)")
    try:
        f = h5py.File(path, "r")
    except _READ_ERRORS as e:
        raise DataError(path, None, f"cannot open as HDF5 ({e}); the file may be truncated or corrupt") from e
    try:
        with _guard(path):
            yield f
    finally:
        with contextlib.suppress(Exception):
            f.close()


# --------------------------------------------------------------------------- keypoint loaders


def _keypoint_source(path: Any, units: Any, fps: Any) -> tuple[str, float, float]:
    """What every keypoint loader checks first: declared units and rate, then that the file exists."""
    p0 = _path_str(path)
    scale = _check_units(p0, units)
    fps = _check_rate(p0, "fps", fps)
    return _existing_file(path), scale, fps


def load_stac_h5(path: str | os.PathLike, *, units: str = "m", fps: float) -> KeypointData:
    """Load a stac-mjx HDF5 file: kp_data (frames, K*3) and kp_names (K,) bytes.

    stac-mjx stores no units or frame rate, so the caller declares both (never guessed).
    """
    p, scale, fps = _keypoint_source(path, units, fps)
    with _open_h5(p) as f:
        raw = _read_dataset(f, p, "kp_data")
        raw_names = _read_dataset(f, p, "kp_names")
    names = _decode_names(p, "kp_names", raw_names)
    data = _real_array(p, "kp_data", raw)
    # stac-mjx flattens (frame, keypoint, xyz) to (frame, keypoint*3).
    if data.ndim != 2:
        raise DataError(p, "kp_data", f"expected a 2-D (frames, keypoints*3) array, got shape {data.shape}")
    if data.shape[1] % 3:
        raise DataError(p, "kp_data", f"{data.shape[1]} columns is not a multiple of 3 (x, y, z per keypoint)")
    n_kp = data.shape[1] // 3
    names_t = _check_names(p, "kp_names", names, n_kp)
    kp = _keypoint_array(p, "kp_data", data.reshape(data.shape[0], n_kp, 3), names_t)
    return KeypointData(kp * scale, names_t, fps, p)


def load_sleap_anipose_h5(path: str | os.PathLike, *, units: str, fps: float,
                          names: Sequence[str] | None = None, track: int = 0) -> KeypointData:
    """Load a sleap-anipose `points3d.h5`: dataset `tracks`, (n_frames, n_tracks, n_nodes, 3).

    sleap-anipose (talmolab/sleap-anipose, triangulation.py) writes only the points, not the
    node names, units or frame rate; the caller gives them. A `node_names` dataset, if some
    other tool added one, is used and must agree with `names`. `track` picks one animal.
    """
    p, scale, fps = _keypoint_source(path, units, fps)
    with _open_h5(p) as f:
        raw = _read_dataset(f, p, "tracks")
        raw_names = _read_dataset(f, p, "node_names", required=False)
    data = _real_array(p, "tracks", raw)
    if data.ndim != 4 or data.shape[-1] != 3:
        hint = " (a SLEAP 2-D analysis file? it stores (n_tracks, 2, n_nodes, n_frames))" \
            if data.ndim == 4 and data.shape[1] == 2 else ""
        raise DataError(p, "tracks", f"expected shape (n_frames, n_tracks, n_nodes, 3), got {data.shape}{hint}")
    n_frames, n_tracks, n_nodes, _ = data.shape
    if n_tracks == 0:
        raise DataError(p, "tracks", "zero tracks")
    if isinstance(track, (bool, np.bool_)) or not isinstance(track, numbers.Integral) \
            or not 0 <= int(track) < n_tracks:
        raise DataError(p, "track", f"track {track!r} out of range: the file has {n_tracks} track(s)")
    stored = None if raw_names is None else _check_names(p, "node_names", _decode_names(p, "node_names", raw_names), n_nodes)
    if names is None:
        if stored is None:
            raise DataError(p, "names", f"the file stores no node names; pass names= with {n_nodes} keypoint names")
        names_t = stored
    else:
        names_t = _check_names(p, "names", names, n_nodes)
        if stored is not None and stored != names_t:
            raise DataError(p, "names", f"names {list(names_t)} do not match the file's node_names {list(stored)}")
    kp = _keypoint_array(p, "tracks", data[:, int(track)], names_t)
    return KeypointData(kp * scale, names_t, fps, p)


def _read_csv(path: str) -> tuple[list[str], list[list[str]]]:
    """Header and data rows of a CSV file; refuses binary, non-UTF-8 and truncated files."""
    with _guard(path):
        with open(path, "rb") as fh:
            blob = fh.read()
    try:
        text = blob.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(path, None, f"not a UTF-8 text file (bad byte at offset {e.start})") from e
    if "\x00" in text:
        raise DataError(path, None, "binary content (NUL bytes) in a CSV file")
    if not text.strip():
        raise DataError(path, None, "empty file: no CSV header")
    # pandas (which anipose uses) ends every row with a newline; a file that stops mid-line
    # was cut short, and its last value may be silently shortened.
    if not text.endswith(("\n", "\r")):
        raise DataError(path, None, "the file ends in the middle of a line: truncated?")
    with _guard(path):
        rows = [r for r in csv.reader(io.StringIO(text, newline="")) if r]
    return rows[0], rows[1:]


def _anipose_keypoints(path: str, header: list[str]) -> list[str]:
    """Keypoint names in order of first appearance of their `<name>_x` columns."""
    seen = set()
    for col in header:
        if col in seen:
            raise DataError(path, col, "duplicate column")
        seen.add(col)
    names = [col[:-2] for col in header if col.endswith("_x")]
    if not names:
        raise DataError(path, "header", "no '<name>_x', '<name>_y', '<name>_z' columns: not an anipose pose-3d CSV")
    for name in names:
        for axis in _AXES[1:]:
            if f"{name}_{axis}" not in seen:
                raise DataError(path, f"{name}_{axis}", f"missing column (keypoint {name!r} has '{name}_x')")
    return names


def load_anipose_csv(path: str | os.PathLike, *, units: str, fps: float) -> KeypointData:
    """Load an anipose pose-3d CSV (lambdaloop/anipose, triangulate.py).

    Columns per keypoint `<name>_x, _y, _z, _error, _ncams, _score`, then `M_00..M_22`,
    `center_0..2`, `fnum`. Empty cells (pandas' NaN) are missing points. Only x/y/z are read.
    """
    p, scale, fps = _keypoint_source(path, units, fps)
    header, rows = _read_csv(p)
    found = _anipose_keypoints(p, header)
    names = _check_names(p, "header", found, len(found))
    if not rows:
        raise DataError(p, "rows", "zero frames: the CSV has a header but no data rows")
    index = {col: i for i, col in enumerate(header)}
    cols = [[index[f"{n}_{a}"] for a in _AXES] for n in names]
    kp = np.empty((len(rows), len(names), 3), dtype=np.float64)
    for r, row in enumerate(rows):
        if len(row) != len(header):
            raise DataError(p, f"row {r + 1}", f"{len(row)} fields, the header has {len(header)}: "
                                               "truncated or malformed")
        for k, kcols in enumerate(cols):
            for a, c in enumerate(kcols):
                cell = row[c].strip()
                if not cell:
                    kp[r, k, a] = np.nan
                    continue
                try:
                    v = float(cell)
                except ValueError:
                    raise DataError(p, header[c], f"row {r + 1}: not a number: {cell!r}") from None
                if math.isinf(v):
                    raise DataError(p, header[c], f"row {r + 1}: infinite value "
                                                  "(an empty cell marks a missing point; infinity is not allowed)")
                kp[r, k, a] = v
    kp = _keypoint_array(p, "keypoint columns (<name>_x/_y/_z)", kp, names)
    return KeypointData(kp * scale, names, fps, p)


# --------------------------------------------------------------------------- EMG


def load_twin_emg_h5(path: str | os.PathLike) -> EmgData:
    """Load the synthetic twin's EMG: emg (samples, channels), channels, attrs fs, units="uV", onset_s."""
    p = _existing_file(path)
    with _open_h5(p) as f:
        raw = _read_dataset(f, p, "emg")
        raw_channels = _read_dataset(f, p, "channels")
        fs_raw = _read_attr(f, p, "fs")
        units_raw = _read_attr(f, p, "units")
        onset_raw = _read_attr(f, p, "onset_s", required=False)
    sig = _real_array(p, "emg", raw)
    if sig.ndim != 2:
        raise DataError(p, "emg", f"expected a 2-D (samples, channels) array, got shape {sig.shape}")
    if sig.shape[0] == 0:
        raise DataError(p, "emg", "zero samples")
    if sig.shape[1] == 0:
        raise DataError(p, "emg", "zero channels")
    if not np.isfinite(sig).all():
        s, c = np.argwhere(~np.isfinite(sig))[0]
        raise DataError(p, "emg", f"non-finite value {sig[s, c]} at sample {s}, channel {c}")
    channels = _check_names(p, "channels", _decode_names(p, "channels", raw_channels), sig.shape[1])
    fs = _check_rate(p, "fs", fs_raw)
    units = _attr_str(p, "units", units_raw)
    if units != EMG_UNITS:
        raise DataError(p, "units", f"EMG units must be {EMG_UNITS!r}, got {units!r}")
    onset = None if onset_raw is None else _check_onset(p, onset_raw, sig.shape[0], fs)
    return EmgData(sig, channels, fs, onset, p)


def _check_onset(path: str | None, value: Any, n_samples: int, fs: float) -> float:
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in _NUMERIC_KINDS:
        value = value.reshape(()).item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise DataError(path, "onset_s", f"must be a number of seconds, got {value!r}")
    v = float(value)
    duration = n_samples / fs
    if not math.isfinite(v) or not 0.0 <= v < duration:
        raise DataError(path, "onset_s", f"{v!r} s is outside the record [0, {duration!r}) s")
    return v


def write_twin_emg_h5(path: str | os.PathLike, signals_uv: Any, channels: Sequence[str], fs: float, *,
                      onset_s: float | None = None, label: str = "synthetic") -> None:
    """Write EMG (microvolts) atomically as float32; byte-for-byte deterministic for the same input."""
    p = _writable_path(path)
    sig = _real_array(p, "signals_uv", signals_uv)
    if sig.ndim != 2 or sig.shape[0] == 0 or sig.shape[1] == 0:
        raise DataError(p, "signals_uv", f"expected a non-empty 2-D (samples, channels) array, got shape {sig.shape}")
    with np.errstate(over="ignore"):  # overflow is reported below, as a DataError
        sig32 = sig.astype(np.float32)
    # Checked after the cast too: a finite float64 can overflow float32 to inf.
    if not (np.isfinite(sig).all() and np.isfinite(sig32).all()):
        raise DataError(p, "signals_uv", "non-finite values (or values beyond float32 range)")
    names = _check_names(p, "channels", channels, sig.shape[1])
    fs = _check_rate(p, "fs", fs)
    onset = None if onset_s is None else _check_onset(p, onset_s, sig.shape[0], fs)
    label = _check_name(p, "label", label)
    with atomic_path(path) as tmp:
        # track_times=False: no creation timestamps in the file, so DVC sees identical bytes.
        with h5py.File(tmp, "w") as f:
            f.create_dataset("emg", data=sig32, track_times=False)
            f.create_dataset("channels", data=np.array([n.encode("utf-8") for n in names]), track_times=False)
            f.attrs["fs"] = np.float64(fs)
            f.attrs["units"] = EMG_UNITS
            if onset is not None:
                f.attrs["onset_s"] = np.float64(onset)
            f.attrs["data"] = label


# --------------------------------------------------------------------------- anipose writer


def write_anipose_csv(path: str | os.PathLike, keypoints_m: Any, names: Sequence[str], *, units: str = "mm",
                      error: Any = None, score: Any = None, ncams: Any = None) -> None:
    """Write keypoints (metres, NaN = missing) as an anipose pose-3d CSV in `units`, atomically.

    The column layout is anipose's triangulate.py: per keypoint x, y, z, error, ncams, score; then
    M_00..M_22 (identity), center_0..2 (zero), fnum. Missing points are empty cells, as pandas
    writes NaN. Defaults for the extras describe a clean two-camera triangulation (error 0,
    ncams 2, score 1), NaN where the point is missing, as anipose leaves them.
    """
    p = _writable_path(path)
    scale = _check_units(p, units)
    kp = _real_array(p, "keypoints_m", keypoints_m)
    if kp.ndim != 3 or kp.shape[2] != 3:
        raise DataError(p, "keypoints_m", f"expected a (frames, keypoints, 3) array, got shape {kp.shape}")
    names_t = _check_names(p, "names", names, kp.shape[1])
    kp = _keypoint_array(p, "keypoints_m", kp, names_t)
    missing = np.isnan(kp[..., 0])
    n_frames, n_kp = missing.shape

    def extra(field: str, value: Any, default: float) -> np.ndarray:
        if value is None:
            return np.where(missing, np.nan, default)
        arr = _real_array(p, field, value)
        if arr.shape != (n_frames, n_kp):
            raise DataError(p, field, f"expected shape {(n_frames, n_kp)}, got {arr.shape}")
        if np.isinf(arr).any():
            raise DataError(p, field, "infinite values")
        return arr

    extras = {"error": extra("error", error, 0.0), "ncams": extra("ncams", ncams, 2.0),
              "score": extra("score", score, 1.0)}
    coords = kp / scale
    out: dict[str, np.ndarray] = {}
    for k, name in enumerate(names_t):
        for a, axis in enumerate(_AXES):
            out[f"{name}_{axis}"] = coords[:, k, a]
        for key in _ANIPOSE_EXTRA:
            out[f"{name}_{key}"] = extras[key][:, k]
    eye = np.eye(3)
    for i in range(3):
        for j in range(3):
            out[f"M_{i}{j}"] = np.full(n_frames, eye[i, j])
    for i in range(3):
        out[f"center_{i}"] = np.zeros(n_frames)
    out["fnum"] = np.arange(n_frames)
    with atomic_path(path) as tmp:
        # float_format=None: pandas writes the shortest repr that round-trips each float64.
        pd.DataFrame(out).to_csv(tmp, index=False, lineterminator="\n", encoding="utf-8")


# --------------------------------------------------------------------------- dispatch


FORMATS: dict[str, Callable[..., KeypointData]] = {
    "stac_h5": load_stac_h5,
    "sleap_anipose_h5": load_sleap_anipose_h5,
    "anipose_csv": load_anipose_csv,
}


def _known() -> str:
    return ", ".join(FORMATS)


def detect_format(path: str | os.PathLike) -> str:
    """The FORMATS key for a keypoint file, from its content (not its suffix)."""
    p = _existing_file(path)
    with _guard(p):
        with open(p, "rb") as fh:
            head = fh.read(len(_HDF5_SIGNATURE))
            fh.seek(0)
            first_line = fh.readline(1 << 20)
    if _looks_hdf5(p, head):
        with _open_h5(p) as f:
            keys = sorted(f.keys())
            if "kp_data" in keys:
                return "stac_h5"
            tracks = f.get("tracks")
            if isinstance(tracks, h5py.Dataset) and tracks.ndim == 4 and tracks.shape[-1] == 3:
                return "sleap_anipose_h5"
            if "emg" in keys:
                raise DataError(p, "format", "this is an EMG file (dataset 'emg'), not keypoints; "
                                             f"use load_twin_emg_h5. Known keypoint formats: {_known()}")
        raise DataError(p, "format", f"HDF5 file with no known keypoint layout (datasets: {keys}); "
                                     f"known formats: {_known()}")
    try:
        line = first_line.decode("utf-8-sig")
        header = next(csv.reader([line.rstrip("\r\n")]), [])
    except (UnicodeDecodeError, csv.Error):
        header = []
    cols = set(header)
    if any(c.endswith("_x") and f"{c[:-2]}_y" in cols and f"{c[:-2]}_z" in cols for c in header):
        return "anipose_csv"
    raise DataError(p, "format", f"unknown format (neither a known HDF5 layout nor an anipose CSV header); "
                                 f"known formats: {_known()}")


def load_keypoints(path: str | os.PathLike, format: str | None = None, *, units: str, fps: float,
                   names: Sequence[str] | None = None) -> KeypointData:
    """Load keypoints from any known format; `format=None` detects it from the content.

    `names` is required for sleap-anipose files (they store none); for the other formats,
    when given, it must equal the names in the file.
    """
    if format is None:
        format = detect_format(path)
    if not isinstance(format, str) or format not in FORMATS:
        raise DataError(_path_str(path), "format", f"unknown format {format!r}; known formats: {_known()}")
    if format == "sleap_anipose_h5":
        return load_sleap_anipose_h5(path, units=units, fps=fps, names=names)
    data = FORMATS[format](path, units=units, fps=fps)
    if names is not None:
        given = _check_names(data.source, "names", names, len(data.names))
        if given != data.names:
            raise DataError(data.source, "names", f"names {list(given)} do not match the file's {list(data.names)}")
    return data
