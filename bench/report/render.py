"""The summary in Markdown."""
from __future__ import annotations

import re
from typing import Mapping, Sequence

import pandas as pd

from bench.report.baselines import tracking_section
from bench.report.deviations import deviations_section
from bench.report.edm_extra import edm_extra_section
from bench.report.figures import ReportSettings
from bench.report.inputs import Collected, _is_number
from bench.report.plots import PLOTS
from bench.report.rows import NOT_RUN, Row, counts, fmt, weight_table

def md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A GitHub Markdown table (every cell as text: no number is reformatted)."""
    clean = lambda x: str(x).replace("|", "/").replace("\n", " ")   # noqa: E731
    df = pd.DataFrame([[clean(x) for x in r] for r in rows], columns=[clean(h) for h in head], dtype=object)
    return df.to_markdown(index=False, tablefmt="github", disable_numparse=True).splitlines()


def render(rows: Sequence[Row], c: Collected, s: ReportSettings, plots: Mapping[str, str | None] | None,
           plots_rel: str) -> str:
    n = counts(rows)
    lines = ["# mimic-bench: the paper against this run", "",
             "MIMIC-MJX (NeurIPS 2025, arXiv 2511.21848), mouse forelimb. Written by `mimic-bench report` (the "
             "`report` stage) from the files listed under *Inputs*; the paper's figures and the rule by which a value "
             "meets each of them are in `bench/paper_figures.yaml`; the report's own settings in `params.yaml` (`report`).", "",
             f"**{len(rows)} figures: {n['meet']} meet the paper's, {n['miss']} do not, {n['not_run']} not run.**", "",
             "## Paper against this run", "",
             f"*data*: what the value was computed on (the `data` field of its file: the synthetic twin or real clips). "
             f"*meets when*: the rule (`<=`: at most the paper's figure, `>=`: at least, `< x`: below the threshold, "
             f"`± tol`: within the tolerance). Analysis figures (rho, EMG MAE, PCA) are those of the policy with "
             f"lambda_ctrl {s.weight} (`report.weight`); every weight is in the next table.", ""]
    lines += md_table(["section", "metric", "data", "lambda_ctrl", "paper", "this run", "meets when", "meets", "note"],
                      [[r.section, r.metric, r.data, r.weight, r.paper, r.value, r.when, r.meets, r.note] for r in rows])
    lines += ["", f"**Convergence** is the first env step from which the joint error, as a trailing moving average of "
                  f"{s.smooth_iterations} training iterations, stays within {s.tolerance_deg:g} deg of its final "
                  f"(smoothed) value; the paper's policies trained about {s.convergence.paper:,.0f} env steps. "
                  f"**EMG MAE** is the mean |simulated activation - EMG envelope| over the reach epochs, the muscle "
                  f"that each channel records (`model.emg_muscles`), computed by the `edm` stage (edm.json `emg_mae`).", ""]
    head, table = weight_table(c, s)
    lines += ["## By control-cost weight", ""]
    if table:
        lines += ["✗: misses the paper's figure (rule as above).", "", *md_table(head, table)]
    else:
        lines += [f"{NOT_RUN}: no per-weight metrics."]
    lines += ["", *tracking_section([(c.tracking, c.baselines), (c.tracking_real, c.baselines_real)], md_table)]
    lines += edm_extra_section(c.edm, md_table)
    lines += deviations_section(c.track, md_table)
    lines += ["## Plots", ""]
    for name, title in PLOTS.items():
        lines += [f"### {title}", ""]
        if plots is None:
            lines += [f"{NOT_RUN}: plots not drawn (--no-plots)", ""]
        elif plots.get(name) is None:
            lines += [f"![{title}]({plots_rel}/{name})", ""]
        else:
            lines += [f"{NOT_RUN}: {plots[name]}", ""]
    lines += ["## Inputs", ""]
    src = c.sources
    status = {src.registration: c.registration, src.registration_real: c.registration_real,
              src.tracking: c.tracking or None, src.tracking_real: c.tracking_real or None, src.edm: c.edm,
              src.latents: c.latents}
    rows_in = [[str(p), "read" if v is not None else NOT_RUN] for p, v in status.items()]
    rows_in.append([str(src.throughput_dir), f"read {c.throughput[0].name} (the newest)" if c.throughput else NOT_RUN])
    rows_in.append([str(src.training_dir), f"read {len(c.curves)} CSV" if c.curves else NOT_RUN])
    lines += md_table(["input", "status"], rows_in)
    truth = (c.registration or {}).get("truth") if isinstance(c.registration, Mapping) else None
    if isinstance(truth, Mapping) and _is_number(truth.get("joint_rmse_deg")):
        crb = (truth.get("joint_rmse_deg_cramer_rao_bound") or {}).get("all")
        lines += ["", f"Against the synthetic twin's truth (no paper figure): registration joint RMSE "
                      f"{fmt(truth['joint_rmse_deg'], '.2f')} deg (Cramér-Rao bound {fmt(crb, '.2f')} deg), offset "
                      f"error {fmt(truth.get('offset_error_mm'), '.3f')} mm."]
    text = "\n".join(lines) + "\n"
    if re.search(r"\b(nan|inf|infinity)\b", text, re.IGNORECASE):
        raise ValueError("refusing to write a summary with a non-finite value")
    return text
