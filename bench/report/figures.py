"""The paper's figures (bench/paper_figures.yaml) and the rule by which a value meets each, checked.

* ``lower``  -- value <= paper + tol (lower is better: at most the paper's figure)
* ``higher`` -- value >= paper - tol (higher is better: at least the paper's figure)
* ``below``  -- value < paper + tol (a threshold, e.g. tracking error < 1 mm)
* ``within`` -- |value - paper| <= tol (a figure to reproduce, e.g. rho)
* ``range``  -- paper - tol <= value <= paper + tol for a published range [lo, hi]
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from mimic_core.config import (Float, NonNegFloat, PosInt, ReportSection, Section, Str, _ordered, as_params,
                               validate, weight_key)
from mimic_core.errors import ParamsError

FIGURES_FILE = Path(__file__).resolve().parents[1] / "paper_figures.yaml"   # the packaged copy
Pair = Annotated[list[Float], Field(min_length=2, max_length=2), AfterValidator(_ordered), AfterValidator(tuple)]


class Figure(Section):
    """A published figure and when a value meets it."""

    paper: Float | Pair
    meets: Literal["lower", "higher", "below", "within", "range"]
    tol: NonNegFloat = 0.0

    @model_validator(mode="after")
    def _range_is_a_pair(self):
        if (self.meets == "range") != isinstance(self.paper, tuple):
            raise ValueError("'paper' must be [low, high] for meets: range, and a number otherwise"
                             f" (meets: {self.meets}, paper: {self.paper!r})")
        return self

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



class ThroughputFigure(Figure):
    """A published training throughput (env steps/s) and where it was measured."""

    envs: PosInt
    gpus: PosInt
    gpu: Str


class RegistrationFigures(Section):
    mean: Figure
    median: Figure
    per_keypoint: dict[Str, Figure] = {}


NonEmpty = Field(min_length=1)


class PaperFigures(Section):
    """bench/paper_figures.yaml: every figure of the paper the report and the throughput plot use."""

    source: Str
    registration_mm: RegistrationFigures
    tracking_mm: Figure
    rho: Annotated[dict[Str, Figure], NonEmpty]                  # edm analysis -> figure
    rho_shuffled: Figure
    emg_mae: Annotated[dict[Str, Figure], NonEmpty]              # EMG channel -> figure
    pca_percent: Annotated[dict[Str, Annotated[list[Figure], NonEmpty]], NonEmpty]   # layer -> PC1.. figures
    throughput: Annotated[list[ThroughputFigure], NonEmpty]
    convergence: Figure                                          # env steps


def load_figures(path: str | os.PathLike = FIGURES_FILE) -> PaperFigures:
    """Read and check a paper-figures file: a ParamsError names the file and every bad key."""
    from mimic_core.params import load_params

    return validate(PaperFigures, load_params(path), "", str(path))


@dataclass(frozen=True)
class ReportSettings:
    """The figures and the report's own settings, in the shape the rows and plots read."""

    weight: str                              # the policy set against the paper's analysis figures
    registration: dict[str, Figure]          # mean, median
    registration_keypoints: dict[str, Figure]
    tracking: Figure
    rho: dict[str, Figure]
    rho_shuffled: Figure
    emg_mae: dict[str, Figure]
    pca: dict[str, tuple[Figure, ...]]       # layer (or last_decoder_layer) -> PC1.. figures, percent
    throughput: tuple[ThroughputFigure, ...]
    convergence: Figure
    smooth_iterations: int
    tolerance_deg: float


def report_settings(report: ReportSection, figures: PaperFigures) -> ReportSettings:
    """params `report` and the paper's figures, as the report reads them."""
    if not isinstance(report, ReportSection) or not isinstance(figures, PaperFigures):
        raise ParamsError("report_settings takes a checked params `report` section and PaperFigures")
    reg = figures.registration_mm
    return ReportSettings(
        weight=weight_key(report.weight), registration={"mean": reg.mean, "median": reg.median},
        registration_keypoints=dict(reg.per_keypoint), tracking=figures.tracking_mm, rho=dict(figures.rho),
        rho_shuffled=figures.rho_shuffled, emg_mae=dict(figures.emg_mae),
        pca={k: tuple(v) for k, v in figures.pca_percent.items()}, throughput=tuple(figures.throughput),
        convergence=figures.convergence, smooth_iterations=report.convergence.smooth_iterations,
        tolerance_deg=report.convergence.tolerance_deg)


def settings_from(params: Any, figures: str | os.PathLike = FIGURES_FILE) -> ReportSettings:
    """The report's settings from params (a dict or `Params`) and a figures file."""
    return report_settings(as_params(params).report, load_figures(figures))
