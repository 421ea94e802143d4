"""The report's inputs (a light module: the CLI builds its options from it without importing the report)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


def _src(help: str, is_dir: bool = False):
    return field(metadata={"help": help, "dir": is_dir})


@dataclass(frozen=True)
class Sources:
    """Where the report reads from: the `report` stage's arguments in dvc.yaml."""

    registration: Path = _src("STAC metrics of the pipeline's clips.")
    registration_real: Path = _src("STAC metrics of the real clips.")
    tracking: Path = _src("Tracking metrics, one entry per control-cost weight.")
    tracking_real: Path = _src("Tracking metrics on the real clips.")
    edm: Path = _src("Simplex projection and EMG MAE (the `edm` stage).")
    latents: Path = _src("PCA of the intention and decoder layers.")
    training_dir: Path = _src("Per-iteration training CSVs, <weight>.csv.", True)
    throughput_dir: Path = _src("`mimic-bench throughput` reports (the newest JSON is used).", True)
    emg: Path = _src("Prepared EMG envelopes (for the EMG plot).")
    rollouts_dir: Path = _src("Rollouts, <weight>.h5 (for the EMG plot).", True)
