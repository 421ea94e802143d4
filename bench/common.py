"""What every `mimic-bench` subcommand shares; kept apart from bench.cli so that a subcommand
module can be imported on its own (bench.cli imports the subcommands)."""
from __future__ import annotations

import functools
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
