"""The `report` stage: the paper's figures against this run's, in reports/summary.md, with plots.

Every input is optional: a file that is absent makes its rows say "not run"; a file that is there
but has the wrong shape is a DataError naming the file and the field. The figures and the rule by
which a value "meets" each of them come from bench/paper_figures.yaml (bench.report.figures). The report
reads metrics files only (and, for the EMG plot, the prepared EMG and the rollouts).

Convergence: the trailing moving average of joint_error_deg over ``smooth_iterations`` training
iterations; its final value is the last smoothed value; the run has converged at the first env step
from which the smoothed error stays within ``tolerance_deg`` of that final value.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Mapping

from bench.report.sources import Sources

# The rest loads on first use (pandas, pydantic, matplotlib): `mimic-bench` builds the report's options from
# Sources at start-up, and a command that is not `report` should not pay for the report's imports.
_LAZY = {"FIGURES_FILE": "figures", "Figure": "figures", "PaperFigures": "figures", "ReportSettings": "figures",
         "load_figures": "figures", "settings_from": "figures", "convergence": "inputs", "PLOTS": "plots",
         "NOT_RUN": "rows"}

__all__ = ["FIGURES_FILE", "Figure", "NOT_RUN", "PLOTS", "PaperFigures", "ReportSettings", "Sources", "convergence",
           "load_figures", "run_report", "settings_from"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"bench.report.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'bench.report' has no attribute {name!r}")


def run_report(params: Mapping[str, Any], sources: Sources, out: str | os.PathLike, plots_dir: str | os.PathLike,
               plots: bool = True, figures: str | os.PathLike | None = None) -> dict[str, Any]:
    """The stage: read what is there, write `out` (Markdown) and the plots (the folder is replaced whole).
    `figures` is the paper-figures file (default bench/paper_figures.yaml)."""
    from bench.report.figures import FIGURES_FILE, settings_from
    from bench.report.inputs import collect
    from bench.report.plots import make_plots
    from bench.report.render import render
    from bench.report.rows import all_rows, counts
    from mimic_core.io import atomic_dir, atomic_path

    figures = FIGURES_FILE if figures is None else figures

    s = settings_from(params, figures)
    c = collect(sources, s, params)
    rows = all_rows(c, s)
    out, plots_dir = Path(out), Path(plots_dir)
    drawn = None
    rel = Path(os.path.relpath(plots_dir.resolve(), out.resolve().parent)).as_posix()
    if plots:
        with atomic_dir(plots_dir) as tmp:
            drawn = make_plots(c, s, tmp)
    text = render(rows, c, s, drawn, rel)
    with atomic_path(out, suffix=".md") as tmp:
        tmp.write_text(text)
    return {"rows": rows, "counts": counts(rows), "plots": drawn, "text": text}
