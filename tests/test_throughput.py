"""`mimic-bench throughput`: env-count parsing, the device choice, a tiny real run (every figure positive and
finite, JSON + CSV + plot written), and a stop at the first env count that runs out of memory."""
from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import jax
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from bench.cli import main
from bench import throughput as tp

ROOT = Path(__file__).resolve().parents[1]

# Small networks and short episodes keep the compiles short; physics as in params (the cpu profile).
TINY_TRACK = {
    "env": {"episode_frames": 8, "obs_ref_frames": 2, "joint_scale": 20.0},
    "network": {"hidden": [16, 16], "intention_size": 2},
    "ppo": {"num_envs": 8, "unroll_length": 4, "num_minibatches": 2, "batch_size": 4, "update_epochs": 1, "total_env_steps": 96},
}


@pytest.fixture
def tiny_params(tmp_path) -> Path:
    """The repository's params with a tiny track section and no registered clips (the synthetic fallback)."""
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["model"]["xml"] = str(ROOT / p["model"]["xml"])
    p["track"] = {**p["track"], **{k: {**p["track"][k], **v} for k, v in TINY_TRACK.items()}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(p))
    return path


def _numbers(obj, where=""):
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return
    if isinstance(obj, (int, float)):
        yield where, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{where}/{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{where}/{i}")


def _one(folder: Path, ext: str) -> Path:
    files = sorted(folder.glob(f"*.{ext}"))
    assert len(files) == 1, files
    return files[0]


# -- input checks ---------------------------------------------------------------------------

def test_env_counts_parse_sorted_and_distinct():
    assert tp.parse_env_counts("64, 1,16,1") == [1, 16, 64]
    assert tp.parse_env_counts([4, 2]) == [2, 4]
    for bad, named in (("0,abc", ("'0'", "'abc'")), ("1.5", ("'1.5'",)), ("-2", ("'-2'",)), ("4,,8", ("''",))):
        with pytest.raises(ValueError) as e:
            tp.parse_env_counts(bad)
        assert all(n in str(e.value) for n in named), str(e.value)


@pytest.mark.parametrize("value, named", [("0,abc", ["'0'", "'abc'"]), ("16,x2", ["'x2'"]), ("-1", ["'-1'"])])
def test_bad_env_counts_are_a_clear_cli_error(value, named):
    res = CliRunner().invoke(main, ["throughput", "--envs", value, "--params", str(ROOT / "params.yaml")])
    assert res.exit_code != 0
    assert "--envs" in res.output and all(n in res.output for n in named), res.output
    assert "Traceback" not in res.output


@pytest.mark.skipif(any(d.platform == "gpu" for d in jax.devices()), reason="a GPU is present")
def test_no_gpu_is_a_clear_error():
    res = CliRunner().invoke(main, ["throughput", "--devices", "gpu", "--envs", "1",
                                    "--params", str(ROOT / "params.yaml")])
    assert res.exit_code == 1
    assert "no GPU device" in res.output, res.output


def test_minibatches_divide_the_envs_and_split_over_devices():
    assert tp.minibatches_for(1, 8) == 1
    assert tp.minibatches_for(64, 8) == 8
    assert tp.minibatches_for(12, 8) == 6
    assert tp.minibatches_for(16, 8, n_devices=4) == 4
    assert tp.minibatches_for(3, 8, n_devices=2) is None


def test_calibration_scales_the_work_to_the_requested_seconds():
    now = [0.0]
    t = tp.calibrated_times(lambda k: now.__setitem__(0, now[0] + 0.01 * k), seconds=1.0, repeats=3,
                            clock=lambda: now[0])
    assert t["units_per_call"] == 100 and len(t["call_s"]) == 3
    assert t["median_call_s"] == pytest.approx(1.0)


def test_out_of_memory_errors_are_recognised():
    assert tp.is_out_of_memory(jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 8 bytes"))
    assert tp.is_out_of_memory(MemoryError())
    assert not tp.is_out_of_memory(RuntimeError("something else"))
    assert not tp.is_out_of_memory(ValueError("RESOURCE_EXHAUSTED"))


# -- runs -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_tiny_real_run_writes_finite_positive_figures(tiny_params, tmp_path):
    out = tmp_path / "reports"
    res = CliRunner().invoke(main, ["throughput", "--envs", "2", "--seconds", "0.2", "--repeats", "1",
                                    "--registered", str(tmp_path / "no-clips"),
                                    "--out-dir", str(out), "--params", str(tiny_params)])
    assert res.exit_code == 0, res.output
    r = json.loads(_one(out, "json").read_text())
    assert re.fullmatch(rf"[a-z0-9-]+-{r['hardware']['device_count']}x-\d{{8}}T\d{{6}}Z\.json", _one(out, "json").name)
    for key in ("hardware", "versions", "git", "params_hash", "physics", "data", "clips", "paper", "results",
                "settings", "how", "stopped", "largest_envs"):
        assert key in r, key
    assert {"jax", "jaxlib", "mujoco", "mujoco-mjx", "brax", "flax", "python"} <= set(r["versions"])
    assert {"device_kind", "device_count", "cpu_model", "cpu_count", "ram_bytes"} <= set(r["hardware"])
    assert set(r["git"]) == {"commit", "dirty"}
    assert r["data"] == "synthetic" and r["clips"]["synthesised"] and "synthesised" in r["clips"]["source"]
    assert r["physics"]["substeps"] == 2 and r["physics"]["solver"] == "newton"
    assert [(f["envs"], f["env_steps_per_s"], f["gpus"]) for f in r["paper"]["figures"]] == \
        [(2048, 600_000, 1), (4096, 1_200_000, 2)]
    assert r["stopped"] is None and r["largest_envs"] == 2
    (row,) = r["results"]
    assert row["envs"] == 2 and set(tp.MEASUREMENTS) <= set(row)
    for name, key in ((m, tp.RATE_KEY[m]) for m in tp.MEASUREMENTS):
        assert row[name][key] > 0 and row[name]["physics_steps_per_s"] == pytest.approx(2 * row[name][key])
    for name in ("physics", "env", "train"):
        assert row[name]["compile_s"] > 0
    assert row["physics"]["mean_abs_joint_velocity_deg_s"] > 1.0  # the arm moves
    for name in ("physics", "env", "mujoco_c"):
        assert row[name]["finite_worlds"] == row[name]["worlds"] == 2 and row[name]["finite"] is True
    assert r["settings"]["matmul_precision"] == "default" and r["complete"] is True
    assert row["mujoco_c"]["mean_abs_joint_velocity_deg_s"] > 1.0
    numbers = list(_numbers(row))
    assert numbers and all(math.isfinite(v) and v > 0 for where, v in numbers if "reward" not in where), numbers
    assert row["memory"]["max_rss_bytes"] > 0
    with _one(out, "csv").open() as f:
        (line,) = list(csv.DictReader(f))
    assert int(line["envs"]) == 2 and float(line["train_env_steps_per_s"]) == pytest.approx(row["train"]["env_steps_per_s"])
    assert _one(out, "png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "steps/s" in res.output and "wrote" in res.output


def test_out_of_memory_stops_at_the_largest_count_that_fits(tiny_params, tmp_path, monkeypatch):
    calls = []

    def fake(name, key):
        def measure(s, n):
            calls.append((name, n))
            if name == "train" and n >= 64:
                raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate "
                                                 "123456789 bytes.")
            return {key: 100.0 * n, "physics_steps_per_s": 200.0 * n, "compile_s": 0.5}
        return measure

    for name, key in ((m, tp.RATE_KEY[m]) for m in tp.MEASUREMENTS):
        monkeypatch.setattr(tp, f"measure_{name}", fake(name, key))
    out = tmp_path / "reports"
    res = CliRunner().invoke(main, ["throughput", "--envs", "1,16,64,256", "--out-dir", str(out),
                                    "--registered", str(tmp_path / "no-clips"),
                                    "--params", str(tiny_params)])
    assert res.exit_code == 0, res.output
    assert "stopped at 64 envs: out of memory in train" in res.output
    assert "the largest env count that fits: 16" in res.output
    r = json.loads(_one(out, "json").read_text())
    assert [row["envs"] for row in r["results"]] == [1, 16]
    assert r["results"][1]["train"]["env_steps_per_s"] == 1600.0
    assert r["stopped"]["envs"] == 64 and r["stopped"]["measurement"] == "train"
    assert "RESOURCE_EXHAUSTED" in r["stopped"]["error"] and r["largest_envs"] == 16
    assert ("physics", 256) not in calls  # nothing after the failure
    assert len(list(csv.DictReader(_one(out, "csv").open()))) == 2
    assert _one(out, "png").exists()


def test_other_errors_are_not_swallowed(tiny_params, tmp_path, monkeypatch):
    def broken(s, n):
        raise RuntimeError("a real bug")

    monkeypatch.setattr(tp, "measure_physics", broken)
    res = CliRunner().invoke(main, ["throughput", "--envs", "1", "--out-dir", str(tmp_path / "r"),
                                    "--registered", str(tmp_path / "no-clips"),
                                    "--params", str(tiny_params)])
    assert res.exit_code != 0 and isinstance(res.exception, RuntimeError)
    assert not (tmp_path / "r").exists()


def _fake_measures(monkeypatch, calls, fail=None):
    def fake(name, key):
        def measure(s, n):
            calls.append((name, n))
            if fail and fail(name, n):
                raise RuntimeError("a real bug")
            return {key: 100.0 * n, "physics_steps_per_s": 200.0 * n, "compile_s": 0.5}
        return measure

    for name, key in ((m, tp.RATE_KEY[m]) for m in tp.MEASUREMENTS):
        monkeypatch.setattr(tp, f"measure_{name}", fake(name, key))


def test_measure_runs_only_the_named_measurements(tiny_params, tmp_path, monkeypatch):
    calls = []
    _fake_measures(monkeypatch, calls)
    out = tmp_path / "reports"
    res = CliRunner().invoke(main, ["throughput", "--envs", "1,4", "--measure", "train,physics", "--out-dir", str(out),
                                    "--registered", str(tmp_path / "no-clips"), "--params", str(tiny_params)])
    assert res.exit_code == 0, res.output
    assert calls == [("physics", 1), ("train", 1), ("physics", 4), ("train", 4)]   # in the fixed order
    r = json.loads(_one(out, "json").read_text())
    assert r["measurements"] == ["physics", "train"] and r["complete"] is True and r["largest_envs"] == 4
    assert all(set(row) == {"envs", "physics", "train", "memory"} for row in r["results"])
    bad = CliRunner().invoke(main, ["throughput", "--measure", "physics,warp", "--params", str(tiny_params)])
    assert bad.exit_code == 2 and "warp" in bad.output and "mujoco_c" in bad.output


def test_the_time_budget_stops_before_a_measurement_and_keeps_the_rest(monkeypatch):
    calls = []
    _fake_measures(monkeypatch, calls)
    ticks = iter(range(100))
    s = type("S", (), {"n_devices": 1, "devices": jax.devices("cpu")})()
    seen = []
    # the clock advances one second a reading: t0 = 0, then 1, 2, ... before each measurement
    out = tp.run_throughput(s, [1, 2, 4], measures=tp.default_measures(), budget_s=6.0, on_row=seen.append,
                            clock=lambda: float(next(ticks)))
    assert [c[1] for c in calls] == [1, 1, 1, 1, 2]        # 5 measurements started before 6 s
    assert [r["envs"] for r in out["results"]] == [1, 2]
    assert set(out["results"][1]) == {"envs", "physics", "memory"}   # the cut count keeps what it measured
    assert out["stopped"]["reason"] == "time budget" and out["stopped"]["envs"] == 2
    assert out["stopped"]["measurement"] == "env" and out["largest_envs"] == 1 and out["complete"]
    assert [len(x["results"]) for x in seen] == [1, 2] and not any(x["complete"] for x in seen)


def test_a_failure_after_the_first_count_leaves_the_counts_measured_so_far(tiny_params, tmp_path, monkeypatch):
    calls = []
    _fake_measures(monkeypatch, calls, fail=lambda name, n: n == 16 and name == "env")
    out = tmp_path / "reports"
    res = CliRunner().invoke(main, ["throughput", "--envs", "1,16", "--out-dir", str(out),
                                    "--registered", str(tmp_path / "no-clips"), "--params", str(tiny_params)])
    assert res.exit_code != 0 and isinstance(res.exception, RuntimeError)
    r = json.loads(_one(out, "json").read_text())
    assert r["complete"] is False and [row["envs"] for row in r["results"]] == [1]
    assert not list(out.glob("*.tmp*"))


# -- the device check (bench/gpu_check.sh) ----------------------------------------------------

def _gpu_check(args, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--dry-run", "--out-dir", str(tmp_path / "out"),
                           *args], capture_output=True, text=True, env=env, timeout=900)


def test_the_device_check_dry_run_writes_each_part_and_a_summary(tiny_params, tmp_path):
    res = _gpu_check(["--params", str(tiny_params), "--budget-s", "300"], tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = tmp_path / "out"
    (summary_path,) = out.glob("gpu-check-*.json")
    summary = json.loads(summary_path.read_text())
    assert summary["dry_run"] is True and summary["budget_s"] == 300
    assert [p["part"] for p in summary["parts"]] == ["physics", "train", "time_to_target"]
    for p in summary["parts"][:2]:
        assert p["status"] == "done" and p["exit_code"] == 0 and p["complete"] is True and p["envs"] == [2]
        r = json.loads((out / p["report"]).read_text())
        assert r["measurements"] == ["physics"] and r["results"][0]["physics"]["control_steps_per_s"] > 0
        assert 0 < r["budget_s"] <= 300
    ttt = summary["parts"][2]
    assert ttt["status"] == "done" and ttt["report"].startswith("time-to-target-") and ttt["summary"]["n_reached"] == 1
    assert [(r["seed"], r["reached"], r["env_steps"]) for r in ttt["runs"]] == [(0, True, 32)]
    assert "warp" in summary
    assert not list(out.glob(".parts-*")) and (out / summary_path.name.replace(".json", ".log")).exists()


def test_the_device_check_skips_parts_it_has_no_time_for(tiny_params, tmp_path):
    res = _gpu_check(["--params", str(tiny_params), "--budget-s", "5"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    (summary_path,) = (tmp_path / "out").glob("gpu-check-*.json")
    parts = json.loads(summary_path.read_text())["parts"]
    assert [(p["part"], p["status"], p["report"]) for p in parts] == [
        ("physics", "skipped", None), ("train", "skipped", None), ("time_to_target", "skipped", None)]
    assert not list((tmp_path / "out").glob("cpu-*.json"))


def test_the_device_wheels_are_the_locked_versions():
    script = (ROOT / "bench" / "gpu_wheels.sh").read_text()
    names = re.search(r"^NAMES=\((.*)\)$", script, re.M).group(1).split()
    lock = {re.split(r"[=<>]", ln)[0].lower().replace("_", "-") for ln in (ROOT / "requirements.lock").read_text().splitlines()
            if "==" in ln}
    assert {"mujoco", "mujoco-core", "mujoco-mjx", "brax", "pydantic"} <= set(names)
    assert all(n.lower().replace("_", "-") in lock for n in names), names


# -- time to target (bench/time_to_target.py) ------------------------------------------------

def _ttt_settings(tmp_path, **kw):
    s = {"weight": 0.1, "target": "fixed", "target_joint_error_deg": 1000.0, "eval_every_iterations": 1,
         "max_env_steps": 96, "seeds": [0], **kw}
    path = tmp_path / "ttt.yaml"
    path.write_text(yaml.safe_dump(s))
    return path


def test_time_to_target_settings_are_checked(tmp_path):
    from bench.time_to_target import SETTINGS, load_settings

    assert load_settings(SETTINGS).target == "mean_trajectory_baseline"     # the committed file is valid
    assert load_settings(_ttt_settings(tmp_path), seeds=[3, 4]).seeds == [3, 4]
    with pytest.raises(tp.ParamsError, match=r"ttt.yaml: .*target_joint_error_deg is the target"):
        load_settings(_ttt_settings(tmp_path, target_joint_error_deg=None))
    with pytest.raises(tp.ParamsError, match=r"ttt.yaml: eval_every_iterations"):
        load_settings(_ttt_settings(tmp_path, eval_every_iterations=0))
    res = CliRunner().invoke(main, ["time-to-target", "--seeds", "1,1"])
    assert res.exit_code == 2 and "distinct" in res.output


def test_held_out_error_is_the_rms_over_frames_after_the_first():
    from bench.time_to_target import held_out_error

    ref = np.zeros((2, 4, 3))
    rec = np.full((2, 3, 3), np.radians(2.0))
    rec[1] = np.radians(-2.0)
    assert held_out_error(rec, ref) == pytest.approx(2.0)


def test_the_mean_trajectory_target_is_that_baselines_held_out_error(tiny_params, tmp_path):
    from bench.time_to_target import build_problem, load_settings

    pb = build_problem(yaml.safe_load(tiny_params.read_text()),
                       load_settings(_ttt_settings(tmp_path, target="mean_trajectory_baseline",
                                                   target_joint_error_deg=None)), tmp_path / "no-clips")
    held = np.zeros(len(pb.clips.clip_names), bool)
    held[pb.held_idx] = True
    assert 0 < held.sum() < held.size and "synthesised" in pb.clips_source
    q = pb.clips.qpos
    mean = q[~held].mean(axis=0)
    by_hand = np.sqrt(np.mean(np.degrees(mean[None, 1:] - q[held][:, 1:]) ** 2))
    assert pb.target_deg == pytest.approx(by_hand, rel=1e-9)


def test_a_tiny_time_to_target_run_reaches_a_loose_target_at_its_first_evaluation(tiny_params, tmp_path):
    out = tmp_path / "reports"
    res = CliRunner().invoke(main, ["time-to-target", "--settings", str(_ttt_settings(tmp_path)), "--devices", "cpu",
                                    "--registered", str(tmp_path / "no-clips"), "--out-dir", str(out),
                                    "--params", str(tiny_params)])
    assert res.exit_code == 0, res.output
    (path,) = out.glob("time-to-target-*.json")
    r = json.loads(path.read_text())
    (run,) = r["runs"]
    assert run["reached"] and run["stopped"] == "reached" and run["iterations"] == 1
    assert run["env_steps"] == 32 and run["compile_seconds"] > 0 and run["train_seconds"] > 0
    assert 0 < run["final_held_out_joint_error_deg"] < 1000 and run["curve"][0]["finite_worlds"] == r["n_held_out"]
    assert r["complete"] and r["summary"]["n_reached"] == 1 and r["summary"]["env_steps"]["median"] == 32
    assert r["data"] == "synthetic" and r["target"]["held_out_joint_error_deg"] == 1000.0
    assert {"hardware", "versions", "git", "matmul_precision"} <= set(r) and "1 of 1 seeds" in res.output


def test_the_time_budget_keeps_the_seeds_already_run(monkeypatch):
    from bench import time_to_target as ttt

    settings = ttt.Settings(weight=0.1, target="fixed", target_joint_error_deg=5.0, eval_every_iterations=1,
                            max_env_steps=10, seeds=[0, 1, 2])
    clips = type("C", (), {"label": "synthetic", "clip_names": ["a", "b"]})()
    monkeypatch.setattr(ttt, "build_problem", lambda *a: ttt.Problem(None, None, clips, None, None, np.array([1]),
                                                                     5.0, "fixed", "synthetic", "cpu"))
    now = [0.0]

    def fake_seed(pb, seed, settings, deadline, clock, log):
        now[0] += 40.0                                   # each seed takes 40 s of the fake clock
        return {"seed": seed, "reached": True, "stopped": "reached", "env_steps": 10 * (seed + 1),
                "train_seconds": 30.0 + seed, "compile_seconds": 10.0}

    monkeypatch.setattr(ttt, "run_seed", fake_seed)
    partial = []
    rep = ttt.run_time_to_target({}, settings, None, budget_s=70.0, on_seed=partial.append, clock=lambda: now[0])
    assert [r["seed"] for r in rep["runs"]] == [0, 1] and not rep["complete"]       # seed 2 would start at 80 s
    assert rep["summary"]["train_seconds"] == {"median": 30.5, "min": 30.0, "max": 31.0}
    assert [len(p["runs"]) for p in partial] == [1, 2]


# -- MJX backends (--impl) --------------------------------------------------------------------

def test_impl_warp_without_warp_names_the_extra(tiny_params, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "mujoco_warp", None)   # as if not installed
    out = tmp_path / "r"
    res = CliRunner().invoke(main, ["throughput", "--envs", "1", "--impl", "jax,warp", "--out-dir", str(out),
                                    "--registered", str(tmp_path / "no-clips"), "--params", str(tiny_params)])
    assert res.exit_code == 1 and "track.physics.impl" in res.output and ".[warp]" in res.output, res.output
    assert not out.exists()
    res = CliRunner().invoke(main, ["throughput", "--impl", "cuda", "--params", str(tiny_params)])
    assert res.exit_code == 2 and "choose from jax, warp" in res.output


def test_both_backends_side_by_side_in_one_report(tiny_params, tmp_path, monkeypatch):
    """With Warp usable, (a)-(c) run once per backend into one report: jax under the usual names, warp as
    <name>_warp, with CSV columns and table cells of their own."""
    import mimic_core.track.env as env_mod

    monkeypatch.setattr(env_mod, "warp_status", lambda: (True, "warp-lang (faked) on cpu"))
    calls = []

    def fake(name, key):
        def measure(s, n, impl="jax"):
            calls.append((name, impl, n))
            return {key: (10.0 if impl == "warp" else 1.0) * n, "physics_steps_per_s": 2.0 * n, "compile_s": 0.5}
        return measure

    for name in tp.MEASUREMENTS:
        monkeypatch.setattr(tp, f"measure_{name}", fake(name, tp.RATE_KEY[name]))
    out = tmp_path / "r"
    res = CliRunner().invoke(main, ["throughput", "--envs", "2", "--impl", "warp,jax", "--out-dir", str(out),
                                    "--registered", str(tmp_path / "no-clips"), "--params", str(tiny_params)])
    assert res.exit_code == 0, res.output
    r = json.loads(_one(out, "json").read_text())
    assert r["impls"] == ["jax", "warp"] and r["backends"]["warp"]["available"] is True
    (row,) = r["results"]
    assert {"physics", "env", "train", "mujoco_c", "physics_warp", "env_warp", "train_warp"} <= set(row)
    assert row["train_warp"]["env_steps_per_s"] == 20.0 and row["train"]["env_steps_per_s"] == 2.0
    assert sorted(c for c in calls if c[0] == "mujoco_c") == [("mujoco_c", "jax", 2)]   # MuJoCo C once
    with _one(out, "csv").open() as f:
        (line,) = list(csv.DictReader(f))
    assert float(line["train_warp_env_steps_per_s"]) == 20.0
    assert "(c) train warp" in res.output
