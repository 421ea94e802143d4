"""The `report` stage: the paper's figures against this run's, in reports/summary.md, with plots.

Every input is optional: a file that is absent makes its rows say "not run"; a file that is there
but has the wrong shape is a DataError naming the file and the field. The figures and the rule by
which a value "meets" each of them come from params `report`:

* ``lower``  -- value <= paper + tol (lower is better: at most the paper's figure)
* ``higher`` -- value >= paper - tol (higher is better: at least the paper's figure)
* ``below``  -- value < paper + tol (a threshold, e.g. tracking error < 1 mm)
* ``within`` -- |value - paper| <= tol (a figure to reproduce, e.g. rho)
* ``range``  -- paper - tol <= value <= paper + tol for a published range [lo, hi]

Convergence: the trailing moving average of joint_error_deg over ``smooth_iterations`` training
iterations; its final value is the last smoothed value; the run has converged at the first env step
from which the smoothed error stays within ``tolerance_deg`` of that final value.

The EMG envelopes and the simulated activations are aligned as `mimic_core.edm.analysis` aligns
them: epoch frame j of a clip is rollout frame round(onset_s * fps) - prepare.clip.start_frame + j.
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from mimic_core.errors import DataError, ParamsError

NOT_RUN = "not run"
NO_FIGURE = "-"
RULES = ("lower", "higher", "below", "within", "range")
LABELS = {"synthetic": "synthetic twin", "real": "real clips"}
LAST_DECODER = "last_decoder_layer"      # params alias: the highest-numbered decoder_layer_<n> in latents.json


# ----------------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------------
def _src(default: str, help: str):
    return field(default=Path(default), metadata={"help": help})


@dataclass(frozen=True)
class Sources:
    """Where the report reads from (paths relative to the working directory)."""

    registration: Path = _src("reports/metrics/registration.json", "STAC metrics of the pipeline's clips.")
    registration_real: Path = _src("reports/real/registration.json", "STAC metrics of the real clips.")
    tracking: Path = _src("reports/metrics/tracking.json", "Tracking metrics, one entry per control-cost weight.")
    tracking_real: Path = _src("reports/real/tracking.json", "Tracking metrics on the real clips.")
    edm: Path = _src("reports/metrics/edm.json", "Simplex projection (the `edm` stage).")
    latents: Path = _src("reports/metrics/latents.json", "PCA of the intention and decoder layers.")
    training_dir: Path = _src("reports/training", "Per-iteration training CSVs, <weight>.csv.")
    throughput_dir: Path = _src("reports/throughput", "`mimic-bench throughput` reports (the newest JSON is used).")
    emg: Path = _src("data/prepared/emg.h5", "Prepared EMG envelopes.")
    rollouts_dir: Path = _src("data/rollouts", "Rollouts, <weight>.h5.")

    @classmethod
    def under(cls, root: str | os.PathLike) -> "Sources":
        """The default layout below another folder."""
        return cls(**{f.name: Path(root) / f.default for f in fields(cls)})


def load_json(path: Path) -> Any | None:
    """The parsed file, or None when it is absent."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(path, None, f"not a readable JSON file: {e}") from None


def _kind(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def at(doc: Any, path: Path, keys: Sequence[str], want: str = "number", optional: bool = False) -> Any:
    """doc[k0][k1]..., checked: want is number | number_or_null | mapping | str | list.

    A missing key (unless `optional`: then None) or a value of the wrong kind is a DataError naming
    the file and the field (keys joined by '/')."""
    node = doc
    for i, k in enumerate(keys):
        if not isinstance(node, Mapping):
            raise DataError(path, "/".join(keys[:i]) or None, f"expected a mapping (with key {k!r}), got {_kind(node)}")
        if k not in node:
            if optional:
                return None
            have = ", ".join(sorted(map(str, node))) or "nothing"
            raise DataError(path, "/".join(keys[:i + 1]), f"missing (has: {have})")
        node = node[k]
    ok = {"number": _is_number(node), "number_or_null": node is None or _is_number(node),
          "mapping": isinstance(node, Mapping), "str": isinstance(node, str), "list": isinstance(node, list)}[want]
    if not ok:
        raise DataError(path, "/".join(keys) or None,
                        f"expected {want.replace('_', ' ')}, got {_kind(node)} {json.dumps(node)[:60]}")
    return node


def weight_order(key: str) -> tuple[float, str]:
    try:
        return float(key), key
    except ValueError:
        return math.inf, key


def label(value: Any) -> str:
    """'synthetic' -> 'synthetic twin', 'real' -> 'real clips'; other labels as written."""
    return LABELS.get(str(value), str(value))


# ----------------------------------------------------------------------------------------------
# settings
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Figure:
    """A published figure and when a value meets it."""

    paper: float | tuple[float, float]
    meets: str
    tol: float = 0.0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def bounds(self) -> tuple[float, float]:
        lo, hi = self.paper if isinstance(self.paper, tuple) else (self.paper, self.paper)
        return {"lower": (-math.inf, hi + self.tol), "higher": (lo - self.tol, math.inf),
                "below": (-math.inf, hi + self.tol), "within": (lo - self.tol, hi + self.tol),
                "range": (lo - self.tol, hi + self.tol)}[self.meets]

    def verdict(self, value: float, spec: str) -> str:
        """'yes', or 'no: <how far> above|below'."""
        lo, hi = self.bounds()
        if self.meets == "below" and value >= hi:
            return f"no: {value - hi:{spec}} above" if value > hi else "no: at the threshold"
        if value > hi:
            return f"no: {value - hi:{spec}} above"
        if value < lo:
            return f"no: {lo - value:{spec}} below"
        return "yes"

    def shown(self, spec: str) -> str:
        """The paper's figure as published: 0.56, < 1, 44-45, 600,000 (`spec` with ',': thousands)."""
        g = (lambda x: f"{x:,.0f}") if "," in spec else (lambda x: f"{x:g}")   # noqa: E731
        if isinstance(self.paper, tuple):
            return f"{g(self.paper[0])}-{g(self.paper[1])}"
        return f"< {g(self.paper)}" if self.meets == "below" else g(self.paper)

    def criterion(self, spec: str) -> str:
        """The rule, e.g. '<= 0.56', '< 1', '0.802 ± 0.05', '>= 600,000'."""
        p = self.shown(spec)
        t = f"{self.tol:,.0f}" if "," in spec else f"{self.tol:g}"
        if not self.tol:
            return {"lower": f"<= {p}", "higher": f">= {p}"}.get(self.meets, p)
        return {"lower": f"<= {p} + {t}", "higher": f">= {p} - {t}", "below": f"{p} + {t}"}.get(self.meets, f"{p} ± {t}")


def _number(v: Any, where: str, lo: float | None = None) -> float:
    if not _is_number(v) or (lo is not None and v < lo):
        raise ParamsError(f"params.yaml: '{where}' must be a number" + (f" >= {lo:g}" if lo is not None else "")
                          + f", got {v!r}")
    return float(v)


def figure(cfg: Any, where: str, extra: Sequence[str] = ()) -> Figure:
    """One `{paper, meets, tol}` entry of params `report`, checked."""
    if not isinstance(cfg, Mapping):
        raise ParamsError(f"params.yaml: '{where}' must be a mapping with 'paper' and 'meets'")
    unknown = set(cfg) - {"paper", "meets", "tol", *extra}
    if unknown:
        raise ParamsError(f"params.yaml: '{where}' has unknown key(s) {sorted(unknown)} "
                          f"(valid: paper, meets, tol{''.join(', ' + e for e in extra)})")
    meets = cfg.get("meets")
    if meets not in RULES:
        raise ParamsError(f"params.yaml: '{where}.meets' must be one of {list(RULES)}, got {meets!r}")
    p = cfg.get("paper")
    if meets == "range":
        if not (isinstance(p, list) and len(p) == 2 and all(_is_number(x) for x in p) and p[0] <= p[1]):
            raise ParamsError(f"params.yaml: '{where}.paper' must be [low, high] for meets: range, got {p!r}")
        paper: float | tuple[float, float] = (float(p[0]), float(p[1]))
    else:
        paper = _number(p, f"{where}.paper")
    missing = [e for e in extra if e not in cfg]
    if missing:
        raise ParamsError(f"params.yaml: '{where}' lacks {missing}")
    return Figure(paper, meets, _number(cfg.get("tol", 0.0), f"{where}.tol", 0.0), {e: cfg[e] for e in extra})


def _mapping(cfg: Any, where: str) -> Mapping:
    if not isinstance(cfg, Mapping) or not cfg:
        raise ParamsError(f"params.yaml: '{where}' must be a non-empty mapping")
    return cfg


@dataclass(frozen=True)
class ReportSettings:
    weight: str                              # the policy set against the paper's analysis figures
    registration: dict[str, Figure]          # mean, median
    registration_keypoints: dict[str, Figure]
    tracking: Figure
    rho: dict[str, Figure]                   # edm analysis -> figure
    rho_shuffled: Figure
    emg_mae: dict[str, Figure]               # EMG channel -> figure
    pca: dict[str, tuple[Figure, ...]]       # layer (or last_decoder_layer) -> PC1.. figures, percent
    throughput: tuple[Figure, ...]           # extra: envs, gpus, gpu
    convergence: Figure
    smooth_iterations: int
    tolerance_deg: float


TOP_KEYS = {"weight", "registration_mm", "tracking_mm", "rho", "rho_shuffled", "emg_mae", "pca_percent",
            "throughput", "convergence"}


def report_settings(cfg: Any) -> ReportSettings:
    """params['report'], checked: every key known, every figure well formed."""
    from mimic_core.track.config import weight_key

    if not isinstance(cfg, Mapping):
        raise ParamsError("params.yaml: missing 'report' section")
    unknown, missing = set(cfg) - TOP_KEYS, TOP_KEYS - set(cfg)
    if unknown or missing:
        raise ParamsError("params.yaml: 'report' " + (f"has unknown key(s) {sorted(unknown)} " if unknown else "")
                          + (f"lacks {sorted(missing)} " if missing else "") + f"(keys: {sorted(TOP_KEYS)})")
    w = cfg["weight"]
    if isinstance(w, bool) or not isinstance(w, (int, float, str)):
        raise ParamsError(f"params.yaml: 'report.weight' must be a control-cost weight, got {w!r}")
    reg = _mapping(cfg["registration_mm"], "report.registration_mm")
    if set(reg) - {"mean", "median", "per_keypoint"}:
        raise ParamsError("params.yaml: 'report.registration_mm' takes mean, median and per_keypoint")
    kps = reg.get("per_keypoint") or {}
    if not isinstance(kps, Mapping):
        raise ParamsError("params.yaml: 'report.registration_mm.per_keypoint' must map keypoint names to figures")
    pca = _mapping(cfg["pca_percent"], "report.pca_percent")
    for layer, figs in pca.items():
        if not isinstance(figs, list) or not figs:
            raise ParamsError(f"params.yaml: 'report.pca_percent.{layer}' must list one figure per PC")
    thr = cfg["throughput"]
    if not isinstance(thr, list):
        raise ParamsError("params.yaml: 'report.throughput' must be a list of figures")
    conv = figure(cfg["convergence"], "report.convergence", ("smooth_iterations", "tolerance_deg"))
    smooth = conv.extra["smooth_iterations"]
    if isinstance(smooth, bool) or not isinstance(smooth, int) or smooth < 1:
        raise ParamsError(f"params.yaml: 'report.convergence.smooth_iterations' must be an integer >= 1, got {smooth!r}")
    return ReportSettings(
        weight=weight_key(w),
        registration={k: figure(reg[k], f"report.registration_mm.{k}") for k in ("mean", "median") if k in reg},
        registration_keypoints={str(k): figure(v, f"report.registration_mm.per_keypoint.{k}") for k, v in kps.items()},
        tracking=figure(cfg["tracking_mm"], "report.tracking_mm"),
        rho={str(k): figure(v, f"report.rho.{k}") for k, v in _mapping(cfg["rho"], "report.rho").items()},
        rho_shuffled=figure(cfg["rho_shuffled"], "report.rho_shuffled"),
        emg_mae={str(k): figure(v, f"report.emg_mae.{k}") for k, v in _mapping(cfg["emg_mae"], "report.emg_mae").items()},
        pca={str(k): tuple(figure(f, f"report.pca_percent.{k}[{i}]") for i, f in enumerate(v)) for k, v in pca.items()},
        throughput=tuple(figure(f, f"report.throughput[{i}]", ("envs", "gpus", "gpu")) for i, f in enumerate(thr)),
        convergence=conv, smooth_iterations=smooth,
        tolerance_deg=_number(conv.extra["tolerance_deg"], "report.convergence.tolerance_deg", 0.0))


# ----------------------------------------------------------------------------------------------
# rows
# ----------------------------------------------------------------------------------------------
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


def tracking_entries(doc: Any, path: Path) -> dict[str, Mapping]:
    """{weight: metrics}, each checked for the fields the report uses."""
    if doc is None:
        return {}
    if not isinstance(doc, Mapping) or not doc:
        raise DataError(path, None, f"expected a mapping of control-cost weights to their metrics, got {_kind(doc)}")
    out = {}
    for w in sorted(doc, key=weight_order):
        at(doc, path, [w, "keypoint_error_mm", "mean"])
        at(doc, path, [w, "data"], "str")
        for k in ("joint_error_deg", "action_hf_power", "energy", "activation_mae"):
            at(doc, path, [w, k], optional=True)
        out[w] = doc[w]
    return out


def tracking_rows(entries: Mapping[str, Mapping], path: Path, s: ReportSettings) -> list[Row]:
    sec = "Tracking error, mm"
    metric = "keypoint error mean"
    if not entries:
        return [figure_row(sec, metric, s.tracking, None, ".2f", note=_absent(path), not_run=True)]
    rows = []
    for w, m in entries.items():
        kp = m["keypoint_error_mm"]
        scored = kp.get("scored_keypoints")
        note = (f"{m.get('n_clips', '?')} clips" + (f" ({', '.join(scored)})" if isinstance(scored, list) else "")
                + f"; {path}")
        rows.append(figure_row(sec, metric, s.tracking, kp["mean"], ".2f", label(m["data"]), w, note))
    return rows


def edm_entry(doc: Any, path: Path, analysis: str, weight: str) -> Mapping | None:
    """edm.json[analysis][weight], checked; None when either is not in the file."""
    entry = at(doc, path, [analysis, weight], "mapping", optional=True)
    if entry is not None:
        for k in ("rho", "surrogate_mean", "surrogate_p95"):
            at(doc, path, [analysis, weight, k], "number_or_null")
    return entry


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


def latent_layer(entry: Mapping, name: str) -> str | None:
    """A layer of latents.json; `last_decoder_layer` -> the highest-numbered decoder_layer_<n>."""
    if name != LAST_DECODER:
        return name if name in entry else None
    dec = [k for k in entry if re.fullmatch(r"decoder_layer_\d+", str(k))]
    return max(dec, key=lambda k: int(k.rsplit("_", 1)[1])) if dec else None


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


def newest_throughput(folder: Path) -> tuple[Path, Mapping] | None:
    """The throughput report with the latest created_utc in `folder`, checked; None when there is none."""
    found = []
    for p in sorted(Path(folder).glob("*.json")) if Path(folder).is_dir() else []:
        doc = load_json(p)
        found.append((at(doc, p, ["created_utc"], "str"), p, doc))
    if not found:
        return None
    _, path, doc = max(found, key=lambda t: (t[0], t[1].name))
    for i, r in enumerate(at(doc, path, ["results"], "list")):
        at(r, path, ["envs"])
        if "train" in r:
            at(r, path, ["train", "env_steps_per_s"])
    at(doc, path, ["hardware", "device_kind"], "str")
    at(doc, path, ["hardware", "device_count"])
    return path, doc


def throughput_rows(found: tuple[Path, Mapping] | None, folder: Path, s: ReportSettings) -> list[Row]:
    sec = "Training throughput, env steps/s"
    rows = []
    for fig in s.throughput:
        envs, gpus, gpu = int(fig.extra["envs"]), fig.extra["gpus"], fig.extra["gpu"]
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


def read_training_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(env_steps, joint_error_deg) of a training CSV, checked."""
    try:
        with Path(path).open(newline="") as f:
            reader = csv.DictReader(f)
            cols = reader.fieldnames or []
            for c in ("env_steps", "joint_error_deg"):
                if c not in cols:
                    raise DataError(path, c, f"column missing (has: {', '.join(cols) or 'nothing'})")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(path, None, f"not a readable CSV file: {e}") from None
    if not rows:
        raise DataError(path, None, "no training iterations in the file")
    out = []
    for c in ("env_steps", "joint_error_deg"):
        try:
            a = np.array([float(r[c]) for r in rows])
        except (TypeError, ValueError):
            raise DataError(path, c, "holds a value that is not a number") from None
        if not np.isfinite(a).all():
            raise DataError(path, c, "holds NaN or infinite values")
        out.append(a)
    return out[0], out[1]


def smooth(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (the first values average what there is)."""
    c = np.concatenate([[0.0], np.cumsum(x, dtype=np.float64)])
    i = np.arange(1, len(x) + 1)
    lo = np.maximum(0, i - window)
    return (c[i] - c[lo]) / (i - lo)


def convergence(env_steps: np.ndarray, err: np.ndarray, window: int, tol: float) -> tuple[int, float, np.ndarray]:
    """(env steps at convergence, final smoothed error, the smoothed curve): the first env step from which the
    smoothed error stays within `tol` of its final value."""
    sm = smooth(err, window)
    off = np.flatnonzero(np.abs(sm - sm[-1]) > tol)
    i = int(off[-1]) + 1 if off.size else 0
    return int(env_steps[i]), float(sm[-1]), sm


def training_curves(folder: Path, s: ReportSettings) -> dict[str, dict]:
    """{weight: {env_steps, err, smooth, converged_at, final}} from <folder>/<weight>.csv."""
    folder = Path(folder)
    out = {}
    files = sorted(folder.glob("*.csv"), key=lambda p: weight_order(p.stem)) if folder.is_dir() else []
    for p in files:
        steps, err = read_training_csv(p)
        at_step, final, sm = convergence(steps, err, s.smooth_iterations, s.tolerance_deg)
        out[p.stem] = {"env_steps": steps, "err": err, "smooth": sm, "converged_at": at_step, "final": final,
                       "path": p}
    return out


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


# ----------------------------------------------------------------------------------------------
# EMG envelopes against the simulated activations
# ----------------------------------------------------------------------------------------------
def emg_epochs(emg_path: Path, rollouts_dir: Path, emg_muscles: Mapping[str, str], start_frame: int,
               channels: Sequence[str]) -> dict | None:
    """{weights: {w: {channel: (envelope, activation)}}, labels} over the reach epochs, (clips, frames) each,
    aligned as the `edm` stage aligns them; None when the EMG file or every rollout file is absent."""
    from mimic_core.analysis.rollouts import read_rollout
    from mimic_core.edm.analysis import epoch_frames, load_emg

    emg_path, rollouts_dir = Path(emg_path), Path(rollouts_dir)
    files = sorted(rollouts_dir.glob("*.h5"), key=lambda p: weight_order(p.stem)) if rollouts_dir.is_dir() else []
    if not emg_path.is_file() or not files:
        return None
    emg = load_emg(emg_path)
    n = emg.envelope.shape[1]
    out: dict[str, Any] = {"weights": {}, "emg_label": emg.label, "rollout_labels": {}, "fps": emg.fps,
                           "muscles": {}}
    for p in files:
        ro = read_rollout(rollouts_dir, p.stem, ["activations", "actions"])
        idx, k0 = epoch_frames(emg, ro, start_frame)
        frames = k0[:, None] + np.arange(n)[None, :]
        per = {}
        for ch in channels:
            if ch not in emg.channels:
                continue
            if ch not in emg_muscles:
                raise ParamsError(f"params.yaml: 'model.emg_muscles' has no muscle for EMG channel {ch!r}")
            m = ro.muscle(emg_muscles[ch])
            act = np.take_along_axis(ro["activations"][..., m], frames, axis=1)
            per[ch] = (emg.envelope[idx][..., emg.channel(ch)], act)
            out["muscles"][ch] = emg_muscles[ch]
        out["weights"][p.stem] = per
        out["rollout_labels"][p.stem] = ro.label
    return out


def emg_mae(epochs: Mapping | None) -> dict[str, dict[str, float]]:
    """{weight: {channel: mean |activation - envelope|}}."""
    if not epochs:
        return {}
    return {w: {ch: float(np.mean(np.abs(a - e))) for ch, (e, a) in per.items()}
            for w, per in epochs["weights"].items()}


def emg_mae_rows(epochs: Mapping | None, maes: Mapping, sources: Sources, s: ReportSettings) -> list[Row]:
    sec = "EMG mean absolute error (activation vs envelope)"
    w, rows = s.weight, []
    for ch, fig in s.emg_mae.items():
        metric = f"{ch}"
        if epochs is None:
            rows.append(figure_row(sec, metric, fig, None, ".4f", weight=w,
                                   note=f"needs {sources.emg} and {sources.rollouts_dir}/*.h5", not_run=True))
        elif w not in maes or ch not in maes[w]:
            note = (f"no {sources.rollouts_dir}/{w}.h5" if w not in maes else f"no EMG channel {ch}")
            rows.append(figure_row(sec, metric, fig, None, ".4f", weight=w, note=note, not_run=True))
        else:
            data = f"{label(epochs['rollout_labels'][w])} rollouts, {label(epochs['emg_label'])} EMG"
            rows.append(figure_row(sec, metric, fig, maes[w][ch], ".4f", data, w,
                                   f"{epochs['muscles'][ch]} activation over the reach epochs"))
    return rows


# ----------------------------------------------------------------------------------------------
# collect everything
# ----------------------------------------------------------------------------------------------
@dataclass
class Collected:
    sources: Sources
    registration: Any
    registration_real: Any
    tracking: dict[str, Mapping]
    tracking_real: dict[str, Mapping]
    edm: Any
    latents: Any
    throughput: tuple[Path, Mapping] | None
    curves: dict[str, dict]
    epochs: dict | None
    maes: dict[str, dict[str, float]]


def collect(params: Mapping[str, Any], sources: Sources, s: ReportSettings) -> Collected:
    """Read (and check) every input that is there."""
    edm = load_json(sources.edm)
    if edm is not None:
        at(edm, sources.edm, ["data"], "str")
    latents = load_json(sources.latents)
    if latents is not None:
        at(latents, sources.latents, ["data"], "str")
        for w in (k for k in latents if k not in ("data",)):
            for layer in at(latents, sources.latents, [w], "mapping"):
                at(latents, sources.latents, [w, layer], "mapping")
    start = int((params.get("prepare") or {}).get("clip", {}).get("start_frame", 0))
    epochs = emg_epochs(sources.emg, sources.rollouts_dir, (params.get("model") or {}).get("emg_muscles") or {},
                        start, list(s.emg_mae))
    return Collected(sources, load_json(sources.registration), load_json(sources.registration_real),
                     tracking_entries(load_json(sources.tracking), sources.tracking),
                     tracking_entries(load_json(sources.tracking_real), sources.tracking_real),
                     edm, latents, newest_throughput(sources.throughput_dir),
                     training_curves(sources.training_dir, s), epochs, emg_mae(epochs))


def all_rows(c: Collected, s: ReportSettings) -> list[Row]:
    src = c.sources
    return [*registration_rows(c.registration, src.registration, s),
            *registration_rows(c.registration_real, src.registration_real, s),
            *tracking_rows(c.tracking, src.tracking, s),
            *tracking_rows(c.tracking_real, src.tracking_real, s),
            *edm_rows(c.edm, src.edm, s),
            *emg_mae_rows(c.epochs, c.maes, src, s),
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


# ----------------------------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------------------------
PLOTS = {
    "throughput_scaling.png": "Throughput scaling",
    "registration_per_keypoint.png": "Registration error per keypoint",
    "tracking_vs_ctrl_cost.png": "Tracking error and action high-frequency power against lambda_ctrl",
    "emg_vs_activation.png": "EMG envelope against simulated activation",
    "rho_surrogates.png": "Simplex rho against its shuffled-surrogate null",
    "pca_variance.png": "PCA variance explained per layer",
    "convergence.png": "Training convergence",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.85)
    return plt, sns


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)


def plot_throughput(c: Collected, s: ReportSettings, path: Path) -> str | None:
    if c.throughput is None:
        return f"no {c.sources.throughput_dir}/*.json"
    import pandas as pd

    from mimic_core.bench.throughput import RATE_KEY, TITLES

    plt, sns = _plt()
    src, doc = c.throughput
    long = [{"envs": r["envs"], "measurement": TITLES.get(name, name), "steps/s": r[name][key]}
            for r in doc["results"] for name, key in RATE_KEY.items()
            if isinstance(r.get(name), Mapping) and _is_number(r[name].get(key))]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    if long:
        sns.lineplot(data=pd.DataFrame(long), x="envs", y="steps/s", hue="measurement", marker="o", ax=ax)
    ax.scatter([f.extra["envs"] for f in s.throughput], [f.paper for f in s.throughput], marker="*", s=160,
               color="black", zorder=5, label="paper: training (" + ", ".join(f"{f.extra['gpus']} x {f.extra['gpu']}"
                                                                               for f in s.throughput) + ")")
    hw = doc["hardware"]
    ax.set(xscale="log", yscale="log", xlabel="parallel envs", ylabel="env (control) steps/s",
           title=f"{hw['device_kind']} x{hw['device_count']} ({src.name})")
    ax.legend(fontsize=7)
    _save(fig, path)
    return None


def _labelled(docs: Sequence[tuple[Any, Path]], data_of: Callable[[Any], Any]) -> list[tuple[str, Any]]:
    """(legend label, doc) of the docs that are there: their data label, plus the file where two labels agree."""
    there = [(label(data_of(d)), p, d) for d, p in docs if d]
    same = len({lab for lab, _, _ in there}) < len(there)
    return [(f"{lab} ({p})" if same else lab, d) for lab, p, d in there]


def plot_registration(c: Collected, s: ReportSettings, path: Path) -> str | None:
    docs = _labelled([(c.registration, c.sources.registration), (c.registration_real, c.sources.registration_real)],
                     lambda d: d.get("data", "?"))
    if not docs:
        return f"no {c.sources.registration} or {c.sources.registration_real}"
    import pandas as pd

    plt, sns = _plt()
    names = ["mean", "median", *s.registration_keypoints]
    long = [{"keypoint": k, "source": "paper", "error (mm)": f.paper}
            for k, f in {**s.registration, **s.registration_keypoints}.items() if not isinstance(f.paper, tuple)]
    for src, d in docs:
        e = d["keypoint_error_mm"]
        long += [{"keypoint": k, "source": src, "error (mm)": v} for k in names
                 if _is_number(v := (e.get(k) if k in ("mean", "median") else (e.get("per_keypoint") or {}).get(k)))]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    sns.barplot(data=pd.DataFrame(long), x="keypoint", y="error (mm)", hue="source", order=names, errorbar=None, ax=ax)
    ax.set(title="STAC registration: keypoint-to-site error", xlabel="")
    _save(fig, path)
    return None


def plot_tracking(c: Collected, s: ReportSettings, path: Path) -> str | None:
    sets = _labelled([(c.tracking, c.sources.tracking), (c.tracking_real, c.sources.tracking_real)],
                     lambda t: next(iter(t.values()))["data"])
    if not sets:
        return f"no {c.sources.tracking} or {c.sources.tracking_real}"
    import pandas as pd

    plt, sns = _plt()
    long = []
    for src, t in sets:
        for w, m in t.items():
            x = weight_order(w)[0]
            if math.isfinite(x):
                long.append({"lambda_ctrl": x, "data": src,
                             "keypoint error mean (mm)": m["keypoint_error_mm"]["mean"],
                             "action HF power (share)": m.get("action_hf_power")})
    df = pd.DataFrame(long)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, y in zip(axes, ("keypoint error mean (mm)", "action HF power (share)")):
        d = df[df[y].notna()] if y in df else df.iloc[:0]
        if len(d):
            sns.lineplot(data=d, x="lambda_ctrl", y=y, hue="data", marker="o", errorbar=None, ax=ax)
        ax.set(xlabel="control cost lambda_ctrl", ylabel=y)
    axes[0].axhline(s.tracking.paper, ls="--", color="black", lw=1, label=f"paper: {s.tracking.shown('g')} mm")
    axes[0].legend(fontsize=7)
    fig.suptitle("Tracking the reference against the control cost")
    _save(fig, path)
    return None


def plot_emg(c: Collected, s: ReportSettings, path: Path) -> str | None:
    if c.epochs is None:
        return f"needs {c.sources.emg} and {c.sources.rollouts_dir}/*.h5"
    import pandas as pd

    plt, sns = _plt()
    chans = [ch for ch in s.emg_mae if any(ch in per for per in c.epochs["weights"].values())]
    if not chans:
        return "no EMG channel of report.emg_mae in the EMG file"
    fig, axes = plt.subplots(1, len(chans), figsize=(5.5 * len(chans), 4.2), squeeze=False)
    dt = 1000.0 / c.epochs["fps"]
    for ax, ch in zip(axes[0], chans):
        envelope = None
        act = []
        for w, per in c.epochs["weights"].items():
            if ch not in per:
                continue
            env, a = per[ch]
            envelope = env
            C, n = a.shape
            act.append(pd.DataFrame({"t (ms)": np.tile(np.arange(n) * dt, C), "value": a.ravel(),
                                     "lambda_ctrl": f"activation, lambda_ctrl {w}"}))
        C, n = envelope.shape
        sns.lineplot(data=pd.DataFrame({"t (ms)": np.tile(np.arange(n) * dt, C), "value": envelope.ravel()}),
                     x="t (ms)", y="value", color="black", errorbar="sd", label="EMG envelope (mean ± sd)", ax=ax)
        sns.lineplot(data=pd.concat(act), x="t (ms)", y="value", hue="lambda_ctrl", errorbar=None, ax=ax)
        mae = c.maes.get(s.weight, {}).get(ch)
        ax.set(title=f"{ch}: envelope vs {c.epochs['muscles'][ch]} activation\n"
                     f"MAE at lambda_ctrl {s.weight}: {fmt(mae, '.4f')} (paper {s.emg_mae[ch].shown('.4f')})",
               xlabel="time in the reach epoch (ms)", ylabel="envelope (scaled) / activation")
        ax.legend(fontsize=7)
    _save(fig, path)
    return None


def plot_rho(c: Collected, s: ReportSettings, path: Path) -> str | None:
    if c.edm is None:
        return f"no {c.sources.edm}"
    import pandas as pd

    analyses = [a for a in s.rho if isinstance(c.edm.get(a), Mapping) and c.edm[a]]
    if not analyses:
        return f"none of the analyses of report.rho in {c.sources.edm}"
    plt, sns = _plt()
    fig, axes = plt.subplots(1, len(analyses), figsize=(3.6 * len(analyses), 4.2), squeeze=False, sharey=True)
    for ax, a in zip(axes[0], analyses):
        weights = sorted((w for w in c.edm[a]), key=weight_order)
        entries = {w: edm_entry(c.edm, c.sources.edm, a, w) for w in weights}
        df = pd.DataFrame([{"lambda_ctrl": w, "rho": e["rho"]} for w, e in entries.items() if e["rho"] is not None])
        if len(df):
            sns.barplot(data=df, x="lambda_ctrl", y="rho", order=weights, color="tab:blue", errorbar=None, ax=ax)
        x = np.arange(len(weights))
        mean = [entries[w]["surrogate_mean"] for w in weights]
        p95 = [entries[w]["surrogate_p95"] for w in weights]
        ax.scatter(x, [np.nan if v is None else v for v in mean], color="grey", zorder=5, label="surrogates: mean")
        ax.scatter(x, [np.nan if v is None else v for v in p95], marker="_", s=400, color="black", zorder=5,
                   label="surrogates: p95")
        ax.axhline(s.rho[a].paper, ls="--", color="tab:red", lw=1, label=f"paper {s.rho[a].shown('.3f')}")
        ax.set_xticks(x, weights)
        ax.set(title=a.replace("_from_", "\nfrom "), xlabel="lambda_ctrl", ylabel="rho")
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Simplex projection rho against target-shuffled surrogates ({label(c.edm['data'])})")
    _save(fig, path)
    return None


def plot_pca(c: Collected, s: ReportSettings, path: Path) -> str | None:
    if c.latents is None:
        return f"no {c.sources.latents}"
    import pandas as pd

    weights = sorted((w for w in c.latents if w != "data"), key=weight_order)
    layers = sorted({layer for w in weights for layer in c.latents[w]},
                    key=lambda k: (k != "latent", int(k.rsplit("_", 1)[1]) if k[-1:].isdigit() else 0, k))
    if not layers:
        return f"no layers in {c.sources.latents}"
    plt, sns = _plt()
    fig, axes = plt.subplots(1, len(layers), figsize=(3.4 * len(layers), 4), squeeze=False, sharey=True)
    for ax, layer in zip(axes[0], layers):
        long = [{"PC": k[2:], "variance (%)": 100 * v, "lambda_ctrl": w}
                for w in weights for k, v in c.latents[w].get(layer, {}).items()
                if re.fullmatch(r"pc\d+", k) and _is_number(v)]
        if long:
            sns.barplot(data=pd.DataFrame(long), x="PC", y="variance (%)", hue="lambda_ctrl", errorbar=None, ax=ax)
        figs = next((f for name, f in s.pca.items()
                     if any(latent_layer(c.latents[w], name) == layer for w in weights)), None)
        for i, f in enumerate(figs or ()):
            lo, hi = f.paper if isinstance(f.paper, tuple) else (f.paper, f.paper)
            ax.plot([i - 0.4, i + 0.4], [lo, lo], color="black", lw=1.5, label="paper" if i == 0 else None)
            if hi != lo:
                ax.plot([i - 0.4, i + 0.4], [hi, hi], color="black", lw=1.5)
        ax.set(title=layer)
        ax.legend(fontsize=7)
    fig.suptitle(f"Variance explained by the top PCs ({label(c.latents.get('data', '?'))})")
    _save(fig, path)
    return None


def plot_convergence(c: Collected, s: ReportSettings, path: Path) -> str | None:
    if not c.curves:
        return f"no {c.sources.training_dir}/*.csv"
    plt, sns = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colors = sns.color_palette(n_colors=len(c.curves))
    for color, (w, cur) in zip(colors, c.curves.items()):
        ax.plot(cur["env_steps"], cur["err"], color=color, alpha=0.25, lw=0.8)
        ax.plot(cur["env_steps"], cur["smooth"], color=color, lw=1.6, label=f"lambda_ctrl {w}")
        i = int(np.searchsorted(cur["env_steps"], cur["converged_at"]))
        ax.scatter([cur["converged_at"]], [cur["smooth"][i]], color=color, marker="o", edgecolor="black", zorder=5)
    ax.set(xlabel="env steps", ylabel="joint error (deg)",
           title=f"Joint error while training (moving average of {s.smooth_iterations} iterations; "
                 f"dot: within {s.tolerance_deg:g} deg of final)")
    ax.legend(fontsize=7)
    _save(fig, path)
    return None


PLOTTERS: dict[str, Callable[[Collected, ReportSettings, Path], str | None]] = {
    "throughput_scaling.png": plot_throughput,
    "registration_per_keypoint.png": plot_registration,
    "tracking_vs_ctrl_cost.png": plot_tracking,
    "emg_vs_activation.png": plot_emg,
    "rho_surrogates.png": plot_rho,
    "pca_variance.png": plot_pca,
    "convergence.png": plot_convergence,
}


def make_plots(c: Collected, s: ReportSettings, folder: Path) -> dict[str, str | None]:
    """Every plot into `folder`: {file name: None when drawn, else why it was not}."""
    return {name: fn(c, s, Path(folder) / name) for name, fn in PLOTTERS.items()}


# ----------------------------------------------------------------------------------------------
# the summary
# ----------------------------------------------------------------------------------------------
def md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    clean = lambda x: str(x).replace("|", "/").replace("\n", " ")   # noqa: E731
    return ["| " + " | ".join(map(clean, head)) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(map(clean, r)) + " |" for r in rows)]


def counts(rows: Sequence[Row]) -> dict[str, int]:
    return {"meet": sum(r.meets == "yes" for r in rows), "miss": sum(r.meets.startswith("no:") for r in rows),
            "not_run": sum(r.meets == NOT_RUN for r in rows)}


def render(rows: Sequence[Row], c: Collected, s: ReportSettings, plots: Mapping[str, str | None] | None,
           plots_rel: str) -> str:
    n = counts(rows)
    lines = ["# mimic-bench: the paper against this run", "",
             "MIMIC-MJX (NeurIPS 2025, arXiv 2511.21848), mouse forelimb. Written by `mimic-bench report` (the "
             "`report` stage) from the files listed under *Inputs*; the paper's figures and the rule by which a value "
             "meets each of them are in `params.yaml` (`report`).", "",
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
                  f"that each channel records (`model.emg_muscles`), frames aligned as in the `edm` stage.", ""]
    head, table = weight_table(c, s)
    lines += ["## By control-cost weight", ""]
    if table:
        lines += ["✗: misses the paper's figure (rule as above).", "", *md_table(head, table)]
    else:
        lines += [f"{NOT_RUN}: no per-weight metrics."]
    lines += ["", "## Plots", ""]
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
    rows_in.append([f"{src.emg}, {src.rollouts_dir}",
                    f"read {len(c.epochs['weights'])} rollout files" if c.epochs else NOT_RUN])
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


def run_report(params: Mapping[str, Any], sources: Sources, out: str | os.PathLike, plots_dir: str | os.PathLike,
               plots: bool = True) -> dict[str, Any]:
    """The stage: read what is there, write `out` (Markdown) and the plots (the folder is replaced whole)."""
    from mimic_core.io import atomic_dir, atomic_path

    s = report_settings(params.get("report"))
    c = collect(params, sources, s)
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
