"""`mimic-bench compare`: metrics between two git revisions or two metrics files, with verdicts."""
from __future__ import annotations

import json
import sys

import click

from bench.common import clear_errors, params_option


@click.command("compare")
@click.argument("a", required=False)
@click.argument("b", required=False)
@click.option("--all", "show_all", is_flag=True, help="Show unchanged metrics too.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON instead of a table.")
@params_option
@clear_errors
def compare_cmd(a, b, show_all, as_json, params_path):
    """Compare metrics: revision A against B (default: HEAD against the workspace), or two
    metrics JSON files (compare OLD.json NEW.json).

    With revisions, every metrics file that dvc.yaml declares is compared (dvc metrics diff).
    Which way is better and the tolerances come from the `compare` section of params.yaml.
    Exits 1 when any metric regresses beyond its tolerance.
    """
    from mimic_core.compare import compare, has_regression, parse_rules, summary, table
    from mimic_core.params import load_params, section

    rules = parse_rules(section(load_params(params_path), "compare"))
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
