"""The `mimic-bench` command line: click only, a thin layer over mimic_core (the science) and bench (the
harness). Commands come in three sections: the pipeline's stages (what `dvc repro` runs, every path an
argument), tools for one's own files, and benchmarks."""
from __future__ import annotations

import os
from pathlib import Path

import click

from bench.cli import benchmarks, edm, stages, tools

SECTIONS = {
    "Pipeline stages (dvc.yaml runs them; paths are arguments)": stages.COMMANDS,
    "Tools (one clip, one policy, two revisions)": tools.COMMANDS,
    "EDM on a CSV (pyEDM 2.x semantics)": edm.COMMANDS,
    "Benchmarks": benchmarks.COMMANDS,
}


class SectionedGroup(click.Group):
    """A flat command namespace whose help lists the commands by section."""

    def format_commands(self, ctx, formatter):
        for title, commands in SECTIONS.items():
            rows = [(c.name, c.get_short_help_str(limit=formatter.width - 6 - max(len(x.name) for x in commands)))
                    for c in commands]
            with formatter.section(title):
                formatter.write_dl(rows)


@click.group(cls=SectionedGroup)
@click.version_option(package_name="mimic-bench")
def main():
    """mimic-bench: reproduce and benchmark MIMIC-MJX (mouse forelimb imitation)."""
    use_compilation_cache()


def use_compilation_cache() -> None:
    """JAX's persistent compilation cache under the user's cache folder (``$XDG_CACHE_HOME`` or ~/.cache,
    ``mimic-bench/jax``), so a program compiled once is loaded by every later command: set before JAX is
    imported (every command imports it lazily). A JAX_COMPILATION_CACHE_DIR already set wins;
    MIMIC_BENCH_JAX_CACHE=0 turns it off."""
    if os.environ.get("MIMIC_BENCH_JAX_CACHE", "1") == "0" or "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(root / "mimic-bench" / "jax")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")


for _commands in SECTIONS.values():
    for _command in _commands:
        main.add_command(_command)
