"""Keypoints checked against the model's geometry before any fit: wrong units and swapped keypoints are
refused with the file, the keypoints, the measured and expected values and the likely units."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from bench.cli import main
from mimic_core.config import Plausibility, as_params
from mimic_core.data import loaders
from mimic_core.data.plausible import check_keypoints, model_geometry
from mimic_core.errors import DataError, ParamsError
from mimic_core.model import keypoint_positions

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
CFG = as_params(PARAMS).data.keypoints.plausibility
REAL_CLIPS = ROOT.parent / "shared" / "real" / "mouse_arm_clips"


@pytest.fixture(scope="module")
def geom(fm):
    return model_geometry(fm)


@pytest.fixture(scope="module")
def reach(fm):
    """Clips (4, 60, K, 3) in metres from the model itself: a smooth reach through the joint ranges, offsets as
    params, 0.25 mm noise."""
    rng = np.random.default_rng(0)
    r = fm.joint_range
    off = np.asarray(PARAMS["stac"]["initial_offsets_mm"]) * 1e-3
    clips = []
    for _ in range(4):
        a, b = rng.uniform(r[:, 0], r[:, 1], (2, len(r))) * 0.6
        s = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, 60))[:, None]
        x = keypoint_positions(fm, a + s * (b - a), off)
        clips.append(x + rng.normal(0, 0.25e-3, x.shape))
    return np.stack(clips)


def _check(geom, x, units="m", cfg=CFG):
    return check_keypoints(geom, x, [f"c{i}" for i in range(len(x))], [f"clip{i}.csv" for i in range(len(x))],
                           cfg, units)


def test_the_model_geometry(geom):
    assert geom.names == ("Shoulder", "Elbow", "Wrist")
    assert list(geom.anchored) == [True, False, False]          # the scapula: no joint moves it
    assert geom.dist_min[1, 2] == pytest.approx(geom.dist_max[1, 2])   # elbow-wrist: one rigid forearm
    assert 6e-3 < geom.dist_min[1, 2] < 8e-3                     # ~6.9 mm, as published


def test_the_models_own_keypoints_pass(geom, reach):
    m = _check(geom, reach)
    assert m["checked"] and set(m["distance_ratio_median"]) == {"Shoulder-Elbow", "Shoulder-Wrist", "Elbow-Wrist"}
    assert m["anchored_motion_mm_max"]["Shoulder"] < 0.6           # noise only
    still = np.repeat(reach[:, :1], 60, axis=1) + np.random.default_rng(1).normal(0, 0.25e-3, reach.shape)
    assert _check(geom, still)["checked"]                           # a still clip is not a swap


@pytest.mark.parametrize("scale, declared, looks", [(1e-3, "mm", "m"), (1e3, "m", "mm"), (0.1, "mm", "cm"),
                                                    (10.0, "cm", "mm")])
def test_wrong_units_are_named_with_the_likely_ones(geom, reach, scale, declared, looks):
    with pytest.raises(DataError, match=rf"clip0\.csv: field 'keypoints Shoulder, Elbow'.*median distance.*"
                                        rf"model allows.*looks like {looks}, not {declared}"):
        _check(geom, reach * scale, declared)


@pytest.mark.parametrize("order", [[2, 1, 0], [1, 0, 2]])
def test_a_swapped_shoulder_is_refused(geom, reach, order):
    with pytest.raises(DataError, match=r"clip0\.csv: field 'keypoint Shoulder'.*moves .* mm RMS.*swapped"):
        _check(geom, reach[:, :, order])


def test_the_check_can_be_switched_off_and_says_so(geom, reach):
    off = Plausibility(check=False, distance_ratio=[0.5, 2.0], anchored_motion_ratio=1.0, anchored_floor_ratio=0.1)
    assert _check(geom, reach * 1e-3, "mm", off) == {"checked": False,
                                                     "why": "data.keypoints.plausibility.check: false"}
    m = check_keypoints(geom, reach * 1e-3, ["c"] * 4, ["f"] * 4, CFG, "mm", override="--no-plausibility-check")
    assert m == {"checked": False, "why": "--no-plausibility-check"}


@pytest.mark.parametrize("key, value, match", [
    ("distance_ratio", [1.5, 2.0], "low < 1 < high"),
    ("distance_ratio", [0.5], "at least 2"),
    ("anchored_motion_ratio", 0, "greater than 0"),
    ("check", "yes", "valid boolean"),
])
def test_bad_settings_are_named(key, value, match):
    p = copy.deepcopy(PARAMS)
    p["data"]["keypoints"]["plausibility"][key] = value
    with pytest.raises(ParamsError, match=rf"'data\.keypoints\.plausibility\.{key}.*{match}"):
        as_params(p)


@pytest.mark.skipif(not REAL_CLIPS.is_dir(), reason=f"real clips not present at {REAL_CLIPS}")
def test_the_real_clips_pass_and_their_swaps_and_unit_errors_do_not(geom, fm):
    from mimic_core.data.prepare import select_keypoints

    files = sorted(REAL_CLIPS.glob("*.h5"))
    x = np.stack([select_keypoints(loaders.load_keypoints(f, None, units="m", fps=200.0), fm.keypoint_names)
                  for f in files])
    assert check_keypoints(geom, x, [f.stem for f in files], files, CFG, "m")["checked"]
    for c in range(len(files)):
        for bad, units in ((x[c:c + 1] * 1e-3, "mm"), (x[c:c + 1, :, [2, 1, 0]], "m"), (x[c:c + 1, :, [1, 0, 2]], "m")):
            with pytest.raises(DataError, match=files[c].name):
                check_keypoints(geom, bad, [files[c].stem], [files[c]], CFG, units)


def test_cli_register_clips_refuses_metres_declared_as_millimetres(tmp_path, reach, fm):
    for i, x in enumerate(reach):
        loaders.write_anipose_csv(tmp_path / f"clip{i}.csv", x, fm.keypoint_names, units="m")
    args = ["register-clips", "--glob", str(tmp_path / "*.csv"), "--units", "mm", "--fps", "200",
            "--label", "synthetic", "--out-dir", str(tmp_path / "out"), "--metrics", str(tmp_path / "m.json"),
            "--params", str(ROOT / "params.yaml")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1 and res.output.startswith("error: ") and len(res.output.strip().splitlines()) == 1
    assert "clip0.csv" in res.output and "looks like m, not mm" in res.output, res.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.json").exists()
    res = CliRunner().invoke(main, [*args, "--no-plausibility-check"])        # the override runs, and says so
    assert res.exit_code == 0, res.output
    assert "not checked (--no-plausibility-check)" in res.output
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["keypoint_plausibility"] == {"checked": False, "why": "--no-plausibility-check"}
