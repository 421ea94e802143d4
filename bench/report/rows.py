"""The rows of the summary: one per paper figure (value, data, rule, verdict), and a table per weight."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from bench.report.figures import Figure, ReportSettings
from bench.report.inputs import Collected, _is_number, at, edm_entry, label, latent_layer, weight_order

NOT_RUN = "not run"


NO_FIGURE = "-"


@dataclass(frozen=True)
class Row:
    section: str
    metric: str
    data: str
    weight: str
    paper: str
    value: str
    when: str       # the rule, e.g. "<= 0.56"
    meets: str      # "yes" | "no: ..." | "-" (no rule) | "not run"
    note: str = ""


def fmt(x: Any, spec: str = ".3f") -> str:
    """A number for the summary; None or a non-finite value is 'n/a' (never NaN)."""
    return format(float(x), spec) if _is_number(x) else "n/a"


def figure_row(section: str, metric: str, fig: Figure, value: float | None, spec: str, data: str = NO_FIGURE,
               weight: str = "", note: str = "", scale: float = 1.0, not_run: bool = False) -> Row:
    """The row of one figure: `value` None with `not_run` -> 'not run'; None otherwise -> undefined."""
    paper, when = fig.shown(spec), fig.criterion(spec)
    if not_run:
        return Row(section, metric, NO_FIGURE, weight, paper, NOT_RUN, when, NOT_RUN, note)
    if value is None:
        return Row(section, metric, data, weight, paper, "undefined", when, "no: undefined", note)
    v = value * scale
    return Row(section, metric, data, weight, paper, fmt(v, spec), when, fig.verdict(v, spec), note)


def _absent(path: Path) -> str:
    return f"{path} absent"


def registration_rows(doc: Any, path: Path, s: ReportSettings) -> list[Row]:
    sec = "Registration error, mm"
    figs = [(f"keypoint error {k}", fig, ["keypoint_error_mm", k]) for k, fig in s.registration.items()]
    figs += [(f"keypoint error {k}", fig, ["keypoint_error_mm", "per_keypoint", k])
             for k, fig in s.registration_keypoints.items()]
    if doc is None:
        return [figure_row(sec, m, fig, None, ".2f", note=_absent(path), not_run=True) for m, fig, _ in figs]
    data = label(at(doc, path, ["data"], "str"))
    n = at(doc, path, ["n_clips"], "number", optional=True)
    note = (f"{int(n)} clips; " if n is not None else "") + str(path)
    rows = []
    for m, fig, keys in figs:
        v = at(doc, path, keys, optional=keys[-2] == "per_keypoint")
        rows.append(figure_row(sec, m, fig, v, ".2f", data, note=note) if v is not None else
                    figure_row(sec, m, fig, None, ".2f", note=f"no {keys[-1]} in {path}", not_run=True))
    return rows


def tracking_rows(entries: Mapping[str, Mapping], path: Path, s: ReportSettings) -> list[Row]:
    sec = "Tracking error, mm"
    metric = "keypoint error mean"
    if not entries:
        return [figure_row(sec, metric, s.tracking, None, ".2f", note=_absent(path), not_run=True)]
    rows = []
    for w, m in entries.items():
        kp = m["keypoint_error_mm"]
        scored = kp.get("scored_keypoints")
        part = str(m.get("part", "")).replace("_", "-")
        note = (f"{m.get('n_clips', '?')} {part} clips".replace("  ", " ")
                + (f" ({', '.join(scored)})" if isinstance(scored, list) else "") + f"; {path}")
        rows.append(figure_row(sec, metric, s.tracking, kp["mean"], ".2f", label(m["data"]), w, note))
    return rows


def edm_rows(doc: Any, path: Path, s: ReportSettings) -> list[Row]:
    sec = "Simplex projection, rho"
    w = s.weight
    rows = []
    for analysis, fig in s.rho.items():
        if doc is None:
            rows += [figure_row(sec, f"{analysis}", fig, None, ".3f", weight=w, note=_absent(path), not_run=True),
                     figure_row(sec, f"{analysis}, shuffled", s.rho_shuffled, None, ".3f", weight=w,
                                note=_absent(path), not_run=True)]
            continue
        data = label(at(doc, path, ["data"], "str"))
        e = edm_entry(doc, path, analysis, w)
        if e is None:
            have = sorted((k for k in (doc.get(analysis) or {}) if isinstance(k, str)), key=weight_order)
            note = (f"no lambda_ctrl {w} in {path} (has {', '.join(have)})" if analysis in doc
                    else f"no analysis {analysis} in {path}")
            rows += [figure_row(sec, analysis, fig, None, ".3f", weight=w, note=note, not_run=True),
                     figure_row(sec, f"{analysis}, shuffled", s.rho_shuffled, None, ".3f", weight=w, note=note,
                                not_run=True)]
            continue
        note = (f"surrogates mean {fmt(e['surrogate_mean'])}, p95 {fmt(e['surrogate_p95'])}, "
                f"p {fmt(e.get('p_value'), '.3g')}, n {e.get('n', '?')}")
        if e.get("note"):
            note += f"; {e['note']}"
        rows.append(figure_row(sec, analysis, fig, e["rho"], ".3f", data, w, note))
        rows.append(figure_row(sec, f"{analysis}, shuffled", s.rho_shuffled, e["surrogate_mean"], ".3f", data, w,
                               "mean rho of the target-shuffled surrogates"))
    return rows


def latents_rows(doc: Any, path: Path, s: ReportSettings) -> list[Row]:
    sec = "PCA, variance explained, %"
    w, rows = s.weight, []
    entry = at(doc, path, [w], "mapping", optional=True) if doc is not None else None
    data = label(at(doc, path, ["data"], "str")) if doc is not None else NO_FIGURE
    for name, figs in s.pca.items():
        layer = latent_layer(entry, name) if entry is not None else None
        for i, fig in enumerate(figs):
            metric = f"{name.replace('_', ' ')} PC{i + 1}"
            if layer is None:
                note = (_absent(path) if doc is None else f"no lambda_ctrl {w} in {path}" if entry is None
                        else f"no layer {name} in {path}")
                rows.append(figure_row(sec, metric, fig, None, ".1f", weight=w, note=note, not_run=True))
                continue
            v = at(doc, path, [w, layer, f"pc{i + 1}"])
            rows.append(figure_row(sec, metric, fig, v, ".1f", data, w, f"layer {layer}", scale=100.0))
    return rows


def throughput_rows(found: tuple[Path, Mapping] | None, folder: Path, s: ReportSettings) -> list[Row]:
    sec = "Training throughput, env steps/s"
    rows = []
    for fig in s.throughput:
        envs, gpus, gpu = int(fig.envs), fig.gpus, fig.gpu
        metric = f"PPO training at {envs:,} envs (paper: {gpus} x {gpu})"
        if found is None:
            rows.append(figure_row(sec, metric, fig, None, ",.0f", note=f"no {folder}/*.json", not_run=True))
            continue
        path, doc = found
        hw = doc["hardware"]
        where = f"{hw['device_kind']} x{hw['device_count']}, {path.name}"
        r = next((r for r in doc["results"] if r["envs"] == envs and "train" in r), None)
        if r is None:
            measured = ", ".join(f"{r['envs']:,}" for r in doc["results"] if "train" in r) or "none"
            rows.append(Row(sec, metric, label(doc.get("data", "?")), "", fig.shown(",.0f"), "not measured",
                            fig.criterion(",.0f"), NO_FIGURE, f"{where}; envs measured: {measured}"))
            continue
        rows.append(figure_row(sec, metric, fig, r["train"]["env_steps_per_s"], ",.0f", label(doc.get("data", "?")),
                               note=where))
    return rows


def convergence_rows(curves: Mapping[str, dict], tracking: Mapping[str, Mapping], folder: Path,
                     s: ReportSettings) -> list[Row]:
    sec = "Convergence, env steps"
    metric = "joint error converged at"
    if not curves:
        return [figure_row(sec, metric, s.convergence, None, ",.0f", note=f"no {folder}/*.csv", not_run=True)]
    rows = []
    for w, c in curves.items():
        data = label(tracking[w].get("trained_on", tracking[w]["data"])) if w in tracking else "not recorded"
        note = (f"final {fmt(c['final'], '.2f')} deg (smoothed); trained {int(c['env_steps'][-1]):,} env steps")
        rows.append(figure_row(sec, metric, s.convergence, c["converged_at"], ",.0f", data, w, note))
    return rows


def emg_mae_rows(edm: Any, path: Path, maes: Mapping, s: ReportSettings) -> list[Row]:
    sec = "EMG mean absolute error (activation vs envelope)"
    w, rows = s.weight, []
    for ch, fig in s.emg_mae.items():
        metric = f"{ch}"
        if not maes:
            note = _absent(path) if edm is None else f"no emg_mae in {path}"
            rows.append(figure_row(sec, metric, fig, None, ".4f", weight=w, note=note, not_run=True))
        elif w not in maes or ch not in maes[w]:
            note = f"no lambda_ctrl {w} in {path} emg_mae" if w not in maes else f"no EMG channel {ch}"
            rows.append(figure_row(sec, metric, fig, None, ".4f", weight=w, note=note, not_run=True))
        else:
            src = edm.get("data_sources") or {}
            data = f"{label(src.get('rollouts', '?'))} rollouts, {label(src.get('emg', '?'))} EMG"
            muscle = (edm.get("emg_mae_muscles") or {}).get(ch, "?")
            rows.append(figure_row(sec, metric, fig, maes[w][ch], ".4f", data, w,
                                   f"{muscle} activation over the reach epochs; {path}"))
    return rows


def all_rows(c: Collected, s: ReportSettings) -> list[Row]:
    src = c.sources
    return [*registration_rows(c.registration, src.registration, s),
            *registration_rows(c.registration_real, src.registration_real, s),
            *tracking_rows(c.tracking, src.tracking, s),
            *tracking_rows(c.tracking_real, src.tracking_real, s),
            *edm_rows(c.edm, src.edm, s),
            *emg_mae_rows(c.edm, src.edm, c.maes, s),
            *latents_rows(c.latents, src.latents, s),
            *throughput_rows(c.throughput, src.throughput_dir, s),
            *convergence_rows(c.curves, c.tracking, src.training_dir, s)]


def _mark(fig: Figure, v: float | None, spec: str) -> str:
    """A value for the per-weight table, with ✗ where it misses the paper's figure."""
    if v is None:
        return "undefined ✗"
    return fmt(v, spec) + ("" if fig.verdict(v, spec) == "yes" else " ✗")


def weight_table(c: Collected, s: ReportSettings) -> tuple[list[str], list[list[str]]]:
    """One row per control-cost weight: every per-weight metric there is, ✗ where a paper figure is missed."""
    weights = set(c.tracking) | set(c.curves) | set(c.maes)
    if c.edm is not None:
        weights |= {w for a in s.rho for w in (c.edm.get(a) or {}) if isinstance(c.edm.get(a), Mapping)}
    if c.latents is not None:
        weights |= {w for w in c.latents if w != "data"}
    weights_sorted = sorted(weights, key=weight_order)
    cols: list[tuple[str, Callable[[str], str]]] = []
    if c.tracking:
        t = c.tracking
        cols += [("keypoint error mm", lambda w: _mark(s.tracking, t[w]["keypoint_error_mm"]["mean"], ".2f")
                  if w in t else NOT_RUN)]
        for k, head, spec in (("joint_error_deg", "joint error deg", ".2f"), ("action_hf_power", "action HF power", ".3f"),
                              ("energy", "energy W", ".3g"), ("activation_mae", "activation MAE (truth)", ".3f")):
            if any(k in m for m in t.values()):
                cols.append((head, lambda w, k=k, spec=spec: fmt(t[w].get(k), spec) if w in t else NOT_RUN))
    for ch, fig in s.emg_mae.items():
        if any(ch in m for m in c.maes.values()):
            cols.append((f"EMG MAE {ch}", lambda w, ch=ch, fig=fig: _mark(fig, c.maes[w][ch], ".4f")
                         if ch in c.maes.get(w, {}) else NOT_RUN))
    if c.edm is not None:
        for a, fig in s.rho.items():
            if isinstance(c.edm.get(a), Mapping):
                cols.append((f"rho {a}", lambda w, a=a, fig=fig: _mark(fig, e["rho"], ".3f")
                             if (e := edm_entry(c.edm, c.sources.edm, a, w)) is not None else NOT_RUN))
    if c.latents is not None:
        for name, figs in s.pca.items():
            def cell(w, name=name, figs=figs):
                entry = c.latents.get(w)
                layer = latent_layer(entry, name) if isinstance(entry, Mapping) else None
                if layer is None:
                    return NOT_RUN
                vals = [100 * at(c.latents, c.sources.latents, [w, layer, f"pc{i + 1}"]) for i in range(len(figs))]
                return "/".join(_mark(f, v, ".1f") for f, v in zip(figs, vals))
            cols.append((f"PCA {name.replace('_', ' ')} %", cell))
    if c.curves:
        cols.append(("converged at env steps", lambda w: _mark(s.convergence, c.curves[w]["converged_at"], ",.0f")
                     if w in c.curves else NOT_RUN))
    head = ["lambda_ctrl", *(h for h, _ in cols)]
    return head, [[w, *(f(w) for _, f in cols)] for w in weights_sorted]


def counts(rows: Sequence[Row]) -> dict[str, int]:
    return {"meet": sum(r.meets == "yes" for r in rows), "miss": sum(r.meets.startswith("no:") for r in rows),
            "not_run": sum(r.meets == NOT_RUN for r in rows)}
