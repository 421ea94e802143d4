"""The EDM benchmark (`mimic-bench bench-edm`): our JAX simplex against pyEDM 2.5.7 on the same data.

One run measures, on a deterministic 5-D Lorenz-96 series (library of --n-lib rows, --n-pred
predictions after it):
  (a) an E x Tp scan (default E 1-10 x Tp 1-10, univariate V1, tau -1): ours as one
      simplex_scan call against one pyEDM.Simplex call per (E, Tp);
  (b) one analysis (E 3, Tp 1) with --surrogates target-shuffled surrogates: ours in one call
      against pyEDM.Simplex run once on the data and once per shuffled target column;
and how far the rho values differ.  Our first call (which compiles) is timed apart; then
--repeats runs of each side, alternating, and the medians give the ratios.  Writes JSON to
reports/benchmarks/edm-<backend>-<cores>.json (the CLI) and prints a short table.
"""
from __future__ import annotations

import os
import time
import warnings

import numpy as np

from bench.machine import hardware, package_version, versions
from mimic_core.errors import MimicError


def lorenz96(n_rows: int, dim: int = 5, forcing: float = 8.0, dt: float = 0.05, burn: int = 1000,
             seed: int = 0) -> np.ndarray:
    """Deterministic Lorenz-96 trajectory (RK4), (n_rows, dim)."""
    rng = np.random.default_rng(seed)
    x = forcing + 0.01 * rng.standard_normal(dim)

    def f(v):
        return (np.roll(v, -1) - np.roll(v, 2)) * np.roll(v, 1) - v + forcing

    out = np.empty((n_rows, dim))
    for i in range(burn + n_rows):
        k1 = f(x); k2 = f(x + dt / 2 * k1); k3 = f(x + dt / 2 * k2); k4 = f(x + dt * k3)
        x = x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        if i >= burn:
            out[i - burn] = x
    return out


def _rho(o, p):
    ok = np.isfinite(o) & np.isfinite(p)
    return float(np.corrcoef(o[ok], p[ok])[0, 1])


def default_out() -> str:
    import jax

    return f"reports/benchmarks/edm-{jax.default_backend()}-{os.cpu_count()}.json"


def run_benchmark(n_lib: int, n_pred: int, max_E: int, max_Tp: int, surrogates: int, seed: int,
                  repeats: int) -> dict:
    """Time the scan and the surrogates on both sides, alternating; return the report (JSON-ready)."""
    import pandas as pd

    from mimic_core.edm import simplex_scan, simplex_surrogates
    from mimic_core.edm.simplex import shuffled_targets

    try:
        import pyEDM
    except ImportError:  # pragma: no cover
        raise MimicError("pyEDM is needed for the comparison (a test-only dependency: pip install pyEDM)")

    n = n_lib + n_pred
    data = lorenz96(n, seed=seed)
    df = pd.DataFrame({"Time": np.arange(1, n + 1), **{f"V{i + 1}": data[:, i] for i in range(5)}})
    lib, pred = f"1 {n_lib}", f"{n_lib + 1} {n}"
    Es, Tps = list(range(1, max_E + 1)), list(range(1, max_Tp + 1))
    arr = df[["V1"]].to_numpy()

    def ours_scan():
        return simplex_scan(arr, [0], [0], lib, pred, E=Es, Tp=Tps, tau=-1)

    def ours_sur():
        return simplex_surrogates(arr, [0], [0], lib, pred, E=3, Tp=1, n_surrogates=surrogates, seed=seed)

    shuf = shuffled_targets(df["V1"].to_numpy(), surrogates, seed)
    dfs = pd.concat([df, pd.DataFrame(shuf.T, columns=[f"S{s}" for s in range(surrogates)])], axis=1)

    def ref_scan():
        out = np.full((len(Es), len(Tps)), np.nan)
        for i, E in enumerate(Es):
            for j, Tp in enumerate(Tps):
                r = pyEDM.Simplex(dataFrame=df, columns="V1", target="V1", lib=lib, pred=pred, E=E, Tp=Tp, tau=-1)
                out[i, j] = _rho(r.Observations.to_numpy(), r.Predictions.to_numpy())
        return out

    def ref_sur():
        out = []
        for tgt in ["V1"] + [f"S{s}" for s in range(surrogates)]:
            r = pyEDM.Simplex(dataFrame=dfs, columns="V1", target=tgt, lib=lib, pred=pred, E=3, Tp=1)
            out.append(_rho(r.Observations.to_numpy(), r.Predictions.to_numpy()))
        return np.asarray(out)

    def timed(fn):
        t = time.perf_counter(); r = fn(); return r, time.perf_counter() - t

    warnings.simplefilter("ignore")
    # first calls (ours compiles here), then the repeats, ours and pyEDM alternating so that
    # both sides see the same machine load
    _, t_scan_first = timed(ours_scan)
    _, t_sur_first = timed(ours_sur)
    times = {k: [] for k in ("scan", "sur", "ref_scan", "ref_sur")}
    for _ in range(repeats):
        scan, t = timed(ours_scan); times["scan"].append(t)
        ref_scan_rho, t = timed(ref_scan); times["ref_scan"].append(t)
        sur, t = timed(ours_sur); times["sur"].append(t)
        ref_sur_rho, t = timed(ref_sur); times["ref_sur"].append(t)
    med = {k: float(np.median(v)) for k, v in times.items()}
    t_scan, t_sur, t_ref_scan, t_ref_sur = med["scan"], med["sur"], med["ref_scan"], med["ref_sur"]

    d_scan = float(np.nanmax(np.abs(scan["rho"][:, 0, :, 0] - ref_scan_rho)))
    d_sur = float(max(abs(sur.rho - ref_sur_rho[0]), np.nanmax(np.abs(sur.null - ref_sur_rho[1:]))))
    report = {
        "machine": {**hardware(), "versions": {**versions(), "pyEDM": package_version("pyEDM")}},
        "data": {"kind": "Lorenz-96, 5-D, RK4 dt 0.05, seed %d" % seed, "n_lib": n_lib, "n_pred": n_pred},
        "timing": f"median of {repeats} runs per side, ours and pyEDM alternating; ours after one "
                  "first call (compile), reported apart",
        "scan": {"E": [1, max_E], "Tp": [1, max_Tp], "tau": -1,
                 "ours_first_call_s": t_scan_first, "ours_s": t_scan, "pyedm_s": t_ref_scan,
                 "ours_runs_s": times["scan"], "pyedm_runs_s": times["ref_scan"],
                 "speedup": t_ref_scan / t_scan, "speedup_first_call": t_ref_scan / t_scan_first,
                 "max_abs_rho_diff": d_scan},
        "surrogates": {"n": surrogates, "E": 3, "Tp": 1,
                       "ours_first_call_s": t_sur_first, "ours_s": t_sur, "pyedm_s": t_ref_sur,
                       "ours_runs_s": times["sur"], "pyedm_runs_s": times["ref_sur"],
                       "speedup": t_ref_sur / t_sur, "speedup_first_call": t_ref_sur / t_sur_first,
                       "max_abs_rho_diff": d_sur, "rho": sur.rho, "p_value": sur.p_value,
                       "null_mean": sur.null_mean, "null_p95": sur.null_p95},
    }
    return report


def format_table(report: dict) -> str:
    lines = [f"{'':12s}{'ours (s)':>12s}{'1st call':>10s}{'pyEDM (s)':>11s}{'ratio':>8s}{'max|drho|':>11s}"]
    for k in ("scan", "surrogates"):
        s = report[k]
        lines.append(f"{k:12s}{s['ours_s']:12.3f}{s['ours_first_call_s']:10.3f}{s['pyedm_s']:11.3f}"
                     f"{s['speedup']:8.1f}{s['max_abs_rho_diff']:11.2e}")
    return "\n".join(lines)
