"""The `mimic-bench` command line: a thin layer over mimic_core's pure functions."""
from __future__ import annotations

from pathlib import Path
import json
import sys

import click

from bench.common import clear_errors, params_option


@click.group()
@click.version_option(package_name="mimic-bench")
def main():
    """mimic-bench: reproduce and benchmark MIMIC-MJX (mouse forelimb imitation)."""


@main.command("make-twin")
@click.option("--seed", type=int, default=None, help="Random seed (default: twin.seed in params).")
@click.option("--out", "out_dir", default="data/raw/twin", show_default=True, type=click.Path(file_okay=False),
              help="Output folder.")
@params_option
@clear_errors
def make_twin_cmd(seed, out_dir, params_path):
    """Generate the synthetic twin: 46 reach trials with keypoints, raw EMG and ground truth."""
    from mimic_core.data.twin import make_twin
    from mimic_core.io import atomic_dir
    from mimic_core.params import load_params, section

    params = load_params(params_path)
    cfg = section(params, "twin")
    seed = cfg["seed"] if seed is None else seed
    n = int(cfg["n_trials"])
    with click.progressbar(length=n, label=f"synthetic twin (seed {seed})", file=sys.stderr) as bar:
        with atomic_dir(out_dir) as tmp:
            manifest = make_twin(tmp, seed=seed, twin_cfg=cfg, model_xml=section(params, "model.xml"),
                                 keypoint_map=section(params, "model.keypoint_map"),
                                 emg_muscles=section(params, "model.emg_muscles"),
                                 progress=lambda _: bar.update(1))
    click.echo(f"wrote {manifest['n_trials']} synthetic trials to {out_dir} "
               f"(static-optimisation torque residual, median {manifest['static_optimization']['torque_residual_rel_median']:.2g})")


@main.command("prepare")
@click.option("--out", "out_dir", default="data/prepared", show_default=True, type=click.Path(file_okay=False))
@click.option("--metrics", "metrics_path", default="reports/metrics/prepare.json", show_default=True,
              type=click.Path(dir_okay=False))
@params_option
@clear_errors
def prepare_cmd(out_dir, metrics_path, params_path):
    """Prepare raw keypoints and EMG (the `prepare` stage)."""
    from mimic_core.data.prepare import run_prepare
    from mimic_core.params import load_params

    metrics = run_prepare(load_params(params_path), out_dir, metrics_path)
    click.echo(json.dumps(metrics, indent=2, sort_keys=True))


def _parse_keypoint_map(text: str | None) -> dict[str, str] | None:
    """'Shoulder=scapula,Elbow=elbow' or a JSON/YAML mapping -> dict."""
    if not text:
        return None
    import yaml

    from mimic_core.errors import ParamsError

    if "=" in text and not text.strip().startswith("{"):
        pairs = [p.split("=", 1) for p in text.split(",") if p.strip()]
        if any(len(p) != 2 or not p[0].strip() or not p[1].strip() for p in pairs):
            raise ParamsError(f"--keypoint-map: expected NAME=BODY pairs separated by commas, got {text!r}")
        return {k.strip(): v.strip() for k, v in pairs}
    value = yaml.safe_load(text)
    if not isinstance(value, dict) or not value:
        raise ParamsError(f"--keypoint-map: expected a mapping of keypoint names to bodies, got {text!r}")
    return {str(k): str(v) for k, v in value.items()}


@main.command("register")
@click.option("--keypoints", "keypoints_path", type=click.Path(dir_okay=False), default=None,
              help="Register one clip from this file (any supported format). Without it: the `register` stage.")
@click.option("--format", "fmt", type=click.Choice(["stac_h5", "sleap_anipose_h5", "anipose_csv"]), default=None,
              help="Keypoint file format (default: detected from the file).")
@click.option("--units", type=click.Choice(["m", "cm", "mm"]), default=None,
              help="Units of the stored coordinates (default: params for the params' format; m for stac_h5).")
@click.option("--fps", type=float, default=None, help="Frame rate (default: data.keypoints.fps in params).")
@click.option("--names", default=None, help="Node names in file order, comma-separated (SLEAP-Anipose files).")
@click.option("--out", "out_path", type=click.Path(), default=None,
              help="Output HDF5 (one clip) or folder (stage; default data/registered).")
@click.option("--model", "model_xml", type=click.Path(dir_okay=False), default=None,
              help="MJCF model (default: model.xml in params).")
@click.option("--keypoint-map", default=None, help="Keypoint to body map, e.g. 'Shoulder=scapula,Elbow=elbow,Wrist=wrist_body'.")
@click.option("--prepared", default="data/prepared/keypoints.h5", show_default=True, type=click.Path(dir_okay=False),
              help="Stage mode: the prepared keypoints.")
@click.option("--metrics", "metrics_path", default="reports/metrics/registration.json", show_default=True,
              type=click.Path(dir_okay=False), help="Stage mode: where the metrics go.")
@params_option
@clear_errors
def register_cmd(keypoints_path, fmt, units, fps, names, out_path, model_xml, keypoint_map, prepared, metrics_path,
                 params_path):
    """Register keypoints to the model with STAC (JAX): one clip, or the whole `register` stage."""
    from pathlib import Path

    from mimic_core.params import load_params

    params = load_params(params_path)
    if keypoints_path is None:
        from mimic_core.stac.register import run_register

        metrics = run_register(params, Path(prepared), Path(out_path or "data/registered"), Path(metrics_path))
        e = metrics["keypoint_error_mm"]
        click.echo(f"registered {metrics['n_clips']} clips ({metrics['data']}): keypoint error "
                   f"mean {e['mean']:.3f} mm, median {e['median']:.3f} mm, p95 {e['p95']:.3f} mm")
        if "truth" in metrics:
            click.echo(f"against the truth: joint RMSE {metrics['truth']['joint_rmse_deg']:.2f} deg, "
                       f"offset error {metrics['truth']['offset_error_mm']:.3f} mm")
        return
    if out_path is None:
        raise click.UsageError("--out FILE.h5 is required with --keypoints")
    register_one(params, Path(keypoints_path), fmt, units, fps, names, Path(out_path), model_xml, keypoint_map)


def register_one(params, keypoints_path, fmt, units, fps, names, out_path, model_xml, keypoint_map):
    """Register one clip file and print its error."""
    import numpy as np

    from mimic_core.data import loaders
    from mimic_core.data.prepare import select_keypoints
    from mimic_core.errors import DataError
    from mimic_core.model import load_forelimb
    from mimic_core.stac.register import register_clips, registration_metrics, stac_settings, write_registered_h5

    kp_cfg = params["data"]["keypoints"]
    fmt = fmt or loaders.detect_format(keypoints_path)
    if units is None:
        if fmt == kp_cfg.get("format"):
            units = kp_cfg["units"]
        elif fmt == "stac_h5":
            units = "m"  # the stac-mjx schema stores metres
        else:
            raise DataError(keypoints_path, "units", f"declare the units of this {fmt} file with --units")
    kd = loaders.load_keypoints(keypoints_path, fmt, units=units, fps=fps or kp_cfg["fps"],
                                names=names.split(",") if names else kp_cfg.get("names"))
    kmap = _parse_keypoint_map(keypoint_map) or params["model"]["keypoint_map"]
    fm = load_forelimb(model_xml or params["model"]["xml"], kmap)
    x = select_keypoints(kd, fm.keypoint_names)
    cfg, off0 = stac_settings(params)
    if off0.shape != (len(fm.keypoint_names), 3):
        off0 = np.zeros((len(fm.keypoint_names), 3))  # a model of one's own: start at the body origins
    clip = keypoints_path.stem
    reg = register_clips(fm, x[None], [clip], fm.keypoint_names, kd.fps, cfg, off0, source=str(keypoints_path))
    label = params["data"].get("label", "unknown") if fmt == kp_cfg.get("format") else "unknown"
    write_registered_h5(out_path, reg, 0, fm, {"model": Path(fm.xml).name, "keypoint_map": kmap,
                                               "stac": dict(params.get("stac", {}))}, label)
    e = registration_metrics(reg, label, fm.joint_names)["keypoint_error_mm"]
    per = ", ".join(f"{k} {v:.3f}" for k, v in e["per_keypoint"].items())
    click.echo(f"{clip}: keypoint error mean {e['mean']:.3f} mm, median {e['median']:.3f} mm ({per}) -> {out_path}")


@main.command("register-clips")
@click.option("--glob", "pattern", required=True, help="Keypoint files, e.g. '../shared/real/mouse_arm_clips/*.h5'.")
@click.option("--format", "fmt", type=click.Choice(["stac_h5", "sleap_anipose_h5", "anipose_csv"]), default=None)
@click.option("--units", type=click.Choice(["m", "cm", "mm"]), required=True, help="Units of the stored coordinates.")
@click.option("--fps", type=float, required=True, help="Frame rate (Hz).")
@click.option("--label", type=click.Choice(["real", "synthetic"]), required=True, help="What the data are.")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None, help="Write one HDF5 per clip here.")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False), required=True)
@params_option
@clear_errors
def register_clips_cmd(pattern, fmt, units, fps, label, out_dir, metrics_path, params_path):
    """Register a folder of clips at once (e.g. the real clips) and write their metrics."""
    import numpy as np

    from mimic_core.data import loaders
    from mimic_core.data.prepare import find_files, select_keypoints
    from mimic_core.io import write_json
    from mimic_core.model import load_forelimb
    from mimic_core.params import load_params
    from mimic_core.stac.register import register_clips, registration_metrics, stac_settings, write_registrations

    params = load_params(params_path)
    fm = load_forelimb(params["model"]["xml"], params["model"]["keypoint_map"])
    files = find_files(pattern, "--glob")
    kds = [loaders.load_keypoints(f, fmt, units=units, fps=fps) for f in files]
    lengths = {kd.keypoints.shape[0] for kd in kds}
    if len(lengths) != 1:
        raise click.UsageError(f"clips differ in length ({sorted(lengths)} frames); register them one by one")
    x = np.stack([select_keypoints(kd, fm.keypoint_names) for kd in kds])
    cfg, off0 = stac_settings(params)
    clips = [f.stem for f in files]
    reg = register_clips(fm, x, clips, fm.keypoint_names, fps, cfg, off0, source=pattern)
    metrics = registration_metrics(reg, label, fm.joint_names)
    metrics["source"] = {"glob": pattern, "format": fmt or loaders.detect_format(files[0]), "units": units}
    if out_dir:
        write_registrations(Path(out_dir), reg, fm, params, label)
    write_json(metrics_path, metrics)
    e = metrics["keypoint_error_mm"]
    per = ", ".join(f"{k} {v:.3f}" for k, v in e["per_keypoint"].items())
    click.echo(f"registered {len(clips)} clips ({label}): mean {e['mean']:.3f} mm, median {e['median']:.3f} mm ({per})")


from bench.stac_bench import stac_bench_cmd  # noqa: E402  (registered here; its heavy imports are lazy)

main.add_command(stac_bench_cmd)

from bench.edm_bench import edm_bench_cmd  # noqa: E402
from bench.edm_cli import simplex_cmd  # noqa: E402

main.add_command(simplex_cmd)
main.add_command(edm_bench_cmd)

from bench.compare_cli import compare_cmd  # noqa: E402

main.add_command(compare_cmd)

from bench.track_cli import evaluate_cmd, train_cmd  # noqa: E402

main.add_command(train_cmd)
main.add_command(evaluate_cmd)

from bench.throughput import throughput_cmd  # noqa: E402

main.add_command(throughput_cmd)

from bench.analysis_cli import edm_cmd, latents_cmd  # noqa: E402

main.add_command(edm_cmd)
main.add_command(latents_cmd)

from bench.report_cli import report_cmd  # noqa: E402

main.add_command(report_cmd)
