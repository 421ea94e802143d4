"""The `mimic-bench` command line: a thin layer over mimic_core's pure functions."""
from __future__ import annotations

import functools
import json
import sys

import click

from mimic_core.errors import MimicError


def clear_errors(fn):
    """Report pipeline errors as one clear line and exit 1, without a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MimicError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
    return wrapper


params_option = click.option("--params", "params_path", default="params.yaml", show_default=True,
                              type=click.Path(dir_okay=False), help="The params file.")


@click.group()
@click.version_option(package_name="mimic-bench")
def main():
    """mimic-bench: reproduce and benchmark MIMIC-MJX (mouse forelimb imitation)."""


@main.command("make-twin")
@click.option("--seed", type=int, default=None, help="Random seed (default: twin.seed in params).")
@click.option("--out", "out_dir", default="data/raw/twin", show_default=True, type=click.Path(file_okay=False),
              help="Output folder.")
@params_option
@clear_errors
def make_twin_cmd(seed, out_dir, params_path):
    """Generate the synthetic twin: 46 reach trials with keypoints, raw EMG and ground truth."""
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
    click.echo(f"wrote {manifest['n_trials']} synthetic trials to {out_dir} "
               f"(static-optimisation torque residual, median {manifest['static_optimization']['torque_residual_rel_median']:.2g})")


@main.command("prepare")
@click.option("--out", "out_dir", default="data/prepared", show_default=True, type=click.Path(file_okay=False))
@click.option("--metrics", "metrics_path", default="reports/metrics/prepare.json", show_default=True,
              type=click.Path(dir_okay=False))
@params_option
@clear_errors
def prepare_cmd(out_dir, metrics_path, params_path):
    """Prepare raw keypoints and EMG (the `prepare` stage)."""
    from mimic_core.data.prepare import run_prepare
    from mimic_core.params import load_params

    metrics = run_prepare(load_params(params_path), out_dir, metrics_path)
    click.echo(json.dumps(metrics, indent=2, sort_keys=True))
