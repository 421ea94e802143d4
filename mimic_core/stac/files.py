"""Register keypoint files of any supported format, outside the pipeline: one clip, or a glob of clips
(e.g. a lab's own recordings, or the real clips), with the same solver and scoring as the stage."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from mimic_core.data import loaders
from mimic_core.data.plausible import check_clips_plausible
from mimic_core.data.prepare import clips_by_stem, find_files, select_keypoints
from mimic_core.errors import DataError
from mimic_core.io import write_json
from mimic_core.model import load_forelimb
from mimic_core.stac.register import (highpass_rms_deg, hf_cutoff, register_clips, registration_metrics,
                                      stac_settings, write_registered_h5, write_registrations)


def register_file(params: Mapping[str, Any], keypoints_path: Path, out_path: Path, fmt: str | None = None,
                  units: str | None = None, fps: float | None = None, names: Sequence[str] | None = None,
                  model_xml: str | None = None, keypoint_map: Mapping[str, str] | None = None,
                  plausibility_override: str | None = None) -> dict:
    """Register one clip file into `out_path` (stac-mjx schema); returns its metrics.

    Units default to the params' for a file of the params' format, metres for stac_h5 (the schema
    stores metres), and must be declared otherwise. The keypoints are checked against the model's
    geometry first, unless `plausibility_override` says why not (recorded in the metrics)."""
    kp_cfg = params["data"]["keypoints"]
    fmt = fmt or loaders.detect_format(keypoints_path)
    if units is None:
        if fmt == kp_cfg["format"]:
            units = kp_cfg["units"]
        elif fmt == "stac_h5":
            units = "m"
        else:
            raise DataError(keypoints_path, "units", f"declare the units of this {fmt} file with --units")
    kd = loaders.load_keypoints(keypoints_path, fmt, units=units, fps=fps or kp_cfg["fps"],
                                names=list(names) if names else kp_cfg.get("names"))
    kmap = dict(keypoint_map or params["model"]["keypoint_map"])
    fm = load_forelimb(model_xml or params["model"]["xml"], kmap)
    x = select_keypoints(kd, fm.keypoint_names)
    cfg, off0 = stac_settings(params)
    if off0.shape != (len(fm.keypoint_names), 3):
        off0 = np.zeros((len(fm.keypoint_names), 3))  # a model of one's own: start at the body origins
    clip = Path(keypoints_path).stem
    plausibility = check_clips_plausible(fm, x[None], [clip], [keypoints_path], _plausibility(params), units,
                                         override=plausibility_override)
    reg = register_clips(fm, x[None], [clip], fm.keypoint_names, kd.fps, cfg, off0, source=str(keypoints_path))
    label = params["data"]["label"] if fmt == kp_cfg["format"] else "unknown"
    write_registered_h5(Path(out_path), reg, 0, fm, {"model": Path(fm.xml).name, "keypoint_map": kmap,
                                                     "stac": dict(params["stac"])}, label)
    return {**registration_metrics(reg, label, fm.joint_names, hf_cutoff_hz=hf_cutoff(params)),
            "keypoint_plausibility": plausibility}


def _plausibility(params: Mapping[str, Any]):
    from mimic_core.config import as_params

    return as_params(params).data.keypoints.plausibility


def register_glob(params: Mapping[str, Any], pattern: str, units: str, fps: float, label: str,
                  metrics_path: Path, out_dir: Path | None = None, fmt: str | None = None, log=None,
                  plausibility_override: str | None = None) -> dict:
    """Register every file the glob matches (clips of one length) at once; metrics to `metrics_path`,
    one HDF5 per clip into `out_dir` if given."""
    fm = load_forelimb(params["model"]["xml"], params["model"]["keypoint_map"])
    files = find_files(pattern, "--glob")
    clips = list(clips_by_stem(files, pattern))
    kds = [loaders.load_keypoints(f, fmt, units=units, fps=fps) for f in files]
    lengths = sorted({kd.keypoints.shape[0] for kd in kds})
    if len(lengths) != 1:
        raise DataError(pattern, "frames", f"clips differ in length ({lengths} frames); register them one by one")
    x = np.stack([select_keypoints(kd, fm.keypoint_names) for kd in kds])
    cfg, off0 = stac_settings(params)
    plausibility = check_clips_plausible(fm, x, clips, files, _plausibility(params), units, log,
                                         override=plausibility_override)
    reg = register_clips(fm, x, clips, fm.keypoint_names, fps, cfg, off0, source=pattern, log=log)
    cutoff = hf_cutoff(params)
    metrics = registration_metrics(reg, label, fm.joint_names, hf_cutoff_hz=cutoff)
    fmt = fmt or loaders.detect_format(files[0])
    metrics["source"] = {"glob": pattern, "format": fmt, "units": units}
    metrics["keypoint_plausibility"] = plausibility
    if fmt == "stac_h5":   # the original tool's own registration, stored in the files: its HF content beside ours
        from mimic_core import artifacts

        original = np.stack([artifacts.read_registered(f).qpos for f in files])
        metrics["original"] = {"joint_hf_rms_deg": highpass_rms_deg(original, fps, cutoff, fm.joint_names)}
    if out_dir:
        write_registrations(Path(out_dir), reg, fm, params, label)
    write_json(metrics_path, metrics)
    return metrics
