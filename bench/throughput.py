"""`mimic-bench throughput`: steps/s of MJX physics, the imitation env, PPO training and MuJoCo C against
the number of parallel envs (the measurements are in mimic_core.bench.throughput).

Writes reports/throughput/<device-kind>-<count>x-<UTC timestamp>.{json,csv,png}, all atomically.
"""
from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import click

from bench.common import clear_errors, params_option

DEFAULT_ENVS = "1,16,64,256,1024,4096"


def _envs(ctx, param, value):
    from mimic_core.bench.throughput import parse_env_counts

    try:
        return parse_env_counts(value)
    except ValueError as e:
        raise click.BadParameter(str(e), ctx=ctx, param=param) from None


def ram_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def git_state() -> dict:
    """The commit of the working tree and whether tracked files differ from it (None outside git)."""
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=30, check=True).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def hardware(devices: list) -> dict:
    import jax

    from bench.stac_bench import cpu_model

    return {"device_kind": devices[0].device_kind, "device_platform": devices[0].platform,
            "device_count": len(devices), "devices": [str(d) for d in devices],
            "local_device_count": jax.local_device_count(), "jax_backend": jax.default_backend(),
            "cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "ram_bytes": ram_bytes()}


def versions() -> dict:
    import platform

    from bench.stac_bench import _version

    return {"python": platform.python_version(),
            **{d: _version(d) for d in ("jax", "jaxlib", "mujoco", "mujoco-mjx", "brax", "flax")}}


def report_stem(devices: list, now: datetime) -> str:
    kind = re.sub(r"[^a-z0-9]+", "-", devices[0].device_kind.lower()).strip("-") or devices[0].platform
    return f"{kind}-{len(devices)}x-{now.strftime('%Y%m%dT%H%M%SZ')}"


def write_csv(path: Path, rows: list[dict]) -> None:
    from mimic_core.io import atomic_path

    with atomic_path(path, suffix=".csv") as tmp, tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["envs"])
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else repr(v) if isinstance(v, float) else v) for k, v in r.items()})


def write_plot(path: Path, report: dict) -> None:
    """Log-log steps/s against envs for (a)-(d), with the paper's training figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    from mimic_core.bench.throughput import RATE_KEY, TITLES
    from mimic_core.io import atomic_path

    long = [{"envs": r["envs"], "measurement": TITLES[name], "steps/s": r[name][key]}
            for r in report["results"] for name, key in RATE_KEY.items() if name in r]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    if long:
        sns.lineplot(data=pd.DataFrame(long), x="envs", y="steps/s", hue="measurement", marker="o", ax=ax)
    paper = report["paper"]["figures"]
    ax.scatter([p["envs"] for p in paper], [p["env_steps_per_s"] for p in paper], marker="*", s=160, color="black",
               zorder=5, label="paper: training, 1 and 2 A40s")
    ax.set(xscale="log", yscale="log", xlabel="parallel envs",
           ylabel=f"steps/s (control = env steps; x{report['physics']['substeps']} physics steps)",
           title=f"{report['hardware']['device_kind']} x{report['hardware']['device_count']}, "
                 f"{report['profile']} profile, {report['data']} data")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def format_table(report: dict) -> str:
    from mimic_core.bench.throughput import RATE_KEY

    head = f"  {'envs':>6s} " + " ".join(f"{h:>14s}" for h in ("(a) physics", "(b) env", "(c) train", "(d) MuJoCo C"))
    lines = [f"steps/s (control steps = env steps), {report['hardware']['device_kind']} "
             f"x{report['hardware']['device_count']}, {report['profile']} profile, {report['data']} data", head]
    for r in report["results"]:
        cells = [f"{r[n][k]:14,.0f}" if n in r else f"{'-':>14s}" for n, k in RATE_KEY.items()]
        lines.append(f"  {r['envs']:6d} " + " ".join(cells))
    lines.append("  paper (training): " + "; ".join(f"{p['env_steps_per_s']:,} at {p['envs']} envs on {p['gpus']} A40"
                                                    f"{'s' if p['gpus'] > 1 else ''}" for p in report["paper"]["figures"]))
    return "\n".join(lines)


@click.command("throughput")
@click.option("--envs", "counts", default=DEFAULT_ENVS, show_default=True, callback=_envs,
              help="Env counts, comma-separated positive integers.")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True,
              help="Target length of one timed call (each measurement and env count).")
@click.option("--devices", "which", type=click.Choice(["all", "cpu", "gpu"]), default="all", show_default=True,
              help="all: every local device of the default backend (envs sharded over them); cpu or gpu: those.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Timed calls per figure (the median is reported).")
@click.option("--out-dir", default="reports/throughput", show_default=True, type=click.Path(file_okay=False),
              help="Where the JSON, CSV and plot go.")
@click.option("--profile", default=None, help="track profile to measure (default: track.profile in params), e.g. paper.")
@params_option
@clear_errors
def throughput_cmd(counts, seconds, which, repeats, out_dir, profile, params_path):
    """Steps/s against parallel envs: MJX physics, the env, PPO training, and MuJoCo C on the CPU."""
    from tqdm import tqdm

    from mimic_core.bench.throughput import MEASUREMENTS, build_setup, run_throughput, select_devices, \
        settings_summary, csv_rows
    from mimic_core.io import write_json
    from mimic_core.params import load_params, params_hash

    params = load_params(params_path)
    devices = select_devices(which)
    s = build_setup(params, devices, profile, seconds, repeats)
    click.echo(f"throughput on {len(devices)} x {devices[0].device_kind} ({devices[0].platform}); env counts "
               f"{', '.join(map(str, counts))}; {s.profile} profile; clips: {s.clips_source}", err=True)
    now = datetime.now(timezone.utc)
    with tqdm(total=len(counts) * len(MEASUREMENTS), file=sys.stderr, dynamic_ncols=True) as bar:
        out = run_throughput(s, counts, bar)
    report = {
        "benchmark": "throughput",
        "created_utc": now.isoformat(timespec="seconds"),
        "hardware": hardware(devices),
        "versions": versions(),
        "git": git_state(),
        "params_hash": params_hash(params),
        **settings_summary(s, counts),
        **out,
    }
    stem = Path(out_dir) / report_stem(devices, now)
    json_path, csv_path, png_path = (stem.with_suffix(x) for x in (".json", ".csv", ".png"))
    write_json(json_path, report)
    write_csv(csv_path, csv_rows(report["results"]))
    write_plot(png_path, report)
    click.echo(format_table(report))
    for k in out["skipped"]:
        click.echo(f"skipped {k['envs']} envs: {k['reason']}")
    if out["stopped"]:
        st = out["stopped"]
        click.echo(f"stopped at {st['envs']} envs: out of memory in {st['measurement']} ({st['error']}); "
                   f"the largest env count that fits: {out['largest_envs'] or 'none'}")
    click.echo(f"wrote {json_path}, {csv_path.name}, {png_path.name}")
