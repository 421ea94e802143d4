"""The `prepare` stage on a small twin: outputs, metrics, and clear errors on bad input."""
import copy
import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from bench.cli import main
from helpers import stage_argv
from mimic_core import artifacts
from mimic_core.data import loaders
from mimic_core.data.prepare import run_prepare
from mimic_core.data.twin import make_twin
from mimic_core.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.fixture(scope="module")
def small_twin(tmp_path_factory):
    out = tmp_path_factory.mktemp("twin")
    cfg = dict(PARAMS["twin"], n_trials=6)
    make_twin(out, seed=7, twin_cfg=cfg, model_xml=PARAMS["model"]["xml"],
              keypoint_map=PARAMS["model"]["keypoint_map"], emg_muscles=PARAMS["model"]["emg_muscles"])
    return out


def params_for(twin_dir: Path) -> dict:
    p = copy.deepcopy(PARAMS)
    p["data"]["keypoints"]["glob"] = str(twin_dir / "pose-3d" / "*.csv")
    p["data"]["emg"]["glob"] = str(twin_dir / "emg" / "*.h5")
    p["data"]["truth_dir"] = str(twin_dir / "truth")
    p["twin"].update(n_trials=6, seed=7)   # the settings small_twin was made with (its manifest is checked)
    return p


def test_prepare_writes_labelled_outputs_and_metrics(small_twin, tmp_path):
    out, metrics_path = tmp_path / "prepared", tmp_path / "metrics.json"
    metrics = run_prepare(params_for(small_twin), out, metrics_path)
    assert json.loads(metrics_path.read_text()) == metrics
    assert metrics["data"] == "synthetic" and metrics["n_clips"] == 6
    with h5py.File(out / "keypoints.h5") as f:
        kp, valid = f["keypoints"][()], f["valid"][()]
        assert f.attrs["data"] == "synthetic" and f.attrs["units"] == "m"
        assert kp.shape == (6, PARAMS["prepare"]["clip"]["n_frames"], 3, 3)
        np.testing.assert_array_equal(np.isfinite(kp).all(-1), valid)
        # Metres: a mouse forelimb spans millimetres, not metres or micrometres.
        assert 1e-3 < np.nanmax(np.abs(kp)) < 2e-2
    with h5py.File(out / "emg.h5") as f:
        env = f["envelope"][()]
        assert env.shape == (6, 60, 2) and np.all(np.isfinite(env))
    r = metrics["emg"]["envelope_vs_true_activation_r"]
    assert set(r) == {"biceps", "triceps"} and all(v > 0.7 for v in r.values())


def test_keypoints_in_metres_match_truth_within_noise(small_twin, tmp_path):
    run_prepare(params_for(small_twin), tmp_path / "p", tmp_path / "m.json")
    with h5py.File(tmp_path / "p" / "keypoints.h5") as f:
        kp = f["keypoints"][()]
    with h5py.File(small_twin / "truth" / "trial01.h5") as f:
        clean = f["keypoints_clean"][()]
    err = np.nanstd(kp[0] - clean)
    assert err == pytest.approx(PARAMS["twin"]["keypoint_noise_mm"] * 1e-3, rel=0.3)


def _copy_twin(src: Path, dst: Path) -> Path:
    import shutil
    shutil.copytree(src, dst)
    return dst


def test_keypoint_names_missing_from_the_map(small_twin, tmp_path):
    p = params_for(small_twin)
    p["model"]["keypoint_map"] = {"Shoulder": "scapula", "Paw": "wrist_body"}
    # A lab's own map (not the twin: its manifest is not compared), offsets for its two keypoints.
    p["data"]["label"] = "real"
    p["stac"]["initial_offsets_mm"] = p["twin"]["offsets_mm"]["mean"] = [[1.7, 0.7, 1.5], [1.6, -0.2, 0.0]]
    with pytest.raises(DataError, match=r"trial01\.csv.*'names'.*Paw"):
        run_prepare(p, tmp_path / "out", tmp_path / "m.json")
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.json").exists()


def test_all_nan_clip_is_an_error_and_nothing_is_half_written(small_twin, tmp_path):
    twin = _copy_twin(small_twin, tmp_path / "twin")
    csv = twin / "pose-3d" / "trial03.csv"
    df = pd.read_csv(csv)
    df[[c for c in df.columns if c[-2:] in ("_x", "_y", "_z")]] = np.nan
    df.to_csv(csv, index=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous run")
    with pytest.raises(DataError, match=r"trial03\.csv.*keypoints"):
        run_prepare(params_for(twin), out, tmp_path / "m.json")
    assert [p.name for p in out.iterdir()] == ["old.txt"]  # the previous output is untouched
    assert not list(tmp_path.glob(".out.*"))  # no temp folder left behind


def test_emg_below_nyquist_of_the_band_pass(small_twin, tmp_path):
    twin = _copy_twin(small_twin, tmp_path / "twin")
    e = artifacts.read_twin_emg(twin / "emg" / "trial02.h5")
    artifacts.write_twin_emg(twin / "emg" / "trial02.h5", e.signals[::20], e.channels, e.fs / 20, onset_s=e.onset_s)
    with pytest.raises(DataError, match=r"trial02\.h5.*'fs'"):
        run_prepare(params_for(twin), tmp_path / "out", tmp_path / "m.json")


def test_clip_window_longer_than_the_data(small_twin, tmp_path):
    p = params_for(small_twin)
    p["prepare"]["clip"]["n_frames"] = 500
    with pytest.raises(DataError, match=r"trial01\.csv.*'frames'"):
        run_prepare(p, tmp_path / "out", tmp_path / "m.json")


def test_cli_reports_bad_input_clearly(small_twin, tmp_path):
    p = params_for(small_twin)
    p["data"]["keypoints"]["glob"] = str(tmp_path / "nowhere" / "*.csv")
    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(p))
    res = CliRunner().invoke(main, stage_argv("prepare", tmp_path, params_path=pfile))
    assert res.exit_code == 1
    assert "nowhere" in res.output and "data.keypoints.glob" in res.output
    assert "Traceback" not in res.output
    res = CliRunner().invoke(main, stage_argv("prepare", tmp_path, params_path=tmp_path / "missing.yaml"))
    assert res.exit_code == 1 and "missing.yaml" in res.output


def test_sleap_anipose_points3d_through_params(small_twin, tmp_path):
    """A lab's SLEAP-Anipose files enter through the same stage: format, units and node names from params."""
    folder = tmp_path / "sleap"
    folder.mkdir()
    for csv in sorted((small_twin / "pose-3d").glob("*.csv")):
        kd = loaders.load_anipose_csv(csv, units="mm", fps=200)
        with h5py.File(folder / f"{csv.stem}.h5", "w") as f:
            # Node order differs from the keypoint map: prepare must reorder by name.
            f.create_dataset("tracks", data=(kd.keypoints[:, None, ::-1] * 1000.0))
    p = params_for(small_twin)
    p["data"]["keypoints"].update(glob=str(folder / "*.h5"), format="sleap_anipose_h5", units="mm",
                                  names=["Wrist", "Elbow", "Shoulder"])
    run_prepare(p, tmp_path / "out", tmp_path / "m.json")
    ref = run_prepare(params_for(small_twin), tmp_path / "ref", tmp_path / "r.json")
    with h5py.File(tmp_path / "out" / "keypoints.h5") as a, h5py.File(tmp_path / "ref" / "keypoints.h5") as b:
        np.testing.assert_allclose(a["keypoints"][()], b["keypoints"][()], atol=1e-9)
    assert ref["n_clips"] == 6


def test_two_files_of_one_clip_name_are_refused(small_twin, tmp_path):
    """Clips are paired (keypoints with EMG) and written by name: two folders' trial01 would mix or overwrite."""
    twin = _copy_twin(small_twin, tmp_path / "twin")
    (twin / "pose-3d-b").mkdir()
    (twin / "pose-3d-b" / "trial01.csv").write_bytes((twin / "pose-3d" / "trial01.csv").read_bytes())
    p = params_for(twin)
    p["data"]["keypoints"]["glob"] = str(twin / "pose-3d*" / "*.csv")
    with pytest.raises(DataError, match=r"pose-3d/trial01\.csv and .*pose-3d-b/trial01\.csv give the same clip name"):
        run_prepare(p, tmp_path / "out", tmp_path / "m.json")
    p = params_for(twin)
    (twin / "emg" / "TRIAL02.h5").write_bytes((twin / "emg" / "trial02.h5").read_bytes())
    with pytest.raises(DataError, match=r"TRIAL02\.h5 and .*trial02\.h5 give the same clip name"):
        run_prepare(p, tmp_path / "out", tmp_path / "m.json")
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.json").exists()


def test_a_failed_metrics_write_leaves_the_old_data(small_twin, tmp_path):
    out = tmp_path / "out"
    run_prepare(params_for(small_twin), out, tmp_path / "m.json")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (tmp_path / "m2.json").mkdir()                         # the metrics cannot be written there
    p = params_for(small_twin)
    p["prepare"]["clip"]["n_frames"] = 90                   # another result
    with pytest.raises(OSError):
        run_prepare(p, out, tmp_path / "m2.json")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
