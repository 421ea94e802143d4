"""Atomic artifact writing: write to a temp path beside the target, then rename.

A crash or an error leaves either the old file or no file, never a half-written one. A run
killed mid-write (SIGKILL) leaves its temp path behind; the next write to the same target removes
it (temp names carry the writer's pid, and only those of processes that no longer run are removed).
"""
from __future__ import annotations

import contextlib
import json
import math
import shutil
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # someone else's process: alive
        return True
    return True


def _temp_prefix(path: Path) -> str:
    """Temp names carry the writer's pid (`.<name>.<pid>.`), so a later run can tell a killed run's leftovers."""
    return f".{path.name}.{os.getpid()}."


def clean_leftovers(path: str | os.PathLike) -> list[Path]:
    """Remove temp files and folders beside `path` left by writers that no longer run (killed mid-write);
    those of live processes are kept. Returns what was removed."""
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    start = f".{path.name}."
    for p in path.parent.iterdir():
        if not p.name.startswith(start):
            continue
        pid = p.name[len(start):].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(path)
    fd, tmp = tempfile.mkstemp(
        prefix=_temp_prefix(path), suffix=suffix if suffix is not None else ".tmp", dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_umask())    # mkstemp makes 0600; the result should read like any file
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _check_finite(obj: Any, where: str = "") -> None:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"refusing to write non-finite value {obj!r} at '{where or '/'}'")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_finite(v, f"{where}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_finite(v, f"{where}/{i}")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically; NaN or infinity anywhere is an error, never written."""
    _check_finite(obj)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `path`; on success it replaces `path` whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(path)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())    # mkdtemp makes 0700
    try:
        yield tmp
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=_temp_prefix(path) + "old.", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_h5(path: str | os.PathLike, datasets: dict[str, Any], attrs: dict[str, Any] | None = None) -> None:
    """Write an HDF5 file atomically and deterministically (no timestamps), refusing non-finite floats.

    Arrays whose name is listed in attrs['nan_allowed'] (a list) may hold NaN: there NaN means missing.
    """
    import h5py
    import numpy as np

    attrs = dict(attrs or {})
    nan_ok = set(attrs.get("nan_allowed", []))
    for k, v in datasets.items():
        a = np.asarray(v)
        if a.dtype.kind == "f":
            bad = ~np.isfinite(a) if k not in nan_ok else np.isinf(a)
            if bad.any():
                raise ValueError(f"refusing to write non-finite values into '{k}' of {path}")
    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            for k, v in attrs.items():
                f.attrs[k] = v
            for k, v in datasets.items():
                f.create_dataset(k, data=v, track_times=False)
