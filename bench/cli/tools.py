"""Tools for one's own files, outside the pipeline: make the synthetic twin, register one clip or a glob of
clips, evaluate one policy on other clips, compare metrics across revisions."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from bench.cli.common import clear_errors, params_option, solve_line

KEYPOINT_FORMATS = ["stac_h5", "sleap_anipose_h5", "anipose_csv"]
UNITS = ["m", "cm", "mm"]


@click.command("make-twin")
@click.option("--seed", type=int, default=None, help="Random seed (default: twin.seed in params).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder (the pipeline's: data/raw/twin; then `dvc add data/raw`).")
@params_option
@clear_errors
def make_twin_cmd(seed, out_dir, params_path):
    """Generate the synthetic twin: reach trials with keypoints, raw EMG and ground truth."""
    from mimic_core.data.twin import make_twin
    from mimic_core.io import atomic_dir
    from mimic_core.params import load_params, section

    params = load_params(params_path)
    cfg = section(params, "twin")
    seed = cfg["seed"] if seed is None else seed
    n = int(cfg["n_trials"])
    with click.progressbar(length=n, label=f"synthetic twin (seed {seed})", file=sys.stderr) as bar:
        with atomic_dir(out_dir) as tmp:
            manifest = make_twin(tmp, seed=seed, twin_cfg=cfg, model_xml=section(params, "model.xml"),
                                 keypoint_map=section(params, "model.keypoint_map"),
                                 emg_muscles=section(params, "model.emg_muscles"),
                                 progress=lambda _: bar.update(1))
    click.echo(f"wrote {manifest['n_trials']} synthetic trials to {out_dir} (static-optimisation torque residual, "
               f"median {manifest['static_optimization']['torque_residual_rel_median']:.2g})")


def parse_keypoint_map(text: str | None) -> dict[str, str] | None:
    """'Shoulder=scapula,Elbow=elbow' or a JSON/YAML mapping -> dict."""
    if not text:
        return None
    import yaml

    from mimic_core.errors import ParamsError

    if "=" in text and not text.strip().startswith("{"):
        pairs = [p.split("=", 1) for p in text.split(",") if p.strip()]
        if any(len(p) != 2 or not p[0].strip() or not p[1].strip() for p in pairs):
            raise ParamsError(f"--keypoint-map: expected NAME=BODY pairs separated by commas, got {text!r}")
        return {k.strip(): v.strip() for k, v in pairs}
    value = yaml.safe_load(text)
    if not isinstance(value, dict) or not value:
        raise ParamsError(f"--keypoint-map: expected a mapping of keypoint names to bodies, got {text!r}")
    return {str(k): str(v) for k, v in value.items()}


def _per_keypoint(e: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in e["per_keypoint"].items())


mode_option = click.option("--mode", type=click.Choice(["temporal", "per_frame"]), default=None,
                           help="STAC mode (default: stac.mode in params): the temporal prior or per frame (the original).")


def _load_with_mode(params_path: str, mode: str | None) -> dict:
    from mimic_core.params import load_params

    params = load_params(params_path)
    if mode:
        params = {**params, "stac": {**params["stac"], "mode": mode}}
    return params


SKIPPED = "--no-plausibility-check"


@click.command("register-clip")
@click.option("--keypoints", "keypoints_path", required=True, type=click.Path(dir_okay=False),
              help="The clip's keypoints (any supported format).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Output HDF5 (stac-mjx schema).")
@click.option("--format", "fmt", type=click.Choice(KEYPOINT_FORMATS), default=None,
              help="Keypoint file format (default: detected from the file).")
@click.option("--units", type=click.Choice(UNITS), default=None,
              help="Units of the stored coordinates (default: params for the params' format; m for stac_h5).")
@click.option("--fps", type=float, default=None, help="Frame rate (default: data.keypoints.fps in params).")
@click.option("--names", default=None, help="Node names in file order, comma-separated (SLEAP-Anipose files).")
@click.option("--model", "model_xml", type=click.Path(dir_okay=False), default=None,
              help="MJCF model (default: model.xml in params).")
@click.option("--keypoint-map", default=None, help="Keypoint to body map, e.g. 'Shoulder=scapula,Elbow=elbow,Wrist=wrist_body'.")
@click.option("--no-plausibility-check", "skip_plausibility", is_flag=True,
              help="Do not check the keypoints against the model's geometry (units, swapped keypoints); "
                   "recorded in the metrics.")
@mode_option
@params_option
@clear_errors
def register_clip_cmd(keypoints_path, out_path, fmt, units, fps, names, model_xml, keypoint_map, skip_plausibility,
                      mode, params_path):
    """Register one clip file to the model with STAC (JAX) and print its error."""
    from mimic_core.stac.files import register_file

    m = register_file(_load_with_mode(params_path, mode), Path(keypoints_path), Path(out_path), fmt, units, fps,
                      names.split(",") if names else None, model_xml, parse_keypoint_map(keypoint_map),
                      plausibility_override=SKIPPED if skip_plausibility else None)
    e = m["keypoint_error_mm"]
    click.echo(f"{Path(keypoints_path).stem}: keypoint error mean {e['mean']:.3f} mm, median {e['median']:.3f} mm "
               f"({_per_keypoint(e)}) -> {out_path}")
    click.echo(f"  {solve_line(m)}")


@click.command("register-clips")
@click.option("--glob", "pattern", required=True, help="Keypoint files, e.g. '../shared/real/mouse_arm_clips/*.h5'.")
@click.option("--format", "fmt", type=click.Choice(KEYPOINT_FORMATS), default=None)
@click.option("--units", type=click.Choice(UNITS), required=True, help="Units of the stored coordinates.")
@click.option("--fps", type=float, required=True, help="Frame rate (Hz).")
@click.option("--label", type=click.Choice(["real", "synthetic"]), required=True, help="What the data are.")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None, help="Write one HDF5 per clip here.")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False), required=True)
@click.option("--no-plausibility-check", "skip_plausibility", is_flag=True,
              help="Do not check the keypoints against the model's geometry (units, swapped keypoints); "
                   "recorded in the metrics.")
@mode_option
@params_option
@clear_errors
def register_clips_cmd(pattern, fmt, units, fps, label, out_dir, metrics_path, skip_plausibility, mode, params_path):
    """Register a folder of clips at once (e.g. the real clips) and write their metrics."""
    from mimic_core.stac.files import register_glob

    m = register_glob(_load_with_mode(params_path, mode), pattern, units, fps, label, Path(metrics_path),
                      Path(out_dir) if out_dir else None, fmt, log=click.echo,
                      plausibility_override=SKIPPED if skip_plausibility else None)
    e = m["keypoint_error_mm"]
    click.echo(f"registered {m['n_clips']} clips ({label}): mean {e['mean']:.3f} mm, median {e['median']:.3f} mm "
               f"({_per_keypoint(e)})")
    click.echo(f"  {solve_line(m)}")
    if "original" in m:
        click.echo(f"  the files' own qpos (the original tool): joint HF RMS {m['original']['joint_hf_rms_deg']['all']:.3f} deg")


@click.command("evaluate-policy")
@click.option("--policy", "policy_dir", required=True, type=click.Path(file_okay=False), help="A trained policy.")
@click.option("--registered", required=True, help="Registered clips: a folder or a glob.")
@click.option("--metrics", "metrics_path", required=True, type=click.Path(dir_okay=False),
              help="Tracking metrics JSON ({weight: metrics}).")
@click.option("--rollout", "rollout_path", default=None, type=click.Path(dir_okay=False),
              help="Also write the rollout (HDF5) here.")
@click.option("--fps", type=float, default=None, help="Frame rate of clips that do not store it.")
@click.option("--label", type=click.Choice(["real", "synthetic"]), default=None, help="What the clips are.")
@click.option("--truth-dir", default=None, type=click.Path(file_okay=False),
              help="The clips' ground truth (a synthetic twin's truth folder), to score against it too.")
@params_option
@clear_errors
def evaluate_policy_cmd(policy_dir, registered, metrics_path, rollout_path, fps, label, truth_dir, params_path):
    """Roll out one trained policy on other clips (e.g. the real ones) and score its tracking."""
    from mimic_core.io import write_json
    from mimic_core.params import load_params
    from mimic_core.track.evaluate import write_rollout
    from mimic_core.track.stage import BASELINES, baselines_of, evaluate_policy, summary_line

    ev = evaluate_policy(load_params(params_path), Path(policy_dir), registered, label, truth_dir=truth_dir, fps=fps)
    write_json(metrics_path, {ev.weight: ev.metrics, BASELINES: baselines_of(ev)})
    if rollout_path:
        write_rollout(Path(rollout_path), ev.rec, ev.keypoints, ev.clips, ev.fm, ev.weight, ev.metrics["data"])
    click.echo(f"{len(ev.clips.clip_names)} clips ({ev.metrics['data']}), trained on {ev.metrics['trained_on']}, "
               f"{int(ev.held.sum())} never trained on")
    click.echo("  " + summary_line(ev.weight, ev.metrics))


@click.command("compare")
@click.argument("a", required=False)
@click.argument("b", required=False)
@click.option("--all", "show_all", is_flag=True, help="Show unchanged metrics too.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON instead of a table.")
@click.option("--rules", "rules_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Which way each metric should move and its tolerance [default: bench/compare_rules.yaml].")
@clear_errors
def compare_cmd(a, b, show_all, as_json, rules_path):
    """Compare metrics: revision A against B (default: HEAD against the workspace), or two
    metrics JSON files (compare OLD.json NEW.json).

    With revisions, every metrics file that dvc.yaml declares is compared (dvc metrics diff).
    Which way is better and the tolerances come from --rules (bench/compare_rules.yaml).
    Exits 1 when any metric regresses beyond its tolerance.
    """
    from bench.compare import RULES_FILE, compare, has_regression, load_rules, summary, table

    rules = load_rules(rules_path or RULES_FILE)
    rows, a_label, b_label, notes = compare(a, b, rules)
    shown = rows if show_all else [r for r in rows if r.changed]
    for note in notes:
        click.echo(f"note: {note}", err=True)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in shown], indent=2))
    else:
        if shown:
            click.echo(table(shown))
        click.echo(summary(rows, a_label, b_label))
    if has_regression(rows):
        sys.exit(1)


COMMANDS = [make_twin_cmd, register_clip_cmd, register_clips_cmd, evaluate_policy_cmd, compare_cmd]
