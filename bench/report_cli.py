"""`mimic-bench report`: the paper's figures against this run's, reports/summary.md with plots."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import click

from bench.common import clear_errors, params_option
from mimic_core.report import Sources


def _source_options(fn):
    """One --option per input of the report (mimic_core.report.Sources), defaulting to the pipeline's layout."""
    for f in reversed(fields(Sources)):
        fn = click.option(f"--{f.name.replace('_', '-')}", f.name, default=str(f.default), show_default=True,
                          type=click.Path(), help=f.metadata["help"])(fn)
    return fn


@click.command("report")
@click.option("--out", "out_path", default="reports/summary.md", show_default=True, type=click.Path(dir_okay=False),
              help="The summary (Markdown).")
@click.option("--plots-dir", default="reports/plots", show_default=True, type=click.Path(file_okay=False),
              help="Where the plots go (the folder is replaced whole).")
@click.option("--no-plots", is_flag=True, help="Write the summary only.")
@_source_options
@params_option
@clear_errors
def report_cmd(out_path, plots_dir, no_plots, params_path, **paths):
    """Set this run's metrics against the paper's figures (the `report` stage).

    Every input is optional: a missing one shows as "not run". Figures and the rule by which a value
    meets each of them: params.yaml `report`.
    """
    from mimic_core.params import load_params
    from mimic_core.report import run_report

    sources = Sources(**{k: Path(v) for k, v in paths.items()})
    out = run_report(load_params(params_path), sources, out_path, plots_dir, plots=not no_plots)
    n = out["counts"]
    drawn = [k for k, why in (out["plots"] or {}).items() if why is None]
    click.echo(f"{len(out['rows'])} figures: {n['meet']} meet the paper's, {n['miss']} do not, {n['not_run']} not run")
    for r in out["rows"]:
        if r.meets.startswith("no:"):
            click.echo(f"  misses: {r.section}: {r.metric}" + (f" (lambda_ctrl {r.weight})" if r.weight else "")
                       + f": {r.value} against {r.paper} ({r.meets})")
    click.echo(f"wrote {out_path}" + (f" and {len(drawn)} plots in {plots_dir}" if not no_plots else ""))
