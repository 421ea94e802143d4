"""The paper's figures and the rule by which a value meets each (params `report`), checked.

* ``lower``  -- value <= paper + tol (lower is better: at most the paper's figure)
* ``higher`` -- value >= paper - tol (higher is better: at least the paper's figure)
* ``below``  -- value < paper + tol (a threshold, e.g. tracking error < 1 mm)
* ``within`` -- |value - paper| <= tol (a figure to reproduce, e.g. rho)
* ``range``  -- paper - tol <= value <= paper + tol for a published range [lo, hi]
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from bench.report.inputs import _is_number
from mimic_core.errors import ParamsError

RULES = ("lower", "higher", "below", "within", "range")


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
