"""Tests for mimic_core.data.loaders: round trips, format detection, bad input, fuzzing, real clips."""
from __future__ import annotations

import csv
import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mimic_core import artifacts
from mimic_core.artifacts import EmgData
from mimic_core.artifacts import read_twin_emg as load_twin_emg_h5
from mimic_core.artifacts import write_twin_emg as write_twin_emg_h5
from mimic_core.data import loaders
from mimic_core.data.loaders import (
    FORMATS, UNITS, KeypointData, detect_format, load_anipose_csv, load_keypoints,
    load_sleap_anipose_h5, load_stac_h5, write_anipose_csv,
)
from mimic_core.errors import DataError

REAL_CLIPS = Path(__file__).resolve().parents[2] / "shared/real/mouse_arm_clips"
NAMES = ("Shoulder", "Elbow", "Wrist")
# MIMIC_FUZZ_EXAMPLES raises the example count for a longer local hunt; the default keeps the file fast.
FUZZ = settings(max_examples=int(os.environ.get("MIMIC_FUZZ_EXAMPLES", "100")), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.data_too_large])


# --------------------------------------------------------------------------- helpers


def clip(frames: int = 20, k: int = 3, seed: int = 0, missing: bool = True) -> np.ndarray:
    """A plausible reach in metres (a few mm around the shoulder), with some missing points."""
    rng = np.random.default_rng(seed)
    kp = rng.normal(0.0, 3e-3, size=(frames, k, 3))
    if missing:
        kp[1, 0] = np.nan
        kp[frames - 1, k - 1] = np.nan
    return kp


def write_stac(path: Path, kp_m: np.ndarray, names=NAMES, dtype=np.float32) -> Path:
    """Like the stac-mjx files in shared/real: kp_data flattened, kp_names bytes, extra datasets."""
    frames, k, _ = kp_m.shape
    with h5py.File(path, "w") as f:
        f.create_dataset("kp_data", data=kp_m.reshape(frames, k * 3).astype(dtype), compression="gzip")
        f.create_dataset("kp_names", data=np.array([n.encode() for n in names]))
        f.create_dataset("qpos", data=np.zeros((frames, 4), np.float32))
        f.create_dataset("names_qpos", data=np.array([b"sh_elv", b"sh_extension", b"sh_rotation", b"elbow_joint"]))
        f.create_dataset("config", data=np.bytes_(b"keypoints: ..."))
    return path


def write_points3d(path: Path, points: np.ndarray, node_names=None) -> Path:
    """Like sleap_anipose.triangulate(fname=...): tracks (n_frames, n_tracks, n_nodes, 3), gzip 1."""
    with h5py.File(path, "w") as f:
        f.create_dataset("tracks", data=points, chunks=True, compression="gzip", compression_opts=1)
        f["tracks"].attrs["Description"] = "Shape: (n_frames, n_tracks, n_nodes, 3)."
        f.create_dataset("frames", data=(0, points.shape[0]), compression="gzip", compression_opts=1)
        if node_names is not None:
            f.create_dataset("node_names", data=np.array([n.encode() for n in node_names]))
    return path


def write_emg(path: Path, n: int = 400, c: int = 2, onset_s=0.5, fs: float = 400.0) -> tuple[Path, np.ndarray]:
    sig = np.random.default_rng(1).normal(0, 50.0, size=(n, c)).astype(np.float32)
    write_twin_emg_h5(path, sig, [f"m{i}" for i in range(c)], fs, onset_s=onset_s)
    return path, sig


def raw_emg(path: Path, emg=None, channels=None, **attrs) -> Path:
    """A hand-made EMG file, to break one piece at a time."""
    emg = np.zeros((10, 2), np.float32) if emg is None else emg
    channels = np.array([b"a", b"b"]) if channels is None else channels
    base = {"fs": 100.0, "units": "uV", "onset_s": 0.01, "data": "synthetic"}
    base.update(attrs)
    with h5py.File(path, "w") as f:
        if emg is not False:
            f.create_dataset("emg", data=emg)
        if channels is not False:
            f.create_dataset("channels", data=channels)
        for k, v in base.items():
            if v is not None:
                f.attrs[k] = v
    return path


def raises(fn, path: Path, field: str | None, *texts: str) -> DataError:
    """Assert fn() raises DataError naming the file (and the field, and any texts)."""
    with pytest.raises(DataError) as ei:
        fn()
    msg = str(ei.value)
    assert Path(path).name in msg, msg
    if field is not None:
        assert field in msg, msg
    for t in texts:
        assert t in msg, msg
    return ei.value


def read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def check_keypoints(kd: KeypointData) -> None:
    """Invariants of any KeypointData a loader returns."""
    kp = kd.keypoints
    assert kp.dtype == np.float64 and kp.ndim == 3 and kp.shape[2] == 3
    assert kp.shape[0] > 0 and kp.shape[1] == len(kd.names) > 0
    assert not np.isinf(kp).any() and not np.isnan(kp).all()
    assert len(set(kd.names)) == len(kd.names) and all(isinstance(n, str) and n.strip() for n in kd.names)
    assert np.isfinite(kd.fps) and kd.fps > 0


def check_emg(e: EmgData) -> None:
    assert e.signals.dtype == np.float64 and e.signals.ndim == 2
    assert e.signals.shape[0] > 0 and e.signals.shape[1] == len(e.channels) > 0
    assert np.isfinite(e.signals).all() and np.isfinite(e.fs) and e.fs > 0
    assert e.onset_s is None or 0 <= e.onset_s < e.signals.shape[0] / e.fs


def only_data_error(fn, check=None):
    """Run fn; a DataError is fine, any other exception fails; a result must pass `check`."""
    try:
        out = fn()
    except DataError as e:
        event(f"DataError field={e.field}")
        return None
    event("loaded")
    if check is not None:
        check(out)
    return out


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("units", ["mm", "m", "cm"])
def test_anipose_csv_round_trip(tmp_path, units):
    kp = clip()
    path = tmp_path / "trial.csv"
    write_anipose_csv(path, kp, NAMES, units=units)
    kd = load_anipose_csv(path, units=units, fps=200)
    check_keypoints(kd)
    assert kd.names == NAMES and kd.fps == 200.0 and kd.source == str(path)
    np.testing.assert_array_equal(np.isnan(kd.keypoints), np.isnan(kp))
    if units == "m":
        np.testing.assert_array_equal(kd.keypoints, kp)  # repr precision: exact
    else:
        np.testing.assert_allclose(kd.keypoints, kp, rtol=1e-15, atol=0)


def test_anipose_csv_layout(tmp_path):
    kp = clip(frames=3, k=2)
    path = tmp_path / "trial.csv"
    write_anipose_csv(path, kp, ["a", "b"], units="mm")
    rows = read_rows(path)
    expected = [f"{n}_{s}" for n in "ab" for s in ("x", "y", "z", "error", "ncams", "score")]
    expected += [f"M_{i}{j}" for i in range(3) for j in range(3)] + [f"center_{i}" for i in range(3)] + ["fnum"]
    assert rows[0] == expected
    assert len(rows) == 4 and [r[-1] for r in rows[1:]] == ["0", "1", "2"]
    # kp[1, 0] is missing: anipose (pandas to_csv) writes NaN as empty cells.
    assert rows[2][0:6] == ["", "", "", "", "", ""]
    assert float(rows[1][0]) == kp[0, 0, 0] * 1000 and rows[1][3:6] == ["0.0", "2.0", "1.0"]
    assert [float(rows[1][expected.index(f"M_{i}{j}")]) for i in range(3) for j in range(3)] == list(np.eye(3).ravel())
    assert path.read_bytes().endswith(b"\n") and b"\r" not in path.read_bytes()


def test_anipose_csv_extras_and_units(tmp_path):
    kp = clip(frames=4, missing=False)
    err = np.full((4, 3), 0.5)
    path = tmp_path / "t.csv"
    write_anipose_csv(path, kp, NAMES, units="m", error=err, score=np.ones((4, 3)) * 0.9, ncams=np.full((4, 3), 3))
    rows = read_rows(path)
    assert rows[1][3:6] == ["0.5", "3.0", "0.9"]
    mm = load_anipose_csv(path, units="mm", fps=100)  # same numbers read as mm: 1000x smaller in metres
    np.testing.assert_allclose(mm.keypoints, kp * 1e-3, rtol=1e-15)


def test_anipose_csv_reads_handmade_file(tmp_path):
    """A file as anipose writes it, with a keypoint missing in a whole row."""
    path = tmp_path / "pose.csv"
    header = ["nose_x", "nose_y", "nose_z", "nose_error", "nose_ncams", "nose_score",
              "paw_x", "paw_y", "paw_z", "paw_error", "paw_ncams", "paw_score"]
    header += [f"M_{i}{j}" for i in range(3) for j in range(3)] + ["center_0", "center_1", "center_2", "fnum"]
    tail = ["1.0", "0.0", "0.0", "0.0", "1.0", "0.0", "0.0", "0.0", "1.0", "0.0", "0.0", "0.0"]
    lines = [",".join(header),
             ",".join(["1.5", "2.5", "-3.0", "0.3", "3.0", "0.9", "", "", "", "", "", ""] + tail + ["0"]),
             ",".join(["1.6", "2.4", "-3.1", "0.3", "2.0", "0.8", "4", "5", "6", "1.0", "2.0", "0.7"] + tail + ["1"])]
    path.write_text("\n".join(lines) + "\n")
    kd = load_anipose_csv(path, units="mm", fps=100)
    assert kd.names == ("nose", "paw")
    assert np.isnan(kd.keypoints[0, 1]).all()
    np.testing.assert_allclose(kd.keypoints[1, 1], [4e-3, 5e-3, 6e-3])


def test_emg_round_trip(tmp_path):
    path, sig = write_emg(tmp_path / "e.h5", onset_s=0.25)
    e = load_twin_emg_h5(path)
    check_emg(e)
    np.testing.assert_array_equal(e.signals, sig.astype(np.float64))
    assert e.channels == ("m0", "m1") and e.fs == 400.0 and e.onset_s == 0.25 and e.source == str(path)
    with h5py.File(path) as f:
        assert f["emg"].dtype == np.float32 and f.attrs["units"] == "uV" and f.attrs["data"] == "synthetic"
    path2, _ = write_emg(tmp_path / "e2.h5", onset_s=None)
    assert load_twin_emg_h5(path2).onset_s is None


def test_emg_write_is_deterministic(tmp_path):
    a, _ = write_emg(tmp_path / "a.h5")
    time.sleep(1.1)  # a timestamp in the file would now differ
    b, _ = write_emg(tmp_path / "b.h5")
    assert a.read_bytes() == b.read_bytes()
    write_anipose_csv(tmp_path / "a.csv", clip(), NAMES)
    write_anipose_csv(tmp_path / "b.csv", clip(), NAMES)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_writers_are_atomic(tmp_path):
    path = tmp_path / "t.csv"
    write_anipose_csv(path, clip(), NAMES)
    before = path.read_bytes()
    with pytest.raises(DataError):
        write_anipose_csv(path, np.full((3, 3, 3), np.inf), NAMES)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]  # no temp files left


@pytest.mark.parametrize("edit, match", [
    (lambda f: f[::-1], r"row 2: frame number 18 after 19 goes backwards"),
    (lambda f: f + (np.arange(len(f)) >= 2), r"row 3: frame number 3 after 1 skips frames"),
    (lambda f: np.r_[f[:1], f[:-1]], r"row 2: frame number 0 after 0 goes backwards or repeats"),
])
def test_anipose_frame_numbers_must_be_consecutive(tmp_path, edit, match):
    import pandas as pd

    path = tmp_path / "t.csv"
    write_anipose_csv(path, clip(), NAMES)
    assert load_anipose_csv(path, units="mm", fps=200.0).keypoints.shape[0] == 20
    df = pd.read_csv(path)
    df["fnum"] = edit(df["fnum"].to_numpy())
    df.to_csv(path, index=False)
    with pytest.raises(DataError, match=rf"t\.csv: field 'fnum': {match}"):
        load_anipose_csv(path, units="mm", fps=200.0)


KILLED_MID_WRITE = r"""
import os, signal, sys
from mimic_core.io import atomic_dir, atomic_path
with atomic_dir(sys.argv[1]) as d:
    (d / "half").write_text("x")
    with atomic_path(sys.argv[2]) as t:
        t.write_text("half")
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_writers_leftovers_are_removed_by_the_next_write(tmp_path):
    import subprocess
    import sys

    from mimic_core.io import atomic_dir, clean_leftovers, write_json

    out, metrics = tmp_path / "prepared", tmp_path / "m.json"
    res = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(out), str(metrics)], capture_output=True)
    assert res.returncode == -9
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(left) == 2 and all(n.startswith((".prepared.", ".m.json.")) for n in left), left
    live = tmp_path / f".prepared.{os.getppid()}.abc"          # a live writer's temp folder is kept
    live.mkdir()
    with atomic_dir(out) as d:
        (d / "x").write_text("x")
    write_json(metrics, {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "m.json", "prepared"])
    assert clean_leftovers(out) == []


def test_an_os_error_is_one_clear_line(tmp_path):
    import click
    from click.testing import CliRunner

    from bench.cli.common import clear_errors

    @click.command()
    @clear_errors
    def full_disk():
        raise OSError(28, "No space left on device", str(tmp_path / "out.h5"))

    res = CliRunner().invoke(full_disk)
    assert res.exit_code == 1
    assert res.output == f"error: {tmp_path / 'out.h5'}: No space left on device\n"


def test_written_files_follow_the_umask(tmp_path):
    """The temporary file or folder is renamed into place: its mode must be an ordinary one
    (mkstemp's 0600 / mkdtemp's 0700 would hide results from the rest of a lab's group)."""
    import os

    from mimic_core.io import atomic_dir, write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "m.json", {"a": 1})
        with atomic_dir(tmp_path / "d") as d:
            (d / "x").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


def test_sleap_anipose_round_trip(tmp_path):
    pts = np.stack([clip(seed=0), clip(seed=1)], axis=1) * 1000  # (frames, 2 tracks, 3 nodes, 3) in mm
    path = write_points3d(tmp_path / "points3d.h5", pts)
    kd = load_sleap_anipose_h5(path, units="mm", fps=100, names=NAMES)
    check_keypoints(kd)
    assert kd.names == NAMES
    np.testing.assert_allclose(kd.keypoints, pts[:, 0] * 1e-3, rtol=1e-15)
    kd1 = load_sleap_anipose_h5(path, units="mm", fps=100, names=list(NAMES), track=1)
    np.testing.assert_allclose(kd1.keypoints, pts[:, 1] * 1e-3, rtol=1e-15)


def test_sleap_anipose_node_names_in_file(tmp_path):
    path = write_points3d(tmp_path / "points3d.h5", clip()[:, None], node_names=NAMES)
    assert load_sleap_anipose_h5(path, units="m", fps=100).names == NAMES
    assert load_sleap_anipose_h5(path, units="m", fps=100, names=NAMES).names == NAMES
    raises(lambda: load_sleap_anipose_h5(path, units="m", fps=100, names=["a", "b", "c"]), path, "names")


def test_stac_round_trip(tmp_path):
    kp = clip()
    path = write_stac(tmp_path / "trial_ik.h5", kp)
    kd = load_stac_h5(path, fps=200)
    check_keypoints(kd)
    assert kd.names == NAMES and kd.fps == 200.0
    np.testing.assert_array_equal(kd.keypoints, kp.astype(np.float32).astype(np.float64))
    kd_mm = load_stac_h5(write_stac(tmp_path / "mm.h5", kp * 1000, dtype=np.float64), units="mm", fps=200)
    np.testing.assert_allclose(kd_mm.keypoints, kp, rtol=1e-15)


def test_keypoint_data_is_read_only(tmp_path):
    kd = load_stac_h5(write_stac(tmp_path / "s.h5", clip()), fps=200)
    with pytest.raises(ValueError):
        kd.keypoints[0, 0, 0] = 1.0


# --------------------------------------------------------------------------- detection


@pytest.fixture
def three_files(tmp_path):
    stac = write_stac(tmp_path / "stac.h5", clip())
    sleap = write_points3d(tmp_path / "points3d.h5", clip()[:, None])
    ani = tmp_path / "pose.csv"
    write_anipose_csv(ani, clip(), NAMES, units="m")
    return {"stac_h5": stac, "sleap_anipose_h5": sleap, "anipose_csv": ani}


def test_detect_format(three_files):
    for fmt, path in three_files.items():
        assert detect_format(path) == fmt
        assert fmt in FORMATS


def test_detect_format_ignores_suffix(three_files, tmp_path):
    odd = {"stac_h5": "stac.csv", "sleap_anipose_h5": "p.txt", "anipose_csv": "pose.h5"}
    for fmt, path in three_files.items():
        moved = tmp_path / odd[fmt]
        moved.write_bytes(path.read_bytes())
        assert detect_format(moved) == fmt


def test_load_keypoints_detects(three_files):
    for fmt, path in three_files.items():
        kd = load_keypoints(path, units="m", fps=200, names=NAMES)
        check_keypoints(kd)
        assert kd.names == NAMES and kd.keypoints.shape == (20, 3, 3)
        assert load_keypoints(path, fmt, units="m", fps=200, names=NAMES).names == NAMES


def test_load_keypoints_names_must_match(three_files):
    path = three_files["stac_h5"]
    raises(lambda: load_keypoints(path, units="m", fps=200, names=["Wrist", "Elbow", "Shoulder"]), path, "names")


def test_unknown_format(tmp_path, three_files):
    text = tmp_path / "notes.csv"
    text.write_text("time,value\n0,1\n")
    e = raises(lambda: detect_format(text), text, "format", *FORMATS)
    assert "unknown format" in str(e)
    raises(lambda: load_keypoints(text, units="m", fps=200), text, "format", *FORMATS)
    path = three_files["stac_h5"]
    raises(lambda: load_keypoints(path, "c3d", units="m", fps=200), path, "format", *FORMATS)
    emg, _ = write_emg(tmp_path / "emg.h5")
    raises(lambda: detect_format(emg), emg, "format", "read_twin_emg")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["something"] = np.zeros(3)
    raises(lambda: detect_format(other), other, "format", *FORMATS)


# --------------------------------------------------------------------------- bad input: files


KP_LOADERS = {
    "stac_h5": lambda p: load_stac_h5(p, fps=200),
    "sleap_anipose_h5": lambda p: load_sleap_anipose_h5(p, units="m", fps=200, names=NAMES),
    "anipose_csv": lambda p: load_anipose_csv(p, units="m", fps=200),
    "emg": load_twin_emg_h5,
    "detect": detect_format,
    "load_keypoints": lambda p: load_keypoints(p, units="m", fps=200, names=NAMES),
}


@pytest.mark.parametrize("which", KP_LOADERS)
def test_missing_file(tmp_path, which):
    path = tmp_path / "nope.h5"
    raises(lambda: KP_LOADERS[which](path), path, None, "not found")


@pytest.mark.parametrize("which", KP_LOADERS)
def test_directory(tmp_path, which):
    path = tmp_path / "adir.h5"
    path.mkdir()
    raises(lambda: KP_LOADERS[which](path), path, None, "directory")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
@pytest.mark.parametrize("which", KP_LOADERS)
def test_unreadable_file(tmp_path, which):
    path = write_stac(tmp_path / "locked.h5", clip())
    path.chmod(0)
    try:
        raises(lambda: KP_LOADERS[which](path), path, None, "permission")
    finally:
        path.chmod(0o600)


@pytest.mark.parametrize("which", KP_LOADERS)
def test_unreadable_file_simulated(tmp_path, monkeypatch, which):
    """The same check where the tests run as root (which reads any file): fake the access test."""
    path = write_stac(tmp_path / "locked.h5", clip())
    monkeypatch.setattr(loaders.os, "access", lambda p, mode: False)
    raises(lambda: KP_LOADERS[which](path), path, None, "permission")


@pytest.mark.parametrize("which", ["stac_h5", "sleap_anipose_h5", "emg"])
def test_not_hdf5(tmp_path, which):
    path = tmp_path / "fake.h5"
    path.write_text("Shoulder_x,Shoulder_y\n1,2\n")
    raises(lambda: KP_LOADERS[which](path), path, None, "not an HDF5 file")


@pytest.mark.parametrize("which", ["stac_h5", "sleap_anipose_h5", "emg", "detect", "load_keypoints"])
def test_truncated_hdf5(tmp_path, which):
    good = tmp_path / "good.h5"
    if which == "emg":
        write_emg(good)
    elif which == "sleap_anipose_h5":
        write_points3d(good, clip()[:, None])
    else:
        write_stac(good, clip())
    path = tmp_path / "cut.h5"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    raises(lambda: KP_LOADERS[which](path), path, None)


def test_truncated_csv(tmp_path):
    good = tmp_path / "good.csv"
    write_anipose_csv(good, clip(), NAMES)
    data = good.read_bytes()
    path = tmp_path / "cut.csv"
    path.write_bytes(data[: len(data) // 2])  # mid-line
    raises(lambda: load_anipose_csv(path, units="mm", fps=200), path, None, "truncated")
    lines = data.split(b"\n")
    path.write_bytes(b"\n".join(lines[:5]) + b"\n" + lines[5][:20] + b"\n")  # a short last row
    raises(lambda: load_anipose_csv(path, units="mm", fps=200), path, "row 5", "truncated")


def test_empty_and_binary_csv(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    raises(lambda: load_anipose_csv(path, units="mm", fps=200), path, None, "empty")
    raises(lambda: detect_format(path), path, "format")
    path.write_bytes(b"\xff\xfe\x00garbage\n")
    raises(lambda: load_anipose_csv(path, units="mm", fps=200), path, None, "UTF-8")
    header_only = tmp_path / "header.csv"
    header_only.write_text("a_x,a_y,a_z\n")
    raises(lambda: load_anipose_csv(header_only, units="mm", fps=200), header_only, "rows", "zero frames")


# --------------------------------------------------------------------------- bad input: shapes and dtypes


def test_stac_bad_shapes(tmp_path):
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as f:
        f["kp_data"] = np.zeros((10, 8), np.float32)
        f["kp_names"] = np.array([b"a", b"b", b"c"])
    raises(lambda: load_stac_h5(path, fps=200), path, "kp_data", "multiple of 3")
    with h5py.File(path, "w") as f:
        f["kp_data"] = np.zeros((10, 9), np.float32)
        f["kp_names"] = np.array([b"a", b"b"])
    raises(lambda: load_stac_h5(path, fps=200), path, "kp_names", "2 names")
    with h5py.File(path, "w") as f:
        f["kp_data"] = np.zeros(9, np.float32)
        f["kp_names"] = np.array([b"a", b"b", b"c"])
    raises(lambda: load_stac_h5(path, fps=200), path, "kp_data", "2-D")
    with h5py.File(path, "w") as f:
        f["kp_data"] = np.zeros((0, 9), np.float32)
        f["kp_names"] = np.array([b"a", b"b", b"c"])
    raises(lambda: load_stac_h5(path, fps=200), path, "kp_data", "zero frames")
    with h5py.File(path, "w") as f:
        f["kp_data"] = np.zeros((10, 9), np.float32)
    raises(lambda: load_stac_h5(path, fps=200), path, "kp_names", "missing")
    with h5py.File(path, "w") as f:
        f.create_group("kp_data")
        f["kp_names"] = np.array([b"a", b"b", b"c"])
    raises(lambda: load_stac_h5(path, fps=200), path, "kp_data", "Group")


@pytest.mark.parametrize("data", [np.array([[b"1", b"2", b"3"]]), np.ones((2, 3), bool),
                                  np.ones((2, 3), np.complex64)], ids=["bytes", "bool", "complex"])
def test_stac_bad_dtype(tmp_path, data):
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as f:
        f["kp_data"] = data
        f["kp_names"] = np.array([b"a"])
    raises(lambda: load_stac_h5(path, fps=200), path, "kp_data", "dtype")


def test_stac_bad_names(tmp_path):
    path = write_stac(tmp_path / "dup.h5", clip(), names=("a", "b", "a"))
    raises(lambda: load_stac_h5(path, fps=200), path, "kp_names", "duplicate")
    path = tmp_path / "num.h5"
    with h5py.File(path, "w") as f:
        f["kp_data"] = np.zeros((2, 3))
        f["kp_names"] = np.array([1])
    raises(lambda: load_stac_h5(path, fps=200), path, "kp_names", "strings")
    with h5py.File(path, "w") as f:
        f["kp_data"] = np.zeros((2, 3))
        f["kp_names"] = np.array([b"\xff\xfe"])
    raises(lambda: load_stac_h5(path, fps=200), path, "kp_names", "UTF-8")
    with h5py.File(path, "w") as f:
        f["kp_data"] = np.zeros((2, 3))
        f["kp_names"] = np.array([b" "])
    raises(lambda: load_stac_h5(path, fps=200), path, "kp_names", "empty")


def test_sleap_bad_input(tmp_path):
    path = write_points3d(tmp_path / "points3d.h5", np.stack([clip(), clip(seed=2)], axis=1))
    raises(lambda: load_sleap_anipose_h5(path, units="m", fps=100), path, "names", "no node names")
    raises(lambda: load_sleap_anipose_h5(path, units="m", fps=100, names=["a", "b"]), path, "names", "2 names")
    raises(lambda: load_sleap_anipose_h5(path, units="m", fps=100, names="abc"), path, "names")
    raises(lambda: load_sleap_anipose_h5(path, units="m", fps=100, names=["a", "a", "b"]), path, "names", "duplicate")
    raises(lambda: load_sleap_anipose_h5(path, units="m", fps=100, names=NAMES, track=2), path, "track", "2 track")
    raises(lambda: load_sleap_anipose_h5(path, units="m", fps=100, names=NAMES, track=-1), path, "track")
    raises(lambda: load_keypoints(path, units="m", fps=100), path, "names")
    analysis = tmp_path / "view.analysis.h5"  # SLEAP 2-D analysis layout: (n_tracks, 2, n_nodes, n_frames)
    with h5py.File(analysis, "w") as f:
        f["tracks"] = np.zeros((1, 2, 3, 50))
    raises(lambda: load_sleap_anipose_h5(analysis, units="m", fps=100, names=NAMES), analysis, "tracks", "2-D analysis")
    with h5py.File(analysis, "w") as f:
        f["tracks"] = np.zeros((5, 0, 3, 3))
    raises(lambda: load_sleap_anipose_h5(analysis, units="m", fps=100, names=NAMES), analysis, "tracks", "zero tracks")
    with h5py.File(analysis, "w") as f:
        f["tracks"] = np.full((5, 1, 3, 3), "x", dtype="S1")
    raises(lambda: load_sleap_anipose_h5(analysis, units="m", fps=100, names=NAMES), analysis, "tracks", "dtype")


def test_csv_bad_columns(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("a_x,a_y,fnum\n1,2,0\n")
    raises(lambda: load_anipose_csv(path, units="m", fps=100), path, "a_z", "missing column")
    path.write_text("a_x,a_y,a_z,a_x,a_y,a_z\n1,2,3,1,2,3\n")
    raises(lambda: load_anipose_csv(path, units="m", fps=100), path, "a_x", "duplicate")
    path.write_text("a_x,a_y,a_z\n1,oops,3\n")
    raises(lambda: load_anipose_csv(path, units="m", fps=100), path, "a_y", "row 1", "not a number")
    path.write_text("a_x,a_y,a_z\n1,2\n")
    raises(lambda: load_anipose_csv(path, units="m", fps=100), path, "row 1", "2 fields")
    path.write_text("time,value\n1,2\n")
    raises(lambda: load_anipose_csv(path, units="m", fps=100), path, "header", "not an anipose")
    path.write_text("_x,_y,_z\n1,2,3\n")
    raises(lambda: load_anipose_csv(path, units="m", fps=100), path, "header", "empty name")


def test_emg_bad_shapes_and_dtypes(tmp_path):
    path = tmp_path / "e.h5"
    raises(lambda: load_twin_emg_h5(raw_emg(path, emg=np.zeros(10, np.float32))), path, "emg", "2-D")
    raises(lambda: load_twin_emg_h5(raw_emg(path, emg=np.zeros((10, 3), np.float32))), path, "channels", "2 names")
    raises(lambda: load_twin_emg_h5(raw_emg(path, emg=np.zeros((0, 2), np.float32))), path, "emg", "zero samples")
    raises(lambda: load_twin_emg_h5(raw_emg(path, emg=np.zeros((10, 2), bool))), path, "emg", "dtype")
    raises(lambda: load_twin_emg_h5(raw_emg(path, emg=np.zeros((10, 2), "S3"))), path, "emg", "dtype")
    raises(lambda: load_twin_emg_h5(raw_emg(path, emg=False)), path, "emg", "missing")
    raises(lambda: load_twin_emg_h5(raw_emg(path, channels=False)), path, "channels", "missing")
    raises(lambda: load_twin_emg_h5(raw_emg(path, channels=np.array([b"a", b"a"]))), path, "channels", "duplicate")
    raises(lambda: load_twin_emg_h5(raw_emg(path, channels=np.array([1.0, 2.0]))), path, "channels", "strings")


def test_emg_bad_attrs(tmp_path):
    path = tmp_path / "e.h5"
    raises(lambda: load_twin_emg_h5(raw_emg(path, units="mV")), path, "units", "uV")
    raises(lambda: load_twin_emg_h5(raw_emg(path, units=None)), path, "units", "missing")
    raises(lambda: load_twin_emg_h5(raw_emg(path, fs=None)), path, "fs", "missing")
    for fs in (0.0, -5.0, np.nan, np.inf, "100", True):
        raises(lambda: load_twin_emg_h5(raw_emg(path, fs=fs)), path, "fs", "positive finite")
    for onset in (-0.01, 0.1, 5.0, np.nan, np.inf):  # the record is 10 samples at 100 Hz = 0.1 s
        raises(lambda: load_twin_emg_h5(raw_emg(path, onset_s=onset)), path, "onset_s")
    raises(lambda: load_twin_emg_h5(raw_emg(path, onset_s="soon")), path, "onset_s")
    assert load_twin_emg_h5(raw_emg(path, units=b"uV", fs=np.array([100]))).fs == 100.0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_emg_non_finite(tmp_path, bad):
    path = tmp_path / "e.h5"
    emg = np.zeros((10, 2), np.float32)
    emg[3, 1] = bad
    raises(lambda: load_twin_emg_h5(raw_emg(path, emg=emg)), path, "emg", "non-finite", "sample 3")
    raises(lambda: write_twin_emg_h5(path, emg, ["a", "b"], 100.0), path, "signals_uv", "non-finite")


# --------------------------------------------------------------------------- bad input: values and arguments


def test_units_and_rates(tmp_path, three_files):
    for fmt, path in three_files.items():
        load = FORMATS[fmt]
        kw = {"names": NAMES} if fmt == "sleap_anipose_h5" else {}
        raises(lambda: load(path, units="inch", fps=200, **kw), path, "units", "m, cm, mm")
        raises(lambda: load(path, units=["m"], fps=200, **kw), path, "units", "m, cm, mm")
        raises(lambda: load_keypoints(path, units="km", fps=200, names=NAMES), path, "units", "m, cm, mm")
        for fps in (0, -200, float("nan"), float("inf"), "200", None, True):
            raises(lambda: load(path, units="m", fps=fps, **kw), path, "fps", "positive finite")


def all_nan_and_inf_files(tmp_path, kp):
    stac = write_stac(tmp_path / "stac.h5", kp, dtype=np.float64)
    sleap = write_points3d(tmp_path / "points3d.h5", kp[:, None])
    ani = tmp_path / "pose.csv"
    with ani.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow([f"{n}_{a}" for n in NAMES for a in "xyz"])
        for row in kp.reshape(kp.shape[0], -1):
            w.writerow(["" if np.isnan(v) else repr(float(v)) for v in row])
    return {"stac_h5": (stac, "kp_data"), "sleap_anipose_h5": (sleap, "tracks"), "anipose_csv": (ani, "_x")}


def test_all_nan_clip(tmp_path):
    for fmt, (path, field) in all_nan_and_inf_files(tmp_path, np.full((5, 3, 3), np.nan)).items():
        raises(lambda: KP_LOADERS[fmt](path), path, field, "all keypoints are missing")
        raises(lambda: load_keypoints(path, units="m", fps=200, names=NAMES), path, field, "missing")
    raises(lambda: write_anipose_csv(tmp_path / "w.csv", np.full((5, 3, 3), np.nan), NAMES),
           tmp_path / "w.csv", "keypoints_m", "all keypoints are missing")


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_infinite_keypoints(tmp_path, bad):
    kp = clip()
    kp[4, 2, 1] = bad
    for fmt, (path, field) in all_nan_and_inf_files(tmp_path, kp).items():
        field = "Wrist_y" if fmt == "anipose_csv" else field
        raises(lambda: KP_LOADERS[fmt](path), path, field, "infinite")
    raises(lambda: write_anipose_csv(tmp_path / "w.csv", kp, NAMES), tmp_path / "w.csv", "keypoints_m", "infinite")


def test_partly_missing_point_is_missing(tmp_path):
    kp = clip(missing=False)
    kp[2, 1, 0] = np.nan
    kd = load_stac_h5(write_stac(tmp_path / "s.h5", kp, dtype=np.float64), fps=200)
    assert np.isnan(kd.keypoints[2, 1]).all() and not np.isnan(kd.keypoints[2, 0]).any()


def test_writer_bad_input(tmp_path):
    path = tmp_path / "w.csv"
    kp = clip()
    raises(lambda: write_anipose_csv(path, kp, ["a", "b"]), path, "names", "2 names")
    raises(lambda: write_anipose_csv(path, kp, ["a", "b", "a"]), path, "names", "duplicate")
    raises(lambda: write_anipose_csv(path, kp, ["a", "", "c"]), path, "names", "empty")
    raises(lambda: write_anipose_csv(path, kp, ["a", "b\nc", "d"]), path, "names", "control")
    raises(lambda: write_anipose_csv(path, kp, NAMES, units="furlong"), path, "units", "m, cm, mm")
    raises(lambda: write_anipose_csv(path, kp[..., :2], NAMES), path, "keypoints_m", "shape")
    raises(lambda: write_anipose_csv(path, kp.astype(str), NAMES), path, "keypoints_m", "dtype")
    raises(lambda: write_anipose_csv(path, kp, NAMES, error=np.zeros(3)), path, "error", "shape")
    raises(lambda: write_anipose_csv(path, kp, NAMES, score=np.full((20, 3), np.inf)), path, "score", "infinite")
    assert not path.exists()
    epath = tmp_path / "w.h5"
    sig = np.zeros((10, 2), np.float32)
    raises(lambda: write_twin_emg_h5(epath, sig, ["a"], 100.0), epath, "channels", "1 names")
    raises(lambda: write_twin_emg_h5(epath, sig, ["a", "b"], 0.0), epath, "fs", "positive finite")
    raises(lambda: write_twin_emg_h5(epath, sig, ["a", "b"], 100.0, onset_s=0.1), epath, "onset_s", "outside")
    raises(lambda: write_twin_emg_h5(epath, sig[:, 0], ["a", "b"], 100.0), epath, "signals_uv", "2-D")
    raises(lambda: write_twin_emg_h5(epath, np.full((10, 2), 1e39), ["a", "b"], 100.0), epath, "signals_uv", "float32")
    assert not epath.exists()


def test_unicode_names_round_trip(tmp_path):
    names = ("épaule", "肘", 'wr,"ist"')
    path = tmp_path / "u.csv"
    write_anipose_csv(path, clip(), names, units="m")
    assert load_anipose_csv(path, units="m", fps=1).names == names
    epath = tmp_path / "u.h5"
    write_twin_emg_h5(epath, np.zeros((5, 3)), names, 10.0)
    assert load_twin_emg_h5(epath).channels == names


# --------------------------------------------------------------------------- fuzzing


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def new_path(folder: Path, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(suffix=suffix, dir=folder)
    os.close(fd)
    return Path(name)


NUMERIC = [np.int8, np.int32, np.int64, np.uint16, np.bool_, np.float16, np.float32, np.float64, np.complex64]
REAL = [np.int16, np.uint8, np.float16, np.float32, np.float64]
shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)
numeric_arrays = st.sampled_from(NUMERIC).flatmap(lambda dt: hnp.arrays(dt, shapes))
texts = st.text(max_size=6)  # includes empty, whitespace, control and other unicode strings
name_lists = st.lists(st.one_of(texts, st.sampled_from(["a", "b", "Wrist"])), max_size=5)  # duplicates too
good_name = st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=5)


def good_names(k: int):
    # A distinct last digit per position keeps them unique without a filter.
    return st.lists(good_name, min_size=k, max_size=k).map(lambda ns: [f"{n}{i}" for i, n in enumerate(ns)])


def mostly(draw, valid, wild):
    """Draw from `valid` most of the time, so loaders get past their first check often."""
    return draw(valid) if draw(st.integers(0, 3)) < 3 else draw(wild)


@st.composite
def stored_names(draw):
    """Names as HDF5 stores them: fixed-length bytes, variable-length str, or something wrong."""
    kind = draw(st.sampled_from(["bytes", "vlen", "numeric", "scalar"]))
    if kind == "numeric":
        return draw(numeric_arrays)
    names = draw(name_lists)
    if kind == "scalar":
        return np.bytes_(",".join(names).encode())
    if kind == "vlen":
        return np.array(names, dtype=h5py.string_dtype())
    return as_bytes(names)


def as_bytes(names) -> np.ndarray:
    return np.array([n.encode("utf-8") for n in names], dtype=f"S{max([1] + [len(n.encode()) for n in names])}")


def real_arrays(shape):
    """Arrays of any real dtype: either any values (NaN, infinities) or finite ones with some NaN."""
    def finite(dt):
        if np.dtype(dt).kind != "f":
            return hnp.arrays(dt, shape)
        bits = np.dtype(dt).itemsize * 8
        return hnp.arrays(dt, shape, elements=st.one_of(st.floats(-1e3, 1e3, width=bits), st.just(np.nan)))
    return st.sampled_from(REAL).flatmap(lambda dt: st.one_of(finite(dt), hnp.arrays(dt, shape)))


@st.composite
def stac_content(draw):
    """Mostly the right layout with random sizes, dtypes and values; sometimes anything at all."""
    frames, k = draw(st.integers(0, 4)), draw(st.integers(0, 3))
    kp = mostly(draw, real_arrays((frames, 3 * k)), numeric_arrays)
    names = mostly(draw, good_names(k).map(as_bytes), stored_names())
    return kp, names


def write_h5_or_reject(path: Path, datasets: dict, attrs: dict | None = None) -> None:
    """Write a fuzz file; content h5py itself cannot store is not a loader test, so reject it."""
    try:
        with h5py.File(path, "w") as f:
            for k, v in datasets.items():
                if v is not None:
                    f.create_dataset(k, data=v)
            for k, v in (attrs or {}).items():
                if v is not None:
                    f.attrs[k] = v
    except (TypeError, ValueError, OSError):
        assume(False)


@st.composite
def units_fps(draw):
    units = mostly(draw, st.sampled_from(list(UNITS)), st.one_of(st.sampled_from(["km", "MM", ""]), st.none()))
    fps = mostly(draw, st.floats(0.1, 1e4), st.one_of(st.floats(), st.integers(-1, 300), texts, st.booleans()))
    return units, fps


@FUZZ
@given(content=stac_content(), drop=st.sampled_from([None, None, None, "kp_data", "kp_names"]), args=units_fps())
def test_fuzz_stac(fuzz_dir, content, drop, args):
    (kp, names), (units, fps) = content, args
    path = new_path(fuzz_dir, ".h5")
    write_h5_or_reject(path, {"kp_data": None if drop == "kp_data" else kp,
                              "kp_names": None if drop == "kp_names" else names})
    only_data_error(lambda: load_stac_h5(path, units=units, fps=fps), check_keypoints)
    only_data_error(lambda: load_keypoints(path, units=units, fps=fps), check_keypoints)


@st.composite
def points3d_content(draw):
    shape = (draw(st.integers(0, 4)), draw(st.integers(0, 3)), draw(st.integers(0, 3)), 3)
    points = mostly(draw, real_arrays(shape), numeric_arrays)
    n_nodes = shape[2]
    node_names = draw(st.one_of(st.none(), good_names(n_nodes).map(as_bytes), stored_names()))
    names = draw(st.one_of(good_names(n_nodes), st.none(), name_lists, texts, st.lists(st.integers(), max_size=3)))
    track = mostly(draw, st.integers(0, max(0, shape[1] - 1)), st.one_of(st.integers(-2, 3), st.booleans(), st.floats(0, 1)))
    return points, node_names, names, track


@FUZZ
@given(content=points3d_content(), args=units_fps())
def test_fuzz_sleap_anipose(fuzz_dir, content, args):
    (points, node_names, names, track), (units, fps) = content, args
    path = new_path(fuzz_dir, ".h5")
    write_h5_or_reject(path, {"tracks": points, "node_names": node_names})
    only_data_error(lambda: load_sleap_anipose_h5(path, units=units, fps=fps, names=names, track=track),
                    check_keypoints)
    only_data_error(lambda: load_keypoints(path, units=units, fps=fps, names=names), check_keypoints)


@st.composite
def emg_content(draw):
    n, c = draw(st.integers(0, 6)), draw(st.integers(0, 3))
    emg = mostly(draw, real_arrays((n, c)), numeric_arrays)
    channels = mostly(draw, good_names(c).map(as_bytes), stored_names())
    scalar = st.one_of(st.none(), st.floats(), st.integers(-5, 1000), st.booleans(), texts,
                       st.just(np.array([100.0, 200.0])))
    fs = mostly(draw, st.floats(1, 1000), scalar)
    attrs = {"fs": fs,
             "units": mostly(draw, st.sampled_from(["uV", b"uV"]), st.one_of(st.sampled_from(["mV", "µV"]), scalar)),
             "onset_s": mostly(draw, st.one_of(st.none(), st.floats(0, 0.01)), scalar),
             "data": mostly(draw, st.just("synthetic"), scalar)}
    return emg, channels, attrs


@FUZZ
@given(content=emg_content())
def test_fuzz_emg(fuzz_dir, content):
    emg, channels, attrs = content
    path = new_path(fuzz_dir, ".h5")
    write_h5_or_reject(path, {"emg": emg, "channels": channels}, attrs)
    only_data_error(lambda: load_twin_emg_h5(path), check_emg)


CELLS = st.one_of(st.sampled_from(["", "1.5", "-2e-3", "nan", "NaN", "inf", "-inf", "1e999", "abc", " 3 ", "0x10"]),
                  st.text(max_size=4))
COLUMNS = st.one_of(st.sampled_from(["a_x", "a_y", "a_z", "b_x", "b_y", "b_z", "a_error", "fnum", "M_00",
                                     "_x", "_y", "_z", "center_0"]), texts)
number_cells = st.one_of(st.floats(allow_infinity=False).map(repr), st.integers(-1000, 1000).map(str), st.just(""))


@st.composite
def csv_content(draw):
    """Mostly an anipose-like header with numeric rows; sometimes any header and cells."""
    if draw(st.integers(0, 3)):
        names = draw(st.lists(good_name, min_size=1, max_size=3, unique=True))
        header = [f"{n}_{s}" for n in names for s in ("x", "y", "z", "error", "ncams", "score")] + ["fnum"]
        n_rows = draw(st.integers(0, 4))
        rows = [[draw(number_cells) for _ in header] for _ in range(n_rows)]
        if rows and draw(st.booleans()):  # break one cell or the length of one row
            r, c = draw(st.integers(0, n_rows - 1)), draw(st.integers(0, len(header) - 1))
            rows[r][c] = draw(CELLS)
            if draw(st.booleans()):
                rows[r] = rows[r][: draw(st.integers(0, len(header)))]
        return header, rows
    return draw(st.lists(COLUMNS, max_size=8)), draw(st.lists(st.lists(CELLS, max_size=8), max_size=5))


@FUZZ
@given(content=csv_content(), newline=st.integers(0, 5), args=units_fps())
def test_fuzz_anipose_csv(fuzz_dir, content, newline, args):
    (header, rows), (units, fps) = content, args
    path = new_path(fuzz_dir, ".csv")
    with path.open("w", newline="", encoding="utf-8", errors="surrogatepass") as fh:
        w = csv.writer(fh, lineterminator="\r\n" if newline == 1 else "\n")
        for r in [header] + rows:
            w.writerow(r)
    if not newline:
        path.write_bytes(path.read_bytes().rstrip(b"\r\n"))
    only_data_error(lambda: load_anipose_csv(path, units=units, fps=fps), check_keypoints)
    only_data_error(lambda: load_keypoints(path, units=units, fps=fps), check_keypoints)


@FUZZ
@given(blob=st.binary(max_size=200))
def test_fuzz_random_bytes(fuzz_dir, blob):
    path = new_path(fuzz_dir, ".bin")
    path.write_bytes(blob)
    for load in KP_LOADERS.values():
        only_data_error(lambda: load(path))


weird_arrays = st.one_of(
    numeric_arrays,
    hnp.arrays(object, shapes, elements=st.one_of(st.none(), texts, st.floats(), st.integers(-3, 3), st.booleans())),
    hnp.arrays(hnp.unicode_string_dtypes(max_len=3), shapes),
    st.lists(st.lists(st.floats(), max_size=3), max_size=3),  # ragged
)


@st.composite
def writer_input(draw):
    """Keypoints and names: mostly matching in size with random dtypes, sometimes anything."""
    frames, k = draw(st.integers(0, 4)), draw(st.integers(0, 3))
    dt = draw(st.sampled_from(REAL + [np.bool_, object]))
    elements = st.floats() if dt is object else None
    kp = mostly(draw, hnp.arrays(dt, (frames, k, 3), elements=elements), weird_arrays)
    names = mostly(draw, st.one_of(good_names(k), st.lists(texts, min_size=k, max_size=k)),
                   st.one_of(name_lists, texts, st.none()))
    return kp, names


@FUZZ
@given(content=writer_input(), units=st.sampled_from(["m", "mm", "cm", "ft"]),
       extra=st.one_of(st.none(), weird_arrays))
def test_fuzz_write_anipose_csv(fuzz_dir, content, units, extra):
    kp, names = content
    path = new_path(fuzz_dir, ".csv")
    path.unlink()
    try:
        write_anipose_csv(path, kp, names, units=units, error=extra)
    except DataError as e:
        event(f"DataError field={e.field}")
        assert not path.exists()
        return
    event("written")
    kd = load_anipose_csv(path, units=units, fps=50)
    check_keypoints(kd)
    assert kd.names == tuple(names)
    want = np.asarray(kp, dtype=np.float64).copy()
    want[np.isnan(want).any(-1)] = np.nan
    np.testing.assert_allclose(kd.keypoints, want, rtol=1e-14, atol=0)


@st.composite
def emg_writer_input(draw):
    n, c = draw(st.integers(0, 6)), draw(st.integers(0, 3))
    sig = mostly(draw, real_arrays((n, c)), weird_arrays)
    channels = mostly(draw, st.one_of(good_names(c), st.lists(texts, min_size=c, max_size=c)),
                      st.one_of(name_lists, texts, st.none()))
    fs = mostly(draw, st.floats(1, 1e4), st.one_of(st.floats(), st.integers(-1, 2000), st.booleans(), texts))
    onset = mostly(draw, st.one_of(st.none(), st.floats(0, 1e-3)), st.one_of(st.floats(), texts))
    return sig, channels, fs, onset


@FUZZ
@given(content=emg_writer_input())
def test_fuzz_write_twin_emg(fuzz_dir, content):
    sig, channels, fs, onset = content
    path = new_path(fuzz_dir, ".h5")
    path.unlink()
    try:
        write_twin_emg_h5(path, sig, channels, fs, onset_s=onset)
    except DataError as e:
        event(f"DataError field={e.field}")
        assert not path.exists()
        return
    event("written")
    e = load_twin_emg_h5(path)
    check_emg(e)
    assert e.channels == tuple(channels)
    np.testing.assert_array_equal(e.signals, np.asarray(sig).astype(np.float32).astype(np.float64))


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("valid")
    ani = d / "pose.csv"
    write_anipose_csv(ani, clip(frames=30), NAMES)
    emg, _ = write_emg(d / "emg.h5")
    return {
        "stac_h5": write_stac(d / "stac.h5", clip(frames=30)).read_bytes(),
        "sleap_anipose_h5": write_points3d(d / "points3d.h5", np.stack([clip(30), clip(30, seed=3)], 1)).read_bytes(),
        "anipose_csv": ani.read_bytes(),
        "emg": emg.read_bytes(),
    }


@FUZZ
@given(which=st.sampled_from(["stac_h5", "sleap_anipose_h5", "anipose_csv", "emg"]), frac=st.floats(0, 1))
def test_fuzz_truncated(fuzz_dir, valid_files, which, frac):
    blob = valid_files[which]
    cut = int(frac * (len(blob) - 1))
    path = new_path(fuzz_dir, ".dat")
    path.write_bytes(blob[:cut])
    check = check_emg if which == "emg" else check_keypoints
    only_data_error(lambda: KP_LOADERS[which](path), check)
    only_data_error(lambda: detect_format(path))
    only_data_error(lambda: load_keypoints(path, units="m", fps=200, names=NAMES), check_keypoints)


# --------------------------------------------------------------------------- real clips


@pytest.mark.real
def test_real_clips():
    if not REAL_CLIPS.is_dir():
        pytest.skip(f"real clips not present at {REAL_CLIPS}")
    files = sorted(REAL_CLIPS.glob("*.h5"))
    assert len(files) == 30
    for path in files:
        assert detect_format(path) == "stac_h5"
        kd = load_keypoints(path, units="m", fps=200)
        assert kd.keypoints.shape == (100, 3, 3)
        assert kd.names == NAMES
        assert np.isfinite(kd.keypoints).all()
        # Metres, not millimetres: a mouse forelimb spans centimetres at most.
        assert np.abs(kd.keypoints).max() < 0.1


def test_units_table():
    assert UNITS == {"m": 1.0, "cm": 1e-2, "mm": 1e-3}
    assert set(FORMATS) == {"stac_h5", "sleap_anipose_h5", "anipose_csv"}
    assert artifacts.EMG_UNITS == "uV"


def test_structures_check_themselves():
    kd = KeypointData(np.zeros((2, 1, 3)), ("a",), 200, "made.h5")
    assert kd.fps == 200.0 and isinstance(kd.fps, float)
    with pytest.raises(DataError, match="made.h5"):
        KeypointData(np.zeros((2, 2, 3)), ("a",), 200.0, "made.h5")
    with pytest.raises(DataError, match="fps"):
        KeypointData(np.zeros((2, 1, 3)), ("a",), 0.0, "made.h5")
    with pytest.raises(DataError, match="signals"):
        EmgData(np.zeros((5,)), ("a",), 100.0, None, "made.h5")
    with pytest.raises(DataError, match="path"):
        write_anipose_csv(None, clip(), NAMES)


SWALLOWS_CTRL_C = r"""
import signal, time, click
from bench.cli.common import clear_errors

@click.command()
@clear_errors
def stubborn():
    # As if a C call or a library swallowed every Ctrl-C. A Python handler (not a try around sleep) leaves
    # no bytecode window in which the first KeyboardInterrupt could escape and end the process early.
    signal.signal(signal.SIGINT, lambda *_: print("swallowed", flush=True))
    print("ready", flush=True)
    for _ in range(600):
        time.sleep(0.1)

stubborn()
"""


def test_ctrl_c_twice_ends_any_command_at_once():
    import signal
    import subprocess
    import sys

    # A shell's background job or a pytest-xdist worker can hand SIGINT down as SIG_IGN, and Python then
    # installs no Ctrl-C handler (the nohup convention, which the CLI respects): give the child the
    # terminal's default, as a user's shell does.
    proc = subprocess.Popen([sys.executable, "-c", SWALLOWS_CTRL_C], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    line = proc.stdout.readline().strip()
    if line != "swallowed":
        proc.kill()
        pytest.fail(f"the first Ctrl-C was not swallowed: stdout {line!r}, exit {proc.wait()}, "
                    f"stderr {proc.stderr.read()[-2000:]!r}")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)   # a bound on a hang, not a timing check
    assert proc.returncode == 130 and "interrupted twice" in err
