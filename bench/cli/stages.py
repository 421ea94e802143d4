"""The pipeline's stages, one command each, as dvc.yaml runs them: every path is an argument (dvc.yaml is
the one place the pipeline's layout is written), every number comes from params.yaml."""
from __future__ import annotations

import json
import sys
from dataclasses import fields
from pathlib import Path

import click

from bench.cli.common import (SettingsPath, StatePath, clear_errors, input_option, output_option, params_option,
                              solve_line)

rollouts_input = input_option("--rollouts", "Rollout files, one <weight>.h5 per weight.", file_okay=False)
weights_option = click.option("--weights", default=None,
                              help="Comma-separated weights, as the rollout files are named (e.g. 0,0.15); "
                                   "default: track.ctrl_cost_weights.")


def _weights(text: str | None) -> list[str] | None:
    return [w.strip() for w in text.split(",") if w.strip()] if text else None


@click.command("prepare")
@output_option("--out", "Prepared keypoints and EMG (folder, replaced whole).", file_okay=False)
@output_option("--metrics", "Metrics JSON.", dir_okay=False)
@params_option
@clear_errors
def prepare_cmd(out, metrics, params_path):
    """Prepare raw keypoints and EMG: clips in metres, EMG envelopes over the reach epochs."""
    from mimic_core.data.prepare import run_prepare
    from mimic_core.params import load_params

    result = run_prepare(load_params(params_path), out, metrics)
    click.echo(json.dumps(result, indent=2, sort_keys=True))


@click.command("register")
@input_option("--prepared", "Prepared keypoints (HDF5).", dir_okay=False)
@output_option("--out", "One stac-mjx-schema HDF5 per clip (folder, replaced whole).", file_okay=False)
@output_option("--metrics", "Metrics JSON.", dir_okay=False)
@params_option
@clear_errors
def register_cmd(prepared, out, metrics, params_path):
    """Register every prepared clip to the model with STAC (JAX), and score it."""
    from mimic_core.params import load_params
    from mimic_core.stac.register import run_register

    m = run_register(load_params(params_path), Path(prepared), Path(out), Path(metrics), log=click.echo)
    e = m["keypoint_error_mm"]
    click.echo(f"registered {m['n_clips']} clips ({m['data']}): keypoint error "
               f"mean {e['mean']:.3f} mm, median {e['median']:.3f} mm, p95 {e['p95']:.3f} mm")
    if "truth" in m:
        click.echo(f"against the truth: joint RMSE {m['truth']['joint_rmse_deg']:.2f} deg, "
                   f"velocity RMSE {m['truth']['joint_velocity_rmse_deg_s']:.0f} deg/s, "
                   f"offset error {m['truth']['offset_error_mm']:.3f} mm")
    click.echo(solve_line(m))


@click.command("train")
@click.option("--ctrl-cost", "weight", required=True,
              help="The control-cost weight of this policy, as written in track.ctrl_cost_weights (e.g. 0.15).")
@input_option("--registered", "Registered clips: a folder or a glob.")
@output_option("--out", "Policy folder (replaced whole when training ends).", file_okay=False)
@output_option("--metrics-csv", "Per-iteration training metrics (CSV).", dir_okay=False)
@click.option("--checkpoints", required=True, type=StatePath(file_okay=False),
              help="Checkpoint root, kept between runs (a run resumes when its settings match).")
@click.option("--distributed", "auto", is_flag=True,
              help="Join a multi-process run whose coordinator, size and rank JAX detects (SLURM, Open MPI).")
@click.option("--coordinator", default=None, metavar="HOST:PORT",
              help="Multi-process run: process 0's address (with --num-processes and --process-id).")
@click.option("--num-processes", type=click.IntRange(min=1), default=None, help="Multi-process run: how many.")
@click.option("--process-id", type=click.IntRange(min=0), default=None, help="Multi-process run: this one's rank.")
@params_option
@clear_errors
def train_cmd(weight, registered, out, metrics_csv, checkpoints, auto, coordinator, num_processes, process_id,
              params_path):
    """Train one policy of the control-cost sweep with PPO in MJX (on one process, or on several with
    jax.distributed: envs split over every process's devices, process 0 writes)."""
    import jax

    from mimic_core.params import load_params
    from mimic_core.track.distributed import initialize
    from mimic_core.track.stage import run_train

    params = load_params(params_path)   # bad params fail before joining anything
    multi = initialize(coordinator, num_processes, process_id, auto)
    where = (f"process {jax.process_index()} of {jax.process_count()}, " if multi else "")
    click.echo(f"training lambda_ctrl={weight} on {where}{jax.device_count()} {jax.devices()[0].platform} "
               f"device(s)", err=True)
    bar = None

    def progress(row):
        nonlocal bar
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=None, unit=" it", file=sys.stderr, dynamic_ncols=True, initial=row["iteration"] - 1)
        bar.update(1)
        bar.set_postfix_str(f"steps {row['env_steps']:,} | {row['steps_per_s']:,.0f}/s | reward {row['reward']:.3f} "
                            f"(joint {row['reward_joint']:.3f} ctrl {row['reward_ctrl']:.3f} "
                            f"energy {row['reward_energy']:.3f}) | joint error {row['joint_error_deg']:.2f} deg")

    meta = run_train(params, weight, Path(out), Path(metrics_csv), Path(checkpoints), progress, registered,
                     log=lambda line: click.echo(f"warning: {line}", err=True))
    if bar is not None:
        bar.close()
    f = meta["final"]
    click.echo(f"policy lambda_ctrl={weight}: {meta['env_steps']:,} env steps in {f.get('seconds', 0):.0f} s "
               f"({f.get('steps_per_s', 0):,.0f}/s); last joint error {f.get('joint_error_deg', float('nan')):.2f} "
               f"deg -> {out if jax.process_index() == 0 else 'written by process 0'}")


@click.command("evaluate")
@input_option("--policies", "Policies, one folder per weight.", file_okay=False)
@input_option("--registered", "Registered clips: a folder or a glob.")
@output_option("--out", "Rollouts, one <weight>.h5 per weight (folder, replaced whole).", file_okay=False)
@output_option("--metrics", "Tracking metrics JSON, keyed by weight.", dir_okay=False)
@params_option
@clear_errors
def evaluate_cmd(policies, registered, out, metrics, params_path):
    """Deterministic rollouts of every policy of the sweep over every clip, and their tracking metrics."""
    from mimic_core.params import load_params
    from mimic_core.track.stage import run_evaluate

    run_evaluate(load_params(params_path), Path(policies), Path(out), Path(metrics), registered, click.echo)


@click.command("edm")
@rollouts_input
@input_option("--emg", "The prepared EMG envelopes (HDF5).", dir_okay=False)
@output_option("--metrics", "Metrics JSON.", dir_okay=False)
@weights_option
@params_option
@clear_errors
def edm_cmd(rollouts, emg, metrics, weights, params_path):
    """Simplex projection of muscle activity from joints (and actions), against shuffled surrogates."""
    from mimic_core.edm.analysis import run_edm
    from mimic_core.io import write_json
    from mimic_core.params import load_params

    report = run_edm(load_params(params_path), rollouts, emg, _weights(weights), click.echo)
    write_json(metrics, report)
    click.echo(f"wrote {metrics} ({report['data']})")


@click.command("latents")
@rollouts_input
@output_option("--metrics", "Metrics JSON.", dir_okay=False)
@weights_option
@params_option
@clear_errors
def latents_cmd(rollouts, metrics, weights, params_path):
    """PCA of the intention and of each decoder layer over all rollout steps."""
    from mimic_core.analysis.latents import run_latents
    from mimic_core.io import write_json
    from mimic_core.params import load_params

    report = run_latents(load_params(params_path), rollouts, _weights(weights), click.echo)
    write_json(metrics, report)
    click.echo(f"wrote {metrics} ({report['data']})")


def _source_options(fn):
    """One required input option per input of the report (bench.report.Sources)."""
    from bench.report.sources import Sources

    for f in reversed(fields(Sources)):
        fn = input_option(f"--{f.name.replace('_', '-')}", f.metadata["help"] + " (absent: 'not run')",
                          dir_okay=f.metadata["dir"], file_okay=not f.metadata["dir"])(fn)
    return fn


@click.command("report")
@_source_options
@output_option("--out", "The summary (Markdown).", dir_okay=False)
@output_option("--plots-dir", "Where the plots go (the folder is replaced whole).", file_okay=False)
@click.option("--figures", "figures_path", type=SettingsPath(), required=True,
              help="The paper's figures and when a value meets each (bench/paper_figures.yaml).")
@click.option("--no-plots", is_flag=True, help="Write the summary only.")
@params_option
@clear_errors
def report_cmd(out, plots_dir, figures_path, no_plots, params_path, **paths):
    """Set this run's metrics against the paper's figures: reports/summary.md and the plots.

    Every input is optional: a missing one shows as "not run". The figures and the rule by which a
    value meets each of them: --figures (bench/paper_figures.yaml); the report's settings: params `report`.
    """
    from bench.report import Sources, run_report
    from mimic_core.params import load_params

    sources = Sources(**{k: Path(v) for k, v in paths.items()})
    result = run_report(load_params(params_path), sources, out, plots_dir, plots=not no_plots,
                        figures=figures_path)
    n = result["counts"]
    drawn = [k for k, why in (result["plots"] or {}).items() if why is None]
    click.echo(f"{len(result['rows'])} figures: {n['meet']} meet the paper's, {n['miss']} do not, "
               f"{n['not_run']} not run")
    for r in result["rows"]:
        if r.meets.startswith("no:"):
            click.echo(f"  misses: {r.section}: {r.metric}" + (f" (lambda_ctrl {r.weight})" if r.weight else "")
                       + f": {r.value} against {r.paper} ({r.meets})")
    click.echo(f"wrote {out}" + (f" and {len(drawn)} plots in {plots_dir}" if not no_plots else ""))


COMMANDS = [prepare_cmd, register_cmd, train_cmd, evaluate_cmd, edm_cmd, latents_cmd, report_cmd]
