"""bench.compare (flatten, rules, verdicts) and `mimic-bench compare` on files and git revisions."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.compare import (RULES_FILE, CompareError, Rule, check_kinds, compare_diff, diff_flat, flatten,
                           load_metrics_file, load_rules, parse_rules, rule_for, verdict)
from mimic_core.errors import DataError, ParamsError
ROOT = Path(__file__).resolve().parents[1]
RULES = load_rules()
LOWER = Rule(pattern="*", better="lower", rel_tol=0.05, abs_tol=0.01)

METRICS = {"data": "synthetic", "n_clips": 46,
           "keypoint_error_mm": {"mean": 0.27, "p95": 0.59, "per_clip": {"trial01": 0.27, "trial02": 0.28}},
           "truth": {"joint_rmse_deg": 6.1, "joint_rmse_deg_cramer_rao_bound": {"all": 5.07}}}


def _write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


def _text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _with(obj: dict, dotted: str, value) -> dict:
    """A deep copy of obj with one dotted key set."""
    obj = json.loads(json.dumps(obj))
    *parents, last = dotted.split(".")
    node = obj
    for k in parents:
        node = node[k]
    node[last] = value
    return obj


def _cli(args):
    return CliRunner().invoke(main, ["compare", *args, "--rules", str(RULES_FILE)])


# ---------------------------------------------------------------- flatten

def test_flatten_joins_nested_keys_and_drops_lists_and_nulls():
    flat = flatten({"a": {"b": 1, "c": {"d": 2.5}}, "s": "x", "l": [1, 2], "n": None, "e": {}, "t": True})
    assert flat == {"a.b": 1, "a.c.d": 2.5, "s": "x", "t": True}


@pytest.mark.parametrize("name", ["prepare.json", "registration.json"])
def test_flatten_matches_dvc(name):
    """Two files compare exactly as dvc compares revisions: the same keys and values."""
    from dvc.repo.metrics.show import _extract_metrics
    from dvc.utils.flatten import flatten as dvc_flatten

    obj = json.loads((ROOT / "reports/metrics" / name).read_text())
    assert flatten(obj) == dvc_flatten(_extract_metrics(obj, name))


def test_load_metrics_file_rejects_other_shapes(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_metrics_file(tmp_path / "none.json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_metrics_file(_text(tmp_path / "bad.json", "{nope"))
    with pytest.raises(DataError, match="JSON object .* got a list"):
        load_metrics_file(_write(tmp_path / "list.json", [1, 2]))
    with pytest.raises(DataError, match="no numbers"):
        load_metrics_file(_write(tmp_path / "strings.json", {"data": "synthetic", "names": [1]}))


# ---------------------------------------------------------------- rules and verdicts

def test_rules_first_match_wins_and_default_is_informational():
    rules = [Rule(pattern="*per_clip*", better="none"), Rule(pattern="*error*", better="lower")]
    assert rule_for("keypoint_error_mm.per_clip.trial01", rules).better == "none"
    assert rule_for("keypoint_error_mm.mean", rules).better == "lower"
    assert rule_for("n_clips", rules).better == "none"


@pytest.mark.parametrize("key, better", [
    ("keypoint_error_mm.mean", "lower"), ("keypoint_error_mm.p95", "lower"),
    ("keypoint_error_mm.per_keypoint.Wrist", "lower"), ("keypoint_error_mm.per_clip.trial01", "none"),
    ("truth.joint_rmse_deg", "lower"), ("truth.joint_rmse_deg_cramer_rao_bound.all", "none"),
    ("truth.offset_error_mm_per_keypoint.Elbow", "lower"), ("emg.envelope_vs_true_activation_r.biceps", "higher"),
    ("emg.scale_uv.biceps", "none"), ("keypoints.missing_fraction", "none"), ("n_clips", "none"), ("data", "none"),
    # metrics still to come: tracking.json, edm.json, throughput
    ("joint_error_deg.mean", "lower"), ("joint_reward", "higher"), ("action_hf_power", "none"), ("energy", "none"),
    ("activation_mae", "lower"), ("rho", "higher"), ("steps_per_s", "higher"), ("env_steps_per_s", "higher"),
    ("simplex.rmse", "lower"), ("biceps_r", "higher"),
    # tracking.json: a policy's held-out and truth errors gate; the baselines are data, not a policy
    ("0.1.held_out.joint_error_deg", "lower"), ("0.1.held_out.truth.keypoint_error_mm.mean", "lower"),
    ("baselines.mean_trajectory.held_out.joint_error_deg", "none"),
    ("baselines.open_loop.train.truth.joint_error_deg_per_joint.elbow", "none"),
])
def test_params_rules(key, better):
    assert rule_for(key, RULES).better == better


def test_every_current_metric_with_a_direction_has_a_tolerance():
    for name in ("prepare.json", "registration.json"):
        for key in flatten(json.loads((ROOT / "reports/metrics" / name).read_text())):
            rule = rule_for(key, RULES)
            assert rule.better == "none" or rule.rel_tol > 0 or rule.abs_tol > 0, key


@pytest.mark.parametrize("cfg, match", [
    ({"rules": [{"pattern": "*", "better": "smaller"}]}, "better"),
    ({"rules": [{"pattern": "*", "better": "lower", "rel_tol": -1}]}, "rel_tol"),
    ({"rules": [{"better": "lower"}]}, "pattern"),
    ({"rules": [{"pattern": "*", "tol": 1}]}, r"'rules\[0\].tol': unknown key"),
    ({"rules": [{"pattern": "*", "rel_tols": 1}]}, "did you mean 'rules\\[0\\].rel_tol'"),
    ({"rules": "*"}, "list"),
    ({"rules": []}, "at least 1"),
    ([], "object|dictionary|model"),
])
def test_parse_rules_rejects_bad_entries(cfg, match):
    with pytest.raises(ParamsError, match=match):
        parse_rules(cfg)


def test_a_bad_rules_file_is_named(tmp_path):
    bad = _text(tmp_path / "rules.yaml", "rules:\n  - {pattern: '*', better: smaller}\n")
    with pytest.raises(ParamsError, match=r"rules.yaml: 'rules\[0\].better'"):
        load_rules(bad)
    res = _cli([str(bad), str(bad), "--rules", str(bad)])
    assert res.exit_code == 1 and "rules.yaml" in res.output


def test_verdicts():
    # tolerance max(0.01, 0.05 * 0.27) = 0.0135
    assert verdict(0.27, 0.30, LOWER) == "REGRESSION"
    assert verdict(0.27, 0.28, LOWER) == "ok"          # worse, within tolerance
    assert verdict(0.27, 0.26, LOWER) == "ok"          # better, within tolerance
    assert verdict(0.27, 0.20, LOWER) == "improved"
    assert verdict(0.27, 0.27, LOWER) == "ok"
    assert verdict(0.001, 0.0105, LOWER) == "ok"       # the absolute floor: 0.0095 < 0.01
    higher = Rule(pattern="*", better="higher", abs_tol=0.01)
    assert verdict(0.97, 0.90, higher) == "REGRESSION"
    assert verdict(0.90, 0.97, higher) == "improved"
    assert verdict(0.97, 0.965, higher) == "ok"
    none = Rule(pattern="*", better="none")
    assert verdict(0.27, 1e6, none) == "info"          # better: none is never a regression
    assert verdict(0.27, -1e6, none) == "info"
    assert verdict(None, 0.3, LOWER) == "new"
    assert verdict("synthetic", "real", LOWER) == "info"
    assert verdict(0.27, float("nan"), LOWER) == "REGRESSION"


@pytest.mark.parametrize("better", ["lower", "higher", "none"])
def test_the_gate_cannot_be_emptied(better):
    """Gone, another type, or not finite: a regression under every rule, unless the rule says may_go."""
    rule = Rule(pattern="*", better=better)
    assert verdict(0.3, None, rule) == "REGRESSION"            # deleted, null or a list (flatten drops them)
    assert verdict(0.3, "0.3", rule) == "REGRESSION"           # a number that became a string
    assert verdict(0.3, True, rule) == "REGRESSION"            # ... or a boolean
    assert verdict("synthetic", 1.0, rule) == "REGRESSION"
    assert verdict(0.3, float("nan"), rule) == "REGRESSION"
    assert verdict(0.3, float("inf"), rule) == "REGRESSION"
    may_go = Rule(pattern="*", better=better, may_go=True)
    assert verdict(0.3, None, may_go) == "removed"
    assert verdict(0.3, "0.3", may_go) == "info"


def test_only_per_clip_metrics_may_go_by_default():
    assert rule_for("keypoint_error_mm.per_clip.trial01", RULES).may_go
    assert [r.pattern for r in RULES if r.may_go] == ["*per_clip*"]


@pytest.mark.parametrize("edit", [
    lambda m: {k: v for k, v in m.items() if k != "n_clips"},                          # deleted
    lambda m: _with(m, "n_clips", None),                                                # null
    lambda m: _with(m, "truth.joint_rmse_deg", [6.1]),                                  # a list
    lambda m: _with(m, "truth.joint_rmse_deg", "6.1"),                                  # a string
    lambda m: _with(m, "truth", {}),                                                    # a whole section
])
def test_cli_files_a_metric_that_goes_is_a_regression(tmp_path, old_file, edit):
    new = _write(tmp_path / "new.json", edit(METRICS))
    res = _cli([str(old_file), str(new)])
    assert res.exit_code == 1, res.output
    assert "REGRESSION" in res.output


def test_cli_files_a_clip_that_goes_is_not(tmp_path, old_file):
    new = METRICS | {"keypoint_error_mm": {"mean": 0.27, "p95": 0.59, "per_clip": {"trial01": 0.27}}}
    res = _cli([str(old_file), str(_write(tmp_path / "new.json", new))])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0].split()[-1] == "verdict"
    assert ":keypoint_error_mm.per_clip.trial02 " in res.output and "1 removed" in res.output


def test_compare_diff_rows():
    rows = compare_diff({"m.json": diff_flat(flatten(METRICS), flatten(_with(METRICS, "keypoint_error_mm.mean", 0.5)))},
                        RULES)
    by_key = {r.key: r for r in rows}
    assert len(rows) == len(flatten(METRICS))
    assert by_key["keypoint_error_mm.mean"].verdict == "REGRESSION"
    assert by_key["keypoint_error_mm.mean"].to_dict()["delta"] == pytest.approx(0.23)
    assert by_key["keypoint_error_mm.mean"].metric == "m.json:keypoint_error_mm.mean"
    assert {r.verdict for k, r in by_key.items() if k != "keypoint_error_mm.mean"} == {"ok"}
    assert [r.key for r in rows if r.changed] == ["keypoint_error_mm.mean"]


def test_check_kinds(tmp_path):
    f = _write(tmp_path / "a.json", METRICS)
    assert check_kinds(None, None) == "revisions"
    assert check_kinds("HEAD~1", "HEAD") == "revisions"
    assert check_kinds(str(f), str(tmp_path / "missing.json")) == "files"
    with pytest.raises(CompareError, match="file .* with a git revision"):
        check_kinds(str(f), "HEAD")
    with pytest.raises(CompareError, match="file .* with a git revision"):
        check_kinds("HEAD", str(f))
    with pytest.raises(CompareError, match="needs two"):
        check_kinds(str(f), None)


# ---------------------------------------------------------------- CLI on two files

@pytest.fixture
def old_file(tmp_path):
    return _write(tmp_path / "old.json", METRICS)


@pytest.mark.parametrize("key, value, code, word", [
    ("keypoint_error_mm.mean", 0.35, 1, "REGRESSION"),      # +30%, beyond 5%
    ("keypoint_error_mm.mean", 0.275, 0, "ok"),             # within tolerance
    ("keypoint_error_mm.mean", 0.20, 0, "improved"),
    ("keypoint_error_mm.per_clip.trial01", 9.0, 0, "info"),  # per-clip: informational
    ("truth.joint_rmse_deg_cramer_rao_bound.all", 50.0, 0, "info"),
    ("n_clips", 30, 0, "info"),
])
def test_cli_files(tmp_path, old_file, key, value, code, word):
    new = _write(tmp_path / "new.json", _with(METRICS, key, value))
    res = _cli([str(old_file), str(new)])
    assert res.exit_code == code, res.output
    line = next(ln for ln in res.output.splitlines() if f":{key} " in ln)
    assert line.split()[-1] == word
    assert f"1 of {len(flatten(METRICS))} metrics changed" in res.output.splitlines()[-1]


def test_cli_files_json_and_all(tmp_path, old_file):
    new = _write(tmp_path / "new.json", _with(_with(METRICS, "keypoint_error_mm.p95", 0.9), "extra", 1.0))
    res = _cli([str(old_file), str(new), "--json"])
    assert res.exit_code == 1
    rows = json.loads(res.output)
    assert {r["key"]: r["verdict"] for r in rows} == {"keypoint_error_mm.p95": "REGRESSION", "extra": "new"}
    p95 = next(r for r in rows if r["key"] == "keypoint_error_mm.p95")
    assert p95["old"] == 0.59 and p95["new"] == 0.9 and p95["delta"] == pytest.approx(0.31)
    assert p95["better"] == "lower" and p95["metric"] == f"{new}:keypoint_error_mm.p95"
    every = json.loads(_cli([str(old_file), str(new), "--json", "--all"]).output)
    assert len(every) == len(flatten(METRICS)) + 1
    text = _cli([str(old_file), str(new), "--all"]).output
    assert ":n_clips " in text and ":keypoint_error_mm.mean " in text
    assert ":n_clips " not in _cli([str(old_file), str(new)]).output


def test_cli_files_unchanged(old_file):
    res = _cli([str(old_file), str(old_file)])
    assert res.exit_code == 0
    assert res.output.strip().endswith(f"no metric changed ({len(flatten(METRICS))} compared)")


@pytest.mark.parametrize("make_new, match", [
    (lambda p: p / "missing.json", "missing.json: metrics file not found"),
    (lambda p: _write(p / "list.json", [0.1, 0.2]), "expected a JSON object of metrics"),
    (lambda p: _text(p / "bad.json", "{0.1"), "not valid JSON"),
    (lambda p: "HEAD", "cannot compare a metrics file"),
])
def test_cli_bad_input_is_one_clear_line(tmp_path, old_file, make_new, match):
    res = _cli([str(old_file), str(make_new(tmp_path))])
    assert res.exit_code == 1
    assert match in res.output
    assert res.output.startswith("error: ") and len(res.output.strip().splitlines()) == 1
    assert "Traceback" not in res.output


# ---------------------------------------------------------------- CLI on git revisions

def _git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    subprocess.run(["git", "-c", "commit.gpgsign=false", *args], cwd=repo, env=env, check=True,
                   capture_output=True)


@pytest.fixture
def dvc_repo(tmp_path, monkeypatch):
    """A git + DVC repository whose dvc.yaml declares one metrics file, committed once."""
    from dvc.repo import Repo

    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    Repo.init(str(repo)).close()
    (repo / "dvc.yaml").write_text("metrics:\n  - reports/metrics/tracking.json\n")
    (repo / "reports/metrics").mkdir(parents=True)
    _write(repo / "reports/metrics/tracking.json", {"keypoint_error_mm": {"mean": 0.5}, "joint_reward": 0.8,
                                                   "energy": 3.0})
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "first")
    monkeypatch.chdir(repo)
    return repo


def test_cli_revisions(dvc_repo):
    metrics = dvc_repo / "reports/metrics/tracking.json"
    assert _cli([]).exit_code == 0                                   # workspace = HEAD
    _write(metrics, {"keypoint_error_mm": {"mean": 0.7}, "joint_reward": 0.8, "energy": 9.0})
    for args in ([], ["HEAD"], ["HEAD", "workspace"]):               # HEAD against the workspace
        res = _cli(args)
        assert res.exit_code == 1, res.output
        assert "reports/metrics/tracking.json:keypoint_error_mm.mean" in res.output
        assert "REGRESSION" in res.output and "-> workspace" in res.output
    _git(dvc_repo, "commit", "-q", "-am", "worse")
    res = _cli(["HEAD~1", "HEAD", "--json"])
    assert res.exit_code == 1, res.output
    assert {r["key"]: r["verdict"] for r in json.loads(res.output)} == {"keypoint_error_mm.mean": "REGRESSION",
                                                                       "energy": "info"}
    res = _cli(["HEAD", "HEAD~1"])                                   # the other way round: an improvement
    assert res.exit_code == 0 and "improved" in res.output
    assert _cli(["HEAD~1", "HEAD~1"]).exit_code == 0


def test_cli_revisions_new_file_and_bad_input(dvc_repo):
    (dvc_repo / "dvc.yaml").write_text("metrics:\n  - reports/metrics/tracking.json\n  - reports/metrics/edm.json\n"
                                       "  - reports/metrics/throughput.json\n")
    _write(dvc_repo / "reports/metrics/edm.json", {"rho": 0.9})
    res = _cli([])
    assert res.exit_code == 0, res.output
    assert "reports/metrics/edm.json:rho" in res.output and "new" in res.output
    assert "note: reports/metrics/throughput.json: declared in dvc.yaml but absent at workspace" in res.output
    for args, match in ((["nosuchrev"], "nosuchrev: unknown git revision"),
                        (["HEAD~5", "HEAD"], "HEAD~5: unknown git revision")):
        res = _cli(args)
        assert res.exit_code == 1 and res.output.startswith("error: ") and match in res.output, res.output
    (dvc_repo / "reports/metrics/tracking.json").write_text("{broken")
    res = _cli([])
    assert res.exit_code == 1 and "reports/metrics/tracking.json at workspace: cannot read metrics" in res.output


def test_cli_revisions_a_deleted_or_emptied_metrics_file_is_a_regression(dvc_repo):
    metrics = dvc_repo / "reports/metrics/tracking.json"
    metrics.unlink()
    res = _cli([])
    assert res.exit_code == 1, res.output
    assert "declared in dvc.yaml but absent at workspace" in res.output
    assert "3 REGRESSION" in res.output.splitlines()[-1]
    _write(metrics, {})
    assert _cli([]).exit_code == 1
    (dvc_repo / "dvc.yaml").write_text("stages: {}\n")              # undeclared: its metrics are gone too
    _write(metrics, {"keypoint_error_mm": {"mean": 0.5}, "joint_reward": 0.8, "energy": 3.0})
    assert _cli([]).exit_code == 1


def test_cli_revisions_outside_git(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    res = _cli(["HEAD~1", "HEAD"])
    assert res.exit_code == 1 and "not inside a git repository" in res.output


def test_cli_revisions_git_without_dvc(tmp_path, monkeypatch):
    _git(tmp_path, "init", "-q")
    _write(tmp_path / "m.json", METRICS)
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-q", "-m", "first")
    monkeypatch.chdir(tmp_path)
    res = _cli(["HEAD", "HEAD"])
    assert res.exit_code == 1 and "not a DVC repository" in res.output, res.output
