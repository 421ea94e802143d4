"""Keypoint and EMG loaders: one function per file format, one typed result each.

Every loader checks what it reads and reports bad input as a DataError that names
the file and the field at fault; no other exception type reaches the caller for
bad data. Keypoints always come back in metres, with NaN marking missing points.

Formats (see the functions for the details and the sources they follow):
  stac_h5           stac-mjx registration output (the real clips): kp_data, kp_names
  sleap_anipose_h5  sleap-anipose `points3d.h5`: tracks (n_frames, n_tracks, n_nodes, 3)
  anipose_csv       anipose pose-3d CSV: <name>_x/_y/_z/_error/_ncams/_score, M_ij, center_i, fnum

The synthetic twin's EMG and every file the pipeline writes live in `mimic_core.artifacts`.
"""
from __future__ import annotations

import io
import numbers
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import h5py
import numpy as np
import pandas as pd

from mimic_core.artifacts._checks import HDF5_SIGNATURE as _HDF5_SIGNATURE
from mimic_core.artifacts._checks import check_names as _check_names
from mimic_core.artifacts._checks import check_rate as _check_rate
from mimic_core.artifacts._checks import existing_file as _existing_file
from mimic_core.artifacts._checks import guard as _guard
from mimic_core.artifacts._checks import looks_hdf5 as _looks_hdf5
from mimic_core.artifacts._checks import names as _h5_names
from mimic_core.artifacts._checks import open_h5 as _open_h5
from mimic_core.artifacts._checks import path_str as _path_str
from mimic_core.artifacts._checks import read_dataset as _read_dataset
from mimic_core.artifacts._checks import read_only as _read_only
from mimic_core.artifacts._checks import real_array as _real_array
from mimic_core.artifacts._checks import writable_path as _writable_path
from mimic_core.errors import DataError
from mimic_core.io import atomic_path

UNITS = {"m": 1.0, "cm": 1e-2, "mm": 1e-3}  # scale to metres

_AXES = ("x", "y", "z")
_ANIPOSE_EXTRA = ("error", "ncams", "score")


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


# --------------------------------------------------------------------------- checks


def _check_units(path: str | None, units: Any) -> float:
    if not isinstance(units, str) or units not in UNITS:
        raise DataError(path, "units", f"unknown units {units!r}; allowed: {', '.join(UNITS)}")
    return UNITS[units]


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
    names = _h5_names(raw_names, p, "kp_names")
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
    stored = None if raw_names is None else _check_names(p, "node_names", _h5_names(raw_names, p, "node_names"), n_nodes)
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


# pandas' python engine reports a row longer than the header as "Expected N fields in line L, saw M".
_LONG_ROW = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _read_csv(path: str) -> tuple[list[str], pd.DataFrame]:
    """Header and data rows (as text, NaN where a row is short) of a CSV file, read by pandas.

    Refuses binary, non-UTF-8 and truncated files. The header is read as a row, so duplicate
    columns are seen as they are (pandas would rename them `a_x.1`).
    """
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
    # The python engine pads a short row with NaN (the C engine pads with "", like an empty cell).
    try:
        table = pd.read_csv(io.StringIO(text), header=None, dtype=str, keep_default_na=False,
                            skip_blank_lines=True, engine="python")
    except pd.errors.ParserError as e:
        m = _LONG_ROW.search(str(e))
        if m is None:
            raise DataError(path, None, f"cannot read ({type(e).__name__}: {e}); "
                                        "the file may be truncated or corrupt") from e
        n, line, saw = map(int, m.groups())
        raise DataError(path, f"row {line - 1}", f"{saw} fields, the header has {n}: truncated or malformed") from e
    return [str(c) for c in table.iloc[0]], table.iloc[1:]


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
    if rows.empty:
        raise DataError(p, "rows", "zero frames: the CSV has a header but no data rows")
    short = rows.isna().to_numpy()
    if short.any():
        r = int(np.argmax(short.any(axis=1)))
        raise DataError(p, f"row {r + 1}", f"{len(header) - int(short[r].sum())} fields, the header has "
                                           f"{len(header)}: truncated or malformed")
    index = {col: i for i, col in enumerate(header)}
    kp = np.empty((len(rows), len(names), 3), dtype=np.float64)
    for k, name in enumerate(names):
        for a, axis in enumerate(_AXES):
            col = f"{name}_{axis}"
            cells = rows.iloc[:, index[col]].str.strip()
            with _guard(p, col):   # a number beyond float64 range
                values = pd.to_numeric(cells.mask(cells == ""), errors="coerce").astype(np.float64).to_numpy()
            # pandas' NaN: an empty cell or a spelled-out "nan" is a missing point, anything else is not a number.
            bad = np.isnan(values) & (cells != "").to_numpy() & (cells.str.lower() != "nan").to_numpy()
            if bad.any():
                r = int(np.argmax(bad))
                raise DataError(p, col, f"row {r + 1}: not a number: {cells.iloc[r]!r}")
            if np.isinf(values).any():
                r = int(np.argmax(np.isinf(values)))
                raise DataError(p, col, f"row {r + 1}: infinite value "
                                        "(an empty cell marks a missing point; infinity is not allowed)")
            kp[:, k, a] = values
    if "fnum" in index:
        _check_frame_numbers(p, rows.iloc[:, index["fnum"]].str.strip())
    kp = _keypoint_array(p, "keypoint columns (<name>_x/_y/_z)", kp, names)
    return KeypointData(kp * scale, names, fps, p)


def _check_frame_numbers(p: str, cells: "pd.Series") -> None:
    """anipose's `fnum`: whole numbers rising by one per row, since the rows are read as consecutive frames."""
    values = pd.to_numeric(cells, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        r = int(np.argmax(bad))
        raise DataError(p, "fnum", f"row {r + 1}: frame number {cells.iloc[r]!r} is not a whole number")
    step = np.diff(values)
    if (step != 1).any():
        r = int(np.argmax(step != 1)) + 1
        what = "goes backwards or repeats" if step[r - 1] < 1 else "skips frames"
        raise DataError(p, "fnum", f"row {r + 1}: frame number {int(values[r])} after {int(values[r - 1])} {what}; "
                        "the rows must be consecutive frames in order")


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
                                             f"use mimic_core.artifacts.read_twin_emg. Known keypoint formats: {_known()}")
        raise DataError(p, "format", f"HDF5 file with no known keypoint layout (datasets: {keys}); "
                                     f"known formats: {_known()}")
    try:
        line = first_line.decode("utf-8-sig")
        header = [str(c) for c in pd.read_csv(io.StringIO(line), header=None, nrows=1, dtype=str,
                                              keep_default_na=False, engine="python").iloc[0]]
    except (UnicodeDecodeError, ValueError, IndexError):   # pandas' parser and empty-data errors are ValueErrors
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
