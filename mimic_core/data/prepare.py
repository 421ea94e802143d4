"""The `prepare` stage: raw keypoints and EMG -> prepared arrays, plus their metrics.

Keypoints: loaded in their declared format and units, converted to metres, put in the
model's keypoint order, cut to the clip window, missing points masked.
EMG: envelope epochs (see `mimic_core.data.emg`). On the synthetic twin the prepared
envelopes are scored against the true activations of the muscles they record.
"""
from __future__ import annotations

import dataclasses
import glob
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from mimic_core import artifacts
from mimic_core.artifacts import PreparedEmg, PreparedKeypoints
from mimic_core.config import ClipWindow, KeypointSource, Params, PrepareEmg, TwinSection, as_params
from mimic_core.data import emg as emg_proc
from mimic_core.data import loaders
from mimic_core.data.plausible import check_clips_plausible
from mimic_core.errors import DataError, ParamsError
from mimic_core.io import atomic_dir, write_json
from mimic_core.model import load_forelimb


def find_files(pattern: str, what: str) -> list[Path]:
    """Files matching a params glob, sorted; none is an error naming the pattern."""
    files = sorted(Path(p) for p in glob.glob(pattern))
    if not files:
        raise DataError(pattern, what, "no files match this pattern (set it in params.yaml)")
    return files


def select_keypoints(kd: loaders.KeypointData, wanted: tuple[str, ...]) -> np.ndarray:
    """Columns of `kd` in the order of `wanted`; a missing name is an error naming the file."""
    missing = [n for n in wanted if n not in kd.names]
    if missing:
        raise DataError(kd.source, "names", f"keypoints {missing} of the keypoint map are not in the file; "
                        f"it has {list(kd.names)}")
    return kd.keypoints[:, [kd.names.index(n) for n in wanted]]


# Readers of the EMG formats of params `data.emg.format`.
EMG_READERS = {"twin_emg_h5": artifacts.read_twin_emg}


def cut_clip(x: np.ndarray, start: int, n: int, source: str) -> np.ndarray:
    if x.shape[0] < start + n:
        raise DataError(source, "frames", f"has {x.shape[0]} frames; the clip window needs {start + n} "
                        f"(prepare.clip.start_frame={start}, n_frames={n})")
    return x[start:start + n]


def clips_by_stem(files: list[Path], what: str) -> dict[str, Path]:
    """{clip name: file}, a clip named by its file's stem; two files of one name (in two folders) are an
    error naming both, since clips are paired and written by name."""
    by_stem: dict[str, Path] = {}
    for f in files:
        other = next((g for s, g in by_stem.items() if s.casefold() == f.stem.casefold()), None)
        if other is not None:
            raise DataError(what, "clip names", f"{other} and {f} give the same clip name {f.stem!r}; "
                            "rename one (clips are paired and written by name)")
        by_stem[f.stem] = f
    artifacts.check_clip_names(what, "clip names", list(by_stem))
    return by_stem


def prepare_keypoints(files: list[Path], kp_cfg: KeypointSource, keypoint_names: tuple[str, ...],
                      clip_cfg: ClipWindow) -> PreparedKeypoints:
    """Load, convert and cut every keypoint file."""
    clips_by_stem(files, kp_cfg.glob)
    start, n = clip_cfg.start_frame, clip_cfg.n_frames
    clips, arrays, fps = [], [], None
    for path in files:
        kd = loaders.load_keypoints(path, kp_cfg.format, units=kp_cfg.units, fps=kp_cfg.fps, names=kp_cfg.names)
        x = cut_clip(select_keypoints(kd, keypoint_names), start, n, kd.source)
        finite = np.isfinite(x).all(-1)
        if not finite.any():
            raise DataError(kd.source, "keypoints", f"every keypoint is missing (NaN) in the clip window "
                            f"frames {start}-{start + n - 1}")
        if fps is not None and kd.fps != fps:
            raise DataError(kd.source, "fps", f"frame rate {kd.fps} differs from the other clips' {fps}")
        fps = kd.fps
        clips.append(path.stem)
        arrays.append(np.where(finite[..., None], x, np.nan))
    kp = np.stack(arrays)
    return PreparedKeypoints(clips, keypoint_names, kp, np.isfinite(kp).all(-1), float(fps))


def envelope_truth_r(envelopes: np.ndarray, clip_names: list[str], onsets_s: list[float], truth_dir: Path,
                     channel_muscles: list[str], emg_cfg: PrepareEmg) -> dict[str, float]:
    """Pearson r, pooled over all epochs, between each prepared envelope and its muscle's true activation."""
    n = envelopes.shape[1]
    truth = []
    for clip, onset in zip(clip_names, onsets_s):
        path = artifacts.clip_file(truth_dir, clip)
        true = artifacts.read_truth(path)
        act, names, fps = true.activation, true.muscle_names, true.fps
        if not np.isclose(fps, emg_cfg.fps):
            raise DataError(path, "fps", f"truth at {fps} Hz, envelopes at {emg_cfg.fps} Hz")
        s0 = int(round(onset * fps))
        truth.append(act[s0:s0 + n][:, [names.index(m) for m in channel_muscles]])
    truth = np.stack(truth)
    return {m: float(np.corrcoef(envelopes[..., c].ravel(), truth[..., c].ravel())[0, 1])
            for c, m in enumerate(channel_muscles)}


def check_twin(p: Params) -> None:
    """On the synthetic twin, the twin on disk must be the one params `twin` describes.

    `mimic-bench make-twin` writes `<out>/pose-3d/*.csv` and `<out>/manifest.json` with the settings
    it used; DVC tracks the files (data.dvc) but not those settings, so they are compared here.
    """
    manifest = Path(p.data.keypoints.glob).parent.parent / "manifest.json"
    if p.data.label != "synthetic" or not manifest.is_file():
        return
    doc = json.loads(manifest.read_text())
    if doc.get("generator") != "mimic-bench make-twin":
        return
    recorded = {**doc.get("params", {}), "seed": doc.get("seed")}   # --seed overrides twin.seed
    try:
        same = TwinSection.model_validate(recorded) == p.twin
    except ValueError:
        same = False   # settings of another version of the schema
    if not same:
        now = p.twin.model_dump()
        diff = sorted(k for k in {**recorded, **now} if recorded.get(k) != now.get(k))
        raise ParamsError(f"{manifest}: the twin on disk was made with other settings than params 'twin' "
                          f"(differ: {', '.join('twin.' + k for k in diff) or 'types'}); regenerate it with "
                          f"`mimic-bench make-twin --out {manifest.parent}` (then `dvc add data/raw`), or set "
                          f"params 'twin' to the manifest's 'params'")


def run_prepare(params: Mapping[str, Any] | Params, out_dir: str | Path, metrics_path: str | Path) -> dict:
    """The whole stage: writes `out_dir`/keypoints.h5 (and emg.h5) and the metrics JSON; returns the metrics."""
    p = as_params(params)
    check_twin(p)
    data = p.data
    label = data.label
    kp_names = tuple(p.model.keypoint_map)
    files = find_files(data.keypoints.glob, "data.keypoints.glob")
    kp = prepare_keypoints(files, data.keypoints, kp_names, p.prepare.clip)
    fm = load_forelimb(p.model.xml, p.model.keypoint_map)
    plausibility = check_clips_plausible(fm, kp.keypoints, kp.clip_names, files, data.keypoints.plausibility,
                                         data.keypoints.units)
    metrics: dict[str, Any] = {
        "data": label,
        "n_clips": len(kp.clip_names),
        "n_frames": int(kp.keypoints.shape[1]),
        "fps": kp.fps,
        "keypoints": {"names": list(kp_names),
                      "missing_fraction": float(1.0 - kp.valid.mean())},
        "keypoint_plausibility": plausibility,
    }
    emg_out = None
    if data.emg.glob:
        emg_cfg = p.prepare.emg
        by_stem = clips_by_stem(find_files(data.emg.glob, "data.emg.glob"), data.emg.glob)
        missing = [c for c in kp.clip_names if c not in by_stem]
        if missing:
            raise DataError(data.emg.glob, "clips", f"no EMG file for clips {missing}")
        trials = [EMG_READERS[data.emg.format](by_stem[c]) for c in kp.clip_names]
        env, scale = emg_proc.prepare_emg(trials, emg_cfg)
        channels = list(trials[0].channels)
        onsets = [t.onset_s for t in trials]
        emg_out = (env, channels, onsets, scale)
        metrics["emg"] = {"channels": channels, "epoch_frames": int(env.shape[1]),
                          "scale_uv": dict(zip(channels, map(float, scale)))}
        if data.truth_dir:
            muscles = [p.model.emg_muscles[c] for c in channels]
            r = envelope_truth_r(env, kp.clip_names, onsets, Path(data.truth_dir), muscles, emg_cfg)
            metrics["emg"]["envelope_vs_true_activation_r"] = {c: r[m] for c, m in zip(channels, muscles)}
    with atomic_dir(out_dir) as tmp:
        artifacts.write_prepared_keypoints(tmp / "keypoints.h5", dataclasses.replace(kp, label=label))
        if emg_out is not None:
            env, channels, onsets, scale = emg_out
            artifacts.write_prepared_emg(tmp / "emg.h5", PreparedEmg(
                env, channels, kp.clip_names, np.array(onsets), scale, float(p.prepare.emg.fps),
                float(p.prepare.emg.epoch_s), label))
        write_json(metrics_path, metrics)   # before the data replace the old: a failed write leaves both old
    return metrics
