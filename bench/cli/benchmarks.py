"""The benchmark commands: `throughput`, `time-to-target`, `bench-stac` and `bench-edm` (the measurements are in bench.throughput,
bench.stac and bench.edm; every report is written atomically, with the machine it ran on)."""
from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

import click

from bench.cli.common import clear_errors, params_option

DEFAULT_ENVS = "1,16,64,256,1024,4096"


def _envs(ctx, param, value):
    from bench.throughput import parse_env_counts

    try:
        return parse_env_counts(value)
    except ValueError as e:
        raise click.BadParameter(str(e), ctx=ctx, param=param) from None


def _measures(ctx, param, value):
    from bench.throughput import MEASUREMENTS

    names = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in names if v not in MEASUREMENTS]
    if bad or not names:
        raise click.BadParameter(f"{', '.join(bad) or 'nothing'}: choose from {', '.join(MEASUREMENTS)}",
                                 ctx=ctx, param=param)
    return [m for m in MEASUREMENTS if m in names]


def _impls(ctx, param, value):
    from bench.throughput import parse_impls

    if value is None:
        return None
    try:
        return parse_impls(value)
    except ValueError as e:
        raise click.BadParameter(str(e), ctx=ctx, param=param) from None


@click.command("throughput")
@click.option("--envs", "counts", default=DEFAULT_ENVS, show_default=True, callback=_envs,
              help="Env counts, comma-separated positive integers.")
@click.option("--measure", "names", default="physics,env,train,mujoco_c", show_default=True, callback=_measures,
              help="Which measurements, comma-separated: physics (MJX), env, train (PPO), mujoco_c (MuJoCo C).")
@click.option("--impl", "impls", default=None, callback=_impls,
              help="MJX backends for physics, env and train, comma-separated: jax, warp (MuJoCo Warp: "
                   "pip install -e '.[warp]') [default: track.physics.impl in params].")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True,
              help="Target length of one timed call (each measurement and env count).")
@click.option("--devices", "which", type=click.Choice(["all", "cpu", "gpu"]), default="all", show_default=True,
              help="all: every local device of the default backend (envs sharded over them); cpu or gpu: those.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Timed calls per figure (the median is reported).")
@click.option("--budget-s", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Start no measurement after this many seconds; what was measured is kept "
                   "(the report is rewritten after every env count, so a killed run keeps it too).")
@click.option("--out-dir", default="reports/throughput", show_default=True, type=click.Path(file_okay=False),
              help="Where the JSON, CSV and plot go.")
@click.option("--profile", default=None, help="track profile to measure (default: track.profile in params), e.g. paper.")
@click.option("--registered", default="data/registered", show_default=True,
              help="Registered clips to drive the env (a folder or a glob); where there are none, clips synthesised "
                   "from the model.")
@params_option
@clear_errors
def throughput_cmd(counts, names, impls, seconds, which, repeats, budget_s, out_dir, profile, registered, params_path):
    """Steps/s against parallel envs: MJX physics, the env, PPO training, and MuJoCo C on the CPU."""
    from tqdm import tqdm

    from bench.machine import git_state, hardware, versions
    from bench.throughput import (TITLES, build_setup, csv_rows, default_measures, format_table, report_stem,
                                  run_throughput, select_devices, settings_summary, write_csv, write_plot)
    from mimic_core.io import write_json
    from mimic_core.params import load_params, params_hash

    params = load_params(params_path)
    devices = select_devices(which)
    s = build_setup(params, devices, registered, profile, seconds, repeats, impls=impls)
    click.echo(f"throughput on {len(devices)} x {devices[0].device_kind} ({devices[0].platform}); env counts "
               f"{', '.join(map(str, counts))}; {', '.join(names)}; MJX backends {', '.join(s.impls)}; "
               f"{s.profile} profile; clips: {s.clips_source}", err=True)
    now = datetime.now(timezone.utc)
    head = {
        "benchmark": "throughput",
        "created_utc": now.isoformat(timespec="seconds"),
        "hardware": hardware(devices),
        "versions": versions(),
        "git": git_state(),
        "params_hash": params_hash(params),
        "titles": dict(TITLES),
        "measurements": list(names),
        "impls": list(s.impls),
        "budget_s": budget_s,
        **settings_summary(s, counts),
    }
    stem = Path(out_dir) / report_stem(devices, now)
    json_path, csv_path, png_path = (stem.with_suffix(x) for x in (".json", ".csv", ".png"))

    def write(out):
        write_json(json_path, {**head, **out})
        write_csv(csv_path, csv_rows(out["results"]))

    measures = default_measures(s.impls, names)
    with tqdm(total=len(counts) * len(measures), file=sys.stderr, dynamic_ncols=True) as bar:
        out = run_throughput(s, counts, bar, measures, budget_s=budget_s, on_row=write)
    report = {**head, **out}
    write(out)
    write_plot(png_path, report)
    click.echo(format_table(report))
    for k in out["skipped"]:
        click.echo(f"skipped {k['envs']} envs: {k['reason']}")
    if out["stopped"]:
        st = out["stopped"]
        if st["reason"] == "time budget":
            click.echo(f"stopped at {st['envs']} envs before {st['measurement']}: {st['error']}")
        else:
            click.echo(f"stopped at {st['envs']} envs: out of memory in {st['measurement']} ({st['error']}); "
                       f"the largest env count that fits: {out['largest_envs'] or 'none'}")
    click.echo(f"wrote {json_path}, {csv_path.name}, {png_path.name}")


def _seeds(ctx, param, value):
    if value is None:
        return None
    try:
        seeds = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: comma-separated integers", ctx=ctx, param=param) from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise click.BadParameter(f"{value!r}: distinct comma-separated integers", ctx=ctx, param=param)
    return seeds


@click.command("time-to-target")
@click.option("--settings", "settings_path", default=None, type=click.Path(dir_okay=False),
              help="The settings (target, evaluation interval, seeds) [default: bench/time_to_target.yaml].")
@click.option("--seeds", default=None, callback=_seeds, help="Seeds, comma-separated (default: the settings').")
@click.option("--profile", default=None, help="track profile to train (default: track.profile in params), e.g. paper.")
@click.option("--devices", "which", type=click.Choice(["all", "cpu", "gpu"]), default="all", show_default=True,
              help="all: every local device of the default backend; cpu or gpu: those.")
@click.option("--budget-s", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after this many seconds; the seeds run so far are kept (a cut seed says so).")
@click.option("--registered", default="data/registered", show_default=True,
              help="Registered clips (a folder or a glob); where there are none, clips synthesised from the model.")
@click.option("--out-dir", default="reports/throughput", show_default=True, type=click.Path(file_okay=False),
              help="Where the report goes (time-to-target-<device>-<count>x-<UTC>.json).")
@params_option
@clear_errors
def time_to_target_cmd(settings_path, seeds, profile, which, budget_s, registered, out_dir, params_path):
    """Seconds and env steps of PPO training until the held-out joint error reaches a target, per seed."""
    import jax

    from bench.machine import git_state, hardware, versions
    from bench.throughput import report_stem, select_devices
    from bench.time_to_target import SETTINGS, format_table, load_settings, run_time_to_target
    from mimic_core.io import write_json
    from mimic_core.params import load_params, params_hash

    params = load_params(params_path)
    settings = load_settings(settings_path or SETTINGS, seeds)
    devices = select_devices(which)
    now = datetime.now(timezone.utc)
    head = {"benchmark": "time_to_target", "created_utc": now.isoformat(timespec="seconds"),
            "hardware": hardware(devices), "versions": versions(), "git": git_state(),
            "params_hash": params_hash(params), "budget_s": budget_s}
    path = Path(out_dir) / f"time-to-target-{report_stem(devices, now)}.json"
    with jax.default_device(devices[0]):
        rep = run_time_to_target(params, settings, registered, profile, budget_s,
                                 on_seed=lambda partial: write_json(path, {**head, **partial}),
                                 log=lambda msg: click.echo(msg, err=True))
    write_json(path, {**head, **rep})
    click.echo(format_table(rep))
    click.echo(f"wrote {path}")


@click.command("bench-stac")
@click.option("--clips", type=click.IntRange(min=1), default=46, show_default=True, help="Clips to register.")
@click.option("--frames", type=click.IntRange(min=1), default=100, show_default=True, help="Frames per clip (the first N).")
@click.option("--baseline-clips", type=click.IntRange(min=1), default=None,
              help="Run the scipy baseline on the first N clips only and extrapolate its time linearly "
                   "[default: all clips].")
@click.option("--keypoints", "keypoints_path", default="data/prepared/keypoints.h5", show_default=True,
              type=click.Path(dir_okay=False), help="Prepared keypoints (HDF5).")
@click.option("--out", "out_path", default=None, type=click.Path(dir_okay=False),
              help="Report path [default: reports/benchmarks/stac-<jax backend>-<cpu count>.json].")
@params_option
@clear_errors
def bench_stac_cmd(clips, frames, baseline_clips, keypoints_path, out_path, params_path):
    """Time STAC registration: our JAX solver (compile included, and steady) against a scipy baseline."""
    from bench.stac import default_out, format_table, run_benchmark
    from mimic_core.io import write_json
    from mimic_core.params import load_params

    out_path = out_path or default_out()
    report = run_benchmark(
        load_params(params_path), keypoints_path, clips, frames, baseline_clips,
        progress_bar=lambda n: click.progressbar(length=n, label=f"scipy baseline ({n} clips)", file=sys.stderr),
        log=lambda msg: click.echo(msg, err=True))
    write_json(out_path, report)
    click.echo(format_table(report))
    click.echo(f"wrote {out_path}")


@click.command("bench-edm")
@click.option("--n-lib", default=10_000, show_default=True, type=click.IntRange(min=1), help="Library rows.")
@click.option("--n-pred", default=2_000, show_default=True, type=click.IntRange(min=1), help="Prediction rows.")
@click.option("--max-E", "max_E", default=10, show_default=True, type=click.IntRange(min=1), help="Scan E 1..max-E.")
@click.option("--max-Tp", "max_Tp", default=10, show_default=True, type=click.IntRange(min=1), help="Scan Tp 1..max-Tp.")
@click.option("--surrogates", default=100, show_default=True, type=click.IntRange(min=1),
              help="Surrogates (shuffled, and phase-randomised).")
@click.option("--smap-lib", default=1000, show_default=True, type=click.IntRange(min=10), help="S-map library rows.")
@click.option("--smap-pred", default=500, show_default=True, type=click.IntRange(min=10), help="S-map predictions.")
@click.option("--ccm-rows", default=1000, show_default=True, type=click.IntRange(min=30),
              help="CCM rows (5 library sizes from 20 to all of them).")
@click.option("--ccm-sample", default=100, show_default=True, type=click.IntRange(min=1), help="CCM libraries per size.")
@click.option("--kedm/--no-kedm", default=True, show_default=True, help="Run kEDM beside them when it is installed.")
@click.option("--pool/--no-pool", default=True, show_default=True,
              help="Also time pyEDM.CCM with its worker pool (its default).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(min=1),
              help="Timed repeats of each workload on each side (after one warm-up call of ours); the median is reported.")
@click.option("--out", "out_path", default=None, type=click.Path(dir_okay=False),
              help="Report path (default reports/benchmarks/edm-<backend>-<cores>.json).")
@clear_errors
def bench_edm_cmd(n_lib, n_pred, max_E, max_Tp, surrogates, smap_lib, smap_pred, ccm_rows, ccm_sample, kedm, pool,
                  seed, repeats, out_path):
    """Benchmark EDM: simplex scan, surrogates, S-map, CCM: ours (JAX) vs pyEDM (and kEDM), same data, one run."""
    from bench.edm import default_out, format_table, run_benchmark
    from mimic_core.io import write_json

    report = run_benchmark(n_lib, n_pred, max_E, max_Tp, surrogates, seed, repeats, smap_lib=smap_lib,
                           smap_pred=smap_pred, ccm_rows=ccm_rows, ccm_sample=ccm_sample, kedm=kedm, pool=pool,
                           log=lambda msg: click.echo(msg, err=True))
    out_path = out_path or default_out()
    write_json(out_path, report)
    click.echo(format_table(report))
    click.echo(f"wrote {out_path}")


COMMANDS = [throughput_cmd, time_to_target_cmd, bench_stac_cmd, bench_edm_cmd]
