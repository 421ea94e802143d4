"""`mimic-bench report`: the paper's figures against minimal metrics files of the pipeline's shapes."""
from __future__ import annotations

import copy
import csv
import json
import re
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bench.cli import main
from mimic_core.errors import DataError, ParamsError
from bench.report import FIGURES_FILE, NOT_RUN, PLOTS, Figure, Sources, convergence, load_figures, run_report
from helpers import stage_argv, stage_paths
from test_analysis import PARAMS, START, write_emg, write_rollout

ANALYSES = ["sim_biceps_from_joints", "sim_triceps_from_joints", "emg_triceps_from_joints_actions",
            "emg_biceps_from_joints_actions"]
WEIGHTS = ["0", "0.1"]


def params() -> dict:
    p = copy.deepcopy(PARAMS)
    p["prepare"]["clip"]["start_frame"] = START
    return p


def dump(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def registration(data: str, mean: float) -> dict:
    return {"data": data, "n_clips": 3,
            "keypoint_error_mm": {"mean": mean, "median": 0.9 * mean, "p95": 2 * mean, "per_clip": {"a": mean},
                                  "per_keypoint": {"Shoulder": 1.5 * mean, "Elbow": mean, "Wrist": 0.5 * mean}},
            **({"truth": {"joint_rmse_deg": 6.1, "offset_error_mm": 0.23,
                          "joint_rmse_deg_cramer_rao_bound": {"all": 5.07}}} if data == "synthetic" else {})}


def tracking_part(mean: float, n: int, truth: bool) -> dict:
    e = {"keypoint_error_mm": {"mean": mean, "median": mean, "p95": 2 * mean,
                               "per_keypoint": {"Shoulder": 0.0, "Elbow": mean, "Wrist": mean},
                               "scored_keypoints": ["Elbow", "Wrist"]},
         "joint_error_deg": 4.0, "joint_error_deg_per_joint": {"sh_elv": 6.0, "elbow": 2.0},
         "joint_reward": 3.0, "action_hf_power": 0.1, "energy": 1e-3, "n_clips": n}
    if truth:
        e["truth"] = {"keypoint_error_mm": {"mean": mean + 0.1}, "joint_error_deg": 3.0,
                      "joint_error_deg_per_joint": {"sh_elv": 5.0, "elbow": 1.0}}
        e["activation_mae"] = 0.05
    return e


def tracking_entry(data: str, mean: float) -> dict:
    truth = data == "synthetic"
    return {"data": data, "n_clips": 16, "env_steps_trained": 1000, "trained_on": "synthetic",
            "held_out_clips": ["c1", "c2", "c3"], "train": tracking_part(mean / 2, 13, truth),
            "held_out": tracking_part(mean, 3, truth)}


def baselines(data: str) -> dict:
    truth = data == "synthetic"
    mean_traj = {p: {**tracking_part(2.0, n, truth), "joint_error_deg_per_joint": {"sh_elv": 5.5, "elbow": 9.0}}
                 for p, n in (("train", 13), ("held_out", 3))}
    if truth:
        for m in mean_traj.values():
            m["truth"]["joint_error_deg_per_joint"] = {"sh_elv": 4.5, "elbow": 8.0}
    out = {"mean_trajectory": mean_traj}
    if truth:
        out["reference"] = {p: {"n_clips": n, "truth": {"joint_error_deg": 3.8, "keypoint_error_mm": {"mean": 0.2},
                                                        "joint_error_deg_per_joint": {"sh_elv": 4.0, "elbow": 2.0}}}
                            for p, n in (("train", 13), ("held_out", 3))}
    return out


def edm_doc(src: Sources | None = None) -> dict:
    """An edm.json; with `src`, its EMG MAE as the edm stage computes it from src's EMG and rollouts."""
    doc = {a: {w: {"rho": 0.8, "mae": 0.1, "surrogate_mean": 0.01, "surrogate_p95": 0.1, "p_value": 0.01, "n": 100}
               for w in WEIGHTS} for a in ANALYSES}
    doc["emg_biceps_from_joints_actions"]["0.1"]["rho"] = 0.5          # 0.328 +- 0.05: misses, above
    doc["sim_triceps_from_joints"]["0"] = {"rho": None, "mae": None, "surrogate_mean": None, "surrogate_p95": None,
                                           "p_value": None, "n": 100, "note": "rho undefined: the target is constant"}
    doc = {**doc, "data": "synthetic", "data_sources": {"rollouts": "synthetic", "emg": "synthetic"},
           "settings": {"tau": -1, "Tp": 5, "prepare_clip_start_frame": START}}
    if src is not None:
        from mimic_core.edm.emg_fit import emg_epochs, emg_mae

        epochs = emg_epochs(src.emg, src.rollouts_dir, PARAMS["model"]["emg_muscles"], START)
        doc["emg_mae"], doc["emg_mae_muscles"] = emg_mae(epochs), epochs["muscles"]
    return doc


def latents_doc() -> dict:
    pcs = lambda a, b, c: {"pc1": a, "pc2": b, "pc3": c, "n_samples": 100, "n_features": 4}   # noqa: E731
    return {w: {"latent": pcs(0.445, 0.325, 0.205), "decoder_layer_0": pcs(0.3, 0.2, 0.1),
                "decoder_layer_1": pcs(0.3, 0.2, 0.1), "decoder_layer_2": pcs(0.40, 0.16, 0.065)}
            for w in WEIGHTS} | {"data": "synthetic"}


def throughput_doc(created: str, rate: float) -> dict:
    row = lambda n, r: {"envs": n, "physics": {"control_steps_per_s": 3 * r}, "env": {"env_steps_per_s": 2 * r},   # noqa: E731
                        "train": {"env_steps_per_s": r}, "mujoco_c": {"control_steps_per_s": r / 2}}
    return {"benchmark": "throughput", "created_utc": created, "data": "synthetic",
            "hardware": {"device_kind": "cpu", "device_count": 1},
            "results": [row(16, rate / 10), row(256, rate / 2), row(2048, rate)]}


def write_training(path: Path, n: int = 60) -> None:
    """Joint error falling from 30 deg to 5 deg, reached (within 1 deg) near iteration 40, with small noise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    it = np.arange(1, n + 1)
    err = 5 + 25 * np.exp(-it / 8.0) + 0.05 * np.sin(it)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["iteration", "env_steps", "seconds", "steps_per_s", "loss", "reward_joint", "joint_error_deg"])
        for i, e in zip(it, err):
            w.writerow([i, 1000 * i, 0.1 * i, 1e4, 0.5, 1.0, repr(float(e))])


def sources_under(root: Path) -> Sources:
    """The report's inputs as dvc.yaml lays them out, under `root`."""
    p = stage_paths("report", root)
    return Sources(**{f.name: p[f.name] for f in fields(Sources)})


def write_all(root: Path) -> Sources:
    src = sources_under(root)
    dump(src.registration, registration("synthetic", 0.27))
    dump(src.registration_real, registration("real", 0.60))                 # 0.60 > 0.56: misses
    dump(src.tracking, {"0": tracking_entry("synthetic", 1.3), "0.1": tracking_entry("synthetic", 0.4),
                        "baselines": baselines("synthetic")})
    dump(src.tracking_real, {"0.1": tracking_entry("real", 0.8), "baselines": baselines("real")})
    dump(src.latents, latents_doc())
    dump(src.throughput_dir / "cpu-1x-20250101T000000Z.json", throughput_doc("2025-01-01T00:00:00+00:00", 5e5))
    dump(src.throughput_dir / "cpu-1x-20250102T000000Z.json", throughput_doc("2025-01-02T00:00:00+00:00", 7e5))
    for w in WEIGHTS:
        write_training(src.training_dir / f"{w}.csv")
    src.rollouts_dir.mkdir(parents=True)
    ro = write_rollout(src.rollouts_dir / "0.1.h5", seed=1)
    write_rollout(src.rollouts_dir / "0.h5", seed=2)
    write_emg(src.emg, ro)
    dump(src.edm, edm_doc(src))
    return src


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    src = write_all(root)
    out = run_report(params(), src, root / "reports" / "summary.md", root / "reports" / "plots")
    return root, src, out


def rows_of(out, section: str, metric: str | None = None, weight: str | None = None) -> list:
    return [r for r in out["rows"] if r.section.startswith(section) and (metric is None or r.metric == metric)
            and (weight is None or r.weight == weight)]


def test_every_figure_has_a_row_with_its_data(full):
    _, _, out = full
    reg = rows_of(out, "Registration", "keypoint error mean")
    assert [(r.data, r.paper, r.value, r.meets) for r in reg] == [("synthetic twin", "0.56", "0.27", "yes"),
                                                                  ("real clips", "0.56", "0.60", "no: 0.04 above")]
    assert len(rows_of(out, "Registration")) == 10                 # mean, median, 3 keypoints; twin and real
    trk = rows_of(out, "Tracking")
    assert [(r.data, r.weight, r.value, r.meets) for r in trk] == [
        ("synthetic twin", "0", "1.30", "no: 0.30 above"), ("synthetic twin", "0.1", "0.40", "yes"),
        ("real clips", "0.1", "0.80", "yes")]
    assert all(r.paper == "< 1" for r in trk)
    rho = {r.metric: r for r in rows_of(out, "Simplex", weight="0.1")}
    assert set(rho) == {*ANALYSES, *(f"{a}, shuffled" for a in ANALYSES)}
    assert rho["sim_biceps_from_joints"].meets == "yes" and rho["sim_biceps_from_joints"].paper == "0.802"
    assert rho["emg_biceps_from_joints_actions"].meets == "no: 0.122 above"
    assert rho["emg_triceps_from_joints_actions"].meets == "no: 0.050 above"
    assert rho["sim_biceps_from_joints, shuffled"].meets == "yes"
    pca = {r.metric: (r.value, r.meets) for r in rows_of(out, "PCA")}
    assert pca["latent PC1"] == ("44.5", "yes") and pca["last decoder layer PC2"] == ("16.0", "yes")
    assert pca["last decoder layer PC1"] == ("40.0", "no: 10.0 below")     # 55 +- 5
    thr = rows_of(out, "Training throughput")
    assert thr[0].value == "700,000" and thr[0].meets == "yes"           # the newest report, at 2,048 envs
    assert thr[1].value == "not measured" and "envs measured: 16, 256, 2,048" in thr[1].note
    conv = rows_of(out, "Convergence")
    assert [r.weight for r in conv] == WEIGHTS and all(r.meets == "yes" for r in conv)
    emg = rows_of(out, "EMG")
    assert [r.metric for r in emg] == ["triceps", "biceps"] and all(r.weight == "0.1" for r in emg)
    assert all(re.fullmatch(r"\d\.\d{4}", r.value) for r in emg)
    assert not [r for r in out["rows"] if r.meets == NOT_RUN]


def test_summary_table_plots_and_no_nan(full):
    root, _, out = full
    text = (root / "reports" / "summary.md").read_text()
    assert text == out["text"]
    cells = re.sub(r" {2,}", " ", text)      # to_markdown pads the cells to align the columns
    assert "| Tracking error, mm | keypoint error mean | synthetic twin | 0 | < 1 | 1.30 | < 1 | no: 0.30 above |" in cells
    assert "| Registration error, mm | keypoint error mean | real clips | | 0.56 | 0.60 | <= 0.56 | no: 0.04 above |" in cells
    assert "undefined ✗" in text                                     # the null rho of weight 0, per-weight table
    assert not re.search(r"\bnan\b", text, re.IGNORECASE)
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert sorted(Path(x).name for x in links) == sorted(PLOTS)
    for x in links:
        assert x.startswith("plots/") and (root / "reports" / x).stat().st_size > 1000
    assert "## By control-cost weight" in text and "| 0.1 |" in cells


def test_missing_files_are_not_run(tmp_path, monkeypatch):
    """Nothing there: every figure says 'not run', no plot, exit status 0 (through the CLI)."""
    import yaml

    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params()))
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, stage_argv("report", params_path=p))
    assert res.exit_code == 0, res.output
    text = (tmp_path / "reports" / "summary.md").read_text()
    table = [line for line in re.sub(r" {2,}", " ", text).splitlines()
             if line.count("|") == 10 and "| not run |" in line]
    assert len(table) == 31 and "0 meet the paper's, 0 do not, 31 not run" in text
    assert "reports/metrics/edm.json absent" in text and "not run: no reports/throughput/*.json" in text
    assert (tmp_path / "reports" / "plots").is_dir() and not list((tmp_path / "reports" / "plots").iterdir())


def test_some_files_missing(tmp_path):
    src = sources_under(tmp_path)
    dump(src.tracking, {"0.1": tracking_entry("synthetic", 0.5)})
    dump(src.edm, {**edm_doc(), "emg_biceps_from_joints_actions": {"0": edm_doc()["sim_biceps_from_joints"]["0"]}})
    out = run_report(params(), src, tmp_path / "s.md", tmp_path / "plots", plots=False)
    assert [r.meets for r in rows_of(out, "Tracking")] == ["yes", NOT_RUN]
    biceps = rows_of(out, "Simplex", "emg_biceps_from_joints_actions")[0]
    assert biceps.value == NOT_RUN and "no lambda_ctrl 0.1" in biceps.note and "(has 0)" in biceps.note
    assert all(r.value == NOT_RUN for r in rows_of(out, "Registration") + rows_of(out, "PCA") + rows_of(out, "EMG"))
    assert "not run: plots not drawn" in out["text"]


@pytest.mark.parametrize("name, content, field", [
    ("tracking", {"0.1": {"held_out": {"keypoint_error_mm": {"mean": "low"}}, "data": "synthetic"}},
     "0.1/held_out/keypoint_error_mm/mean"),
    ("tracking", {"0.1": {"keypoint_error_mm": {"mean": 0.5}, "data": "synthetic"}}, "0.1/held_out"),
    ("tracking", [1, 2], None),
    ("registration", {"data": "synthetic", "keypoint_error_mm": {"median": 0.3}}, "keypoint_error_mm/mean"),
    ("edm", {"data": "synthetic", "sim_biceps_from_joints": {"0.1": {"rho": "high"}}},
     "sim_biceps_from_joints/0.1/rho"),
    ("latents", {"data": "synthetic", "0.1": {"latent": [0.4, 0.3]}}, "0.1/latent"),
])
def test_bad_metrics_file_names_the_file(tmp_path, name, content, field):
    src = sources_under(tmp_path)
    path = dump(getattr(src, name), content)
    with pytest.raises(DataError) as e:
        run_report(params(), src, tmp_path / "s.md", tmp_path / "plots", plots=False)
    assert e.value.path == str(path) and e.value.field == field
    assert not (tmp_path / "s.md").exists()


def test_bad_files_through_the_cli(tmp_path, monkeypatch):
    import yaml

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params()))
    monkeypatch.chdir(tmp_path)
    Path("reports/metrics").mkdir(parents=True)
    Path("reports/metrics/latents.json").write_text("{not json")
    res = CliRunner().invoke(main, [*stage_argv("report", params_path="params.yaml"), "--no-plots"])
    assert res.exit_code == 1 and "reports/metrics/latents.json: not a readable JSON file" in res.output
    Path("reports/metrics/latents.json").unlink()
    Path("reports/training").mkdir(parents=True)
    Path("reports/training/0.1.csv").write_text("iteration,env_steps\n1,100\n")
    res = CliRunner().invoke(main, [*stage_argv("report", params_path="params.yaml"), "--no-plots"])
    assert res.exit_code == 1 and "reports/training/0.1.csv: field 'joint_error_deg': column missing" in res.output


def test_convergence_is_where_the_smoothed_error_settles():
    steps = np.arange(1, 101) * 1000
    err = np.where(np.arange(100) < 30, 20.0, 5.0)
    at, final, sm = convergence(steps, err, window=5, tol=1.0)
    assert final == 5.0 and at == 35_000                 # the 5-iteration mean reaches 5 at iteration 35
    # a dip within the tolerance before the end does not count: it has to stay
    err2 = err.copy()
    err2[10] = 5.0
    assert convergence(steps, err2, window=1, tol=1.0)[0] == 31_000
    assert convergence(steps, np.full(100, 3.0), 10, 0.5)[0] == 1000


def figure(cfg: dict) -> Figure:
    from mimic_core.config import validate

    return validate(Figure, cfg, "x", "figures.yaml")


def test_rules_and_figure_checks():
    lower, within = figure({"paper": 0.56, "meets": "lower"}), figure({"paper": 0.8, "meets": "within", "tol": 0.05})
    assert lower.verdict(0.56, ".2f") == "yes" and lower.verdict(0.6, ".2f") == "no: 0.04 above"
    assert within.verdict(0.7, ".2f") == "no: 0.05 below" and within.verdict(0.84, ".2f") == "yes"
    below = figure({"paper": 1, "meets": "below"})
    assert below.verdict(1.0, ".2f") == "no: at the threshold" and below.criterion(".2f") == "< 1"
    rng = figure({"paper": [44, 45], "meets": "range", "tol": 1})
    assert rng.shown(".1f") == "44-45" and rng.verdict(42.5, ".1f") == "no: 0.5 below"
    higher = figure({"paper": 600000, "meets": "higher"})
    assert higher.criterion(",.0f") == ">= 600,000" and higher.verdict(5e5, ",.0f") == "no: 100,000 below"
    with pytest.raises(ParamsError, match="figures.yaml: 'x.meets'"):
        figure({"paper": 1, "meets": "smaller"})
    with pytest.raises(ParamsError, match=r"must be \[low, high\] for meets: range"):
        figure({"paper": 1, "meets": "range"})
    with pytest.raises(ParamsError, match=r"must be \[low, high\] for meets: range"):
        figure({"paper": [1, 2], "meets": "within"})
    with pytest.raises(ParamsError, match="'x.tol'"):
        figure({"paper": 1, "meets": "within", "tol": -1})


def test_a_bad_figures_file_is_named(tmp_path):
    import yaml

    good = yaml.safe_load(FIGURES_FILE.read_text())
    assert load_figures(FIGURES_FILE).rho["sim_biceps_from_joints"].paper == good["rho"]["sim_biceps_from_joints"]["paper"]
    bad = copy.deepcopy(good)
    bad["rho"]["sim_biceps_from_joints"]["tols"] = 0.1
    path = tmp_path / "figures.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ParamsError, match=r"figures.yaml: 'rho.sim_biceps_from_joints.tols': unknown key; "
                                          r"did you mean 'rho.sim_biceps_from_joints.tol'"):
        load_figures(path)
    del bad["rho"]
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ParamsError, match="'rho': missing"):
        run_report(params(), sources_under(tmp_path), tmp_path / "s.md", tmp_path / "plots", plots=False, figures=path)
    assert not (tmp_path / "s.md").exists()


def test_report_settings_are_checked():
    from mimic_core.config import as_params

    p = params()
    p["report"]["convergence"]["smooth_iterations"] = 0
    with pytest.raises(ParamsError, match="'report.convergence.smooth_iterations'"):
        as_params(p)
    del p["report"]
    with pytest.raises(ParamsError, match="'report': missing"):
        as_params(p)


def test_tracking_section_scores_against_the_truth_and_shows_gains(full):
    _, _, out = full
    text = out["text"]
    twin = text[text.index("### synthetic twin, held-out clips (3): error against the twin's truth"):]
    twin = twin[:twin.index("### synthetic twin, train clips")]
    # the policy's errors are its truth block's (sh_elv 5.0, elbow 1.0), not those against the reference (6.0, 2.0)
    assert "| policy lambda_ctrl 0.1     | 5.00         | 1.00" in twin
    assert "registered reference" in twin and "3.80" in twin
    # gain = baseline - policy: elbow 8.0 - 1.0, sh_elv 4.5 - 5.0 (no better: marked)
    assert "+7.00" in twin and "-0.50 ✗" in twin
    real = text[text.index("### real clips, held-out clips (3): error against the registered reference"):]
    assert "registered reference  " not in real.split("###")[1]   # no truth: the reference is its own target


def test_deviations_list_every_cpu_setting_with_its_reason(full):
    from bench.report.deviations import NO_REASON, deviation_rows, load_deviations

    _, _, out = full
    profile, rows = deviation_rows(params(), load_deviations())
    assert profile == "cpu" and rows
    assert not [r for r in rows if r[3] == NO_REASON]
    settings = {r[0] for r in rows}
    assert {"track.physics", "track.env.action_mapping", "track.ppo.total_env_steps"} <= settings
    assert "## Deviations from the original code and the paper" in out["text"]
    # a setting changed without a reason is listed as such
    p = params()
    p["track"]["ppo"]["clip_eps"] = 0.3
    _, rows = deviation_rows(p, load_deviations())
    assert ["track.ppo.clip_eps", "0.3", "0.2", NO_REASON] in rows
    # the paper profile itself: no TRACK row
    p = params()
    p["track"]["profile"] = "paper"
    assert deviation_rows(p, load_deviations()) == ("paper", [])


def test_ccm_and_smap_section():
    from bench.report.edm_extra import edm_extra_section
    from bench.report.render import md_table

    assert edm_extra_section({"data": "synthetic"}, md_table) == []
    conv = {"rho_min_lib": 0.5, "rho_max_lib": 0.75, "kendall_tau": 1.0}
    e = {"lib_sizes": [10, 100], "rho_x_to_y": [0.5, 0.75], "rho_y_to_x_max_lib": 0.25,
         "convergence": {"x_to_y": conv}, "null": {"clip_swap": {"mean": 0.6, "p_value": 0.0099}}}
    edm = {"data": "synthetic", "settings": {"ccm": {"E": 2, "exclusion": "clip", "surrogates": ["clip_swap"]},
                                             "smap": {"E": 3}},
           "ccm": {"sim_biceps": {"0.1": e, "0": {"note": "the target is constant"}}, "emg_biceps": {"reference": e}},
           "smap_nonlinearity": {"triceps": {"rho": [0.6, 0.8], "rho_theta0": 0.6, "theta_best": 6.0,
                                             "rho_best": 0.8, "rho_gain": 0.2}}}
    text = "\n".join(edm_extra_section(edm, md_table))
    assert "synthetic twin" in text and "no paper figure" in text
    row = [ln for ln in text.splitlines() if ln.startswith("| emg_biceps")][0]
    cells = [x.strip() for x in row.strip("|").split("|")]
    assert cells[:7] == ["emg_biceps", "reference (policy-free)", "10-100", "0.500 -> 0.750", "+1.00", "0.250",
                         "0.600 (p 0.010)"]
    assert "the target is constant" in text and "+0.200" in text and "lambda_ctrl 0.1" in text
