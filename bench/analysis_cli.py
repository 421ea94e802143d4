"""`mimic-bench edm` and `mimic-bench latents`: the analysis stages on the rollouts of the sweep."""
from __future__ import annotations

import click

from bench.common import clear_errors, params_option

rollouts_option = click.option("--rollouts", "rollouts_dir", default="data/rollouts", show_default=True,
                               type=click.Path(file_okay=False), help="Rollout files, one <weight>.h5 per weight.")
weights_option = click.option("--weights", default=None,
                              help="Comma-separated weights, as the rollout files are named (e.g. 0,0.15); "
                                   "default: track.ctrl_cost_weights.")


def _weights(text: str | None) -> list[str] | None:
    return [w.strip() for w in text.split(",") if w.strip()] if text else None


@click.command("edm")
@rollouts_option
@click.option("--emg", "emg_path", default="data/prepared/emg.h5", show_default=True, type=click.Path(dir_okay=False),
              help="The prepared EMG envelopes.")
@click.option("--metrics", "metrics_path", default="reports/metrics/edm.json", show_default=True,
              type=click.Path(dir_okay=False))
@weights_option
@params_option
@clear_errors
def edm_cmd(rollouts_dir, emg_path, metrics_path, weights, params_path):
    """Simplex projection of muscle activity from joints (and actions), against shuffled surrogates (the `edm` stage)."""
    from mimic_core.edm.analysis import run_edm
    from mimic_core.io import write_json
    from mimic_core.params import load_params

    report = run_edm(load_params(params_path), rollouts_dir, emg_path, _weights(weights), click.echo)
    write_json(metrics_path, report)
    click.echo(f"wrote {metrics_path} ({report['data']})")


@click.command("latents")
@rollouts_option
@click.option("--metrics", "metrics_path", default="reports/metrics/latents.json", show_default=True,
              type=click.Path(dir_okay=False))
@weights_option
@params_option
@clear_errors
def latents_cmd(rollouts_dir, metrics_path, weights, params_path):
    """PCA of the intention and of each decoder layer over all rollout steps (the `latents` stage)."""
    from mimic_core.analysis.latents import run_latents
    from mimic_core.io import write_json
    from mimic_core.params import load_params

    report = run_latents(load_params(params_path), rollouts_dir, _weights(weights), click.echo)
    write_json(metrics_path, report)
    click.echo(f"wrote {metrics_path} ({report['data']})")
