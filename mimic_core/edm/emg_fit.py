"""The EMG envelopes against the simulated activations of the muscles they record, over the reach epochs:
the traces (for plots) and their mean absolute error (a metric of the `edm` stage).

Frames are aligned as the simplex analyses align them: epoch frame j of a clip is rollout frame
round(onset_s * fps) - prepare.clip.start_frame + j (`mimic_core.edm.analysis.epoch_frames`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from mimic_core.errors import ParamsError


def emg_epochs(emg_path: Path, rollouts_dir: Path, emg_muscles: Mapping[str, str], start_frame: int,
               weights: Sequence[str] | None = None) -> dict | None:
    """{weights: {w: {channel: (envelope, activation)}}, emg_label, rollout_labels, fps, muscles}, (clips, frames)
    each, for every EMG channel that `emg_muscles` maps to a muscle; None when the EMG file or every rollout is
    absent. `weights`: the rollout files to read (default: every <weight>.h5 in the folder)."""
    from mimic_core.analysis.rollouts import read_rollout
    from mimic_core.edm.analysis import epoch_frames, load_emg

    emg_path, rollouts_dir = Path(emg_path), Path(rollouts_dir)
    if weights is None:
        weights = [p.stem for p in sorted(rollouts_dir.glob("*.h5"))] if rollouts_dir.is_dir() else []
    if not emg_path.is_file() or not weights:
        return None
    emg = load_emg(emg_path)
    n = emg.envelope.shape[1]
    out: dict[str, Any] = {"weights": {}, "emg_label": emg.label, "rollout_labels": {}, "fps": emg.fps,
                           "muscles": {}}
    for w in weights:
        ro = read_rollout(rollouts_dir, w, ["activations", "actions"])
        idx, k0 = epoch_frames(emg, ro, start_frame)
        frames = k0[:, None] + np.arange(n)[None, :]
        per = {}
        for ch in emg.channels:
            if ch not in emg_muscles:
                raise ParamsError(f"params.yaml: 'model.emg_muscles' has no muscle for EMG channel {ch!r}")
            m = ro.muscle(emg_muscles[ch])
            act = np.take_along_axis(ro["activations"][..., m], frames, axis=1)
            per[ch] = (emg.envelope[idx][..., emg.channel(ch)], act)
            out["muscles"][ch] = emg_muscles[ch]
        out["weights"][w] = per
        out["rollout_labels"][w] = ro.label
    return out


def emg_mae(epochs: Mapping | None) -> dict[str, dict[str, float]]:
    """{weight: {channel: mean |activation - envelope|}} over every epoch frame of every clip."""
    if not epochs:
        return {}
    return {w: {ch: float(np.mean(np.abs(a - e))) for ch, (e, a) in per.items()}
            for w, per in epochs["weights"].items()}
