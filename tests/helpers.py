"""Helpers for tests: the pipeline's stage commands as dvc.yaml writes them, re-rooted for a test's folder."""
from __future__ import annotations

import os
import shlex
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=None)
def _stage_commands() -> dict[str, str]:
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return {s.name: s.cmd for s in repo.index.stages if s.cmd}


def stage_argv(stage: str, root: str | os.PathLike | None = None, **replace: str) -> list[str]:
    """The arguments of a stage's `mimic-bench` command in dvc.yaml (after the program name), with every
    path argument put under `root`, settings files (repository files) made absolute, and options replaced by
    keyword (`metrics_csv="x.csv"`)."""
    from bench.cli import main
    from bench.cli.common import InputPath, OutputPath, SettingsPath, StatePath
    import click

    argv = shlex.split(_stage_commands()[stage])[1:]
    command = main.get_command(click.Context(main), argv[0])
    kinds = {opt: p for p in command.params if isinstance(p, click.Option) for opt in p.opts}
    out, i = [argv[0]], 1
    while i < len(argv):
        tok = argv[i]
        p = kinds.get(tok)
        if p is not None and not p.is_flag:
            value = argv[i + 1]
            if p.name in replace:
                value = str(replace.pop(p.name))
            elif root is not None and isinstance(p.type, (InputPath, OutputPath, StatePath)):
                value = str(Path(root) / value)
            elif isinstance(p.type, SettingsPath):
                value = str(ROOT / value)
            out += [tok, value]
            i += 2
        else:
            out.append(tok)
            i += 1
    opts = {p.name: p.opts[0] for p in command.params if isinstance(p, click.Option)}
    for name, value in replace.items():
        out += [opts[name], str(value)]
    return out


def stage_paths(stage: str, root: str | os.PathLike | None = None) -> dict[str, Path]:
    """{option name: path} of a stage's path arguments (under `root`)."""
    from bench.cli import main
    from bench.cli.common import InputPath, OutputPath, StatePath
    import click

    argv = stage_argv(stage, root)
    command = main.get_command(click.Context(main), argv[0])
    ctx = command.make_context(argv[0], argv[1:])
    return {p.name: Path(ctx.params[p.name]) for p in command.params
            if isinstance(p.type, (InputPath, OutputPath, StatePath)) and ctx.params.get(p.name) is not None}


def edm_frame(name: str, extra: dict | None = None):
    """An EDM test data set: pyEDM's sample data by name, ``ties`` (integer series full of tied and zero
    distances), or one of ``extra`` (name -> function)."""
    import numpy as np
    import pandas as pd
    import pyEDM

    if extra and name in extra:
        return extra[name]()
    if name == "ties":
        rng = np.random.default_rng(1)
        n = 300
        return pd.DataFrame({"t": np.arange(n), "a": rng.integers(0, 4, n).astype(float),
                             "b": ((np.arange(n) * 7) % 11).astype(float)})
    return pyEDM.sampleData[name]
