"""The EDM benchmark (`mimic-bench bench-edm`): ours against pyEDM 2.5.7 (and kEDM, when installed) on the
same data, in one run.

On a deterministic 5-D Lorenz-96 series:
  (a) scan: an E x Tp simplex scan (default E 1-10 x Tp 1-10, V1, tau -1; library --n-lib rows,
      --n-pred predictions after it): ours as one simplex_scan call against one pyEDM.Simplex call per
      (E, Tp);
  (b) surrogates: one simplex analysis (E 3, Tp 1) with --surrogates target-shuffled surrogates, ours in
      one call against pyEDM.Simplex on the data and on each shuffled target;
  (c) ebisuzaki: the same with phase-randomised surrogates (each side draws its own: the rho of the
      data is compared, the nulls' means are reported);
  (d) smap: an S-map theta scan (pyEDM PredictNonlinear's 15 thetas, E 3, Tp 1) on the first --smap-lib
      rows predicting the --smap-pred after them: ours as one predict_nonlinear call against pyEDM.SMap
      per theta;
  (e) ccm: CCM of V1 and V3 (E 3, both directions) on the first --ccm-rows rows, 5 library sizes x
      --ccm-sample libraries, one seed: ours against pyEDM.CCM sequential and with its default worker
      pool (the same libraries: rho compared).
kEDM (float32, its own conventions: see ``_kedm_side``) runs each workload beside them when importable.
Our first call of each (which compiles) is timed apart; then --repeats runs of each side, alternating,
and the medians give the ratios.  Writes JSON to reports/benchmarks/edm-<backend>-<cores>.json (the
CLI) and prints a short table.
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


def _kedm():
    try:
        import kedm
    except ImportError:
        return None
    return kedm


def _kedm_side(kedm, x, n_lib, n_pred, Es, Tps, thetas, smap_lib, smap_pred, ccm_x, ccm_y, lib_sizes,
               ccm_sample, seed, sur_targets):
    """kEDM's calls for each workload, in float32 (its only precision).  Conventions aligned so that each
    call predicts the rows pyEDM predicts: kEDM embeds the prediction series on its own, so it is handed
    from (E - 1) rows before the first prediction row; its tau is positive for past lags (pyEDM's -1 is
    kEDM's 1); CCM draws its own libraries (kEDM seeds its own generator), so its rho differs from
    pyEDM's by the sampling spread, and it has no exclusion radius (0 here on every side)."""
    f32 = np.float32

    def lp(series, E, lib_rows, pred_rows):
        return series[:lib_rows].astype(f32), series[lib_rows - (E - 1):lib_rows + pred_rows].astype(f32)

    def scan():
        out = np.full((len(Es), len(Tps)), np.nan)
        for i, E in enumerate(Es):
            lib, pred = lp(x, E, n_lib, n_pred)
            for j, Tp in enumerate(Tps):
                out[i, j] = kedm.eval_simplex(lib, pred, E=E, tau=1, Tp=Tp)
        return out

    def smap():
        # kEDM's eval_smap scores against its target series, which it needs the library's length of;
        # so the predictions are taken and scored here against the rows pyEDM scores
        lib, pred = lp(x, 3, smap_lib, smap_pred)
        obs = x[smap_lib + 1:smap_lib + smap_pred]
        return np.array([_rho(obs, np.asarray(kedm.smap(lib, pred, target=lib, E=3, tau=1, Tp=1, theta=float(t)),
                                              np.float64)[:len(obs)]) for t in thetas])

    def ccm():
        a = kedm.ccm(ccm_x.astype(f32), ccm_y.astype(f32), lib_sizes=lib_sizes, sample=ccm_sample, E=3, tau=1, Tp=0,
                     seed=seed + 1)
        b = kedm.ccm(ccm_y.astype(f32), ccm_x.astype(f32), lib_sizes=lib_sizes, sample=ccm_sample, E=3, tau=1, Tp=0,
                     seed=seed + 1)
        return np.array([a, b])

    def surrogates(targets):
        lib, pred = lp(x, 3, n_lib, n_pred)
        out = []
        for tg in targets:
            p = np.asarray(kedm.simplex(lib, pred, target=tg[:n_lib].astype(f32), E=3, tau=1, Tp=1), np.float64)
            obs = tg[n_lib + 1:n_lib + n_pred]          # Tp 1: the last prediction lies past the rows
            out.append(_rho(obs, p[:len(obs)]))
        return np.array(out)

    return {"scan": scan, "smap": smap, "ccm": ccm, "surrogates": lambda: surrogates(sur_targets[0]),
            "ebisuzaki": lambda: surrogates(sur_targets[1])}


def _lib_sizes(rows: int) -> list[int]:
    """5 library sizes, log-spaced from 20 to the whole library (E 3: rows - 2)."""
    top = rows - 2
    return sorted({int(round(v)) for v in np.geomspace(20, top, 5)})


def run_benchmark(n_lib: int, n_pred: int, max_E: int, max_Tp: int, surrogates: int, seed: int,
                  repeats: int, smap_lib: int = 1000, smap_pred: int = 500, ccm_rows: int = 1000,
                  ccm_sample: int = 100, kedm: bool = True, pool: bool = True, log=None) -> dict:
    """Time every workload on every side, alternating; return the report (JSON-ready)."""
    import pandas as pd

    from mimic_core.edm import predict_nonlinear, simplex_scan, simplex_surrogates
    from mimic_core.edm.ccm import ccm
    from mimic_core.edm.simplex import shuffled_targets
    from mimic_core.edm.surrogates import make_surrogates

    try:
        import pyEDM
    except ImportError:  # pragma: no cover
        raise MimicError("pyEDM is needed for the comparison (a test-only dependency: pip install pyEDM)")
    log = log or (lambda msg: None)

    n = max(n_lib + n_pred, smap_lib + smap_pred, ccm_rows)
    data = lorenz96(n, seed=seed)
    df = pd.DataFrame({"Time": np.arange(1, n + 1), **{f"V{i + 1}": data[:, i] for i in range(5)}})
    lib, pred = f"1 {n_lib}", f"{n_lib + 1} {n_lib + n_pred}"
    Es, Tps = list(range(1, max_E + 1)), list(range(1, max_Tp + 1))
    thetas = [0.01, 0.1, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 4, 5, 6, 7, 8, 9]
    slib, spred = f"1 {smap_lib}", f"{smap_lib + 1} {smap_lib + smap_pred}"
    dfc = df.iloc[:ccm_rows].reset_index(drop=True)
    sizes = _lib_sizes(ccm_rows)
    arr = df[["V1"]].to_numpy()
    v1 = df["V1"].to_numpy()
    shuf = shuffled_targets(v1, surrogates, seed)
    ebi = make_surrogates(v1, "ebisuzaki", surrogates, seed)
    dfs = pd.concat([df, pd.DataFrame(shuf.T, columns=[f"S{s}" for s in range(surrogates)])], axis=1)

    def simplex_rho(frame, tgt):
        r = pyEDM.Simplex(dataFrame=frame, columns="V1", target=tgt, lib=lib, pred=pred, E=3, Tp=1)
        return _rho(r.Observations.to_numpy(), r.Predictions.to_numpy())

    def ref_scan():
        out = np.full((len(Es), len(Tps)), np.nan)
        for i, E in enumerate(Es):
            for j, Tp in enumerate(Tps):
                r = pyEDM.Simplex(dataFrame=df, columns="V1", target="V1", lib=lib, pred=pred, E=E, Tp=Tp, tau=-1)
                out[i, j] = _rho(r.Observations.to_numpy(), r.Predictions.to_numpy())
        return out

    def ref_sur():
        return np.asarray([simplex_rho(dfs, t) for t in ["V1"] + [f"S{s}" for s in range(surrogates)]])

    def ref_ebi():
        # pyEDM's own surrogates (SurrogateData draws with Python's random): generating them is part of its time
        sd = pyEDM.SurrogateData(dataFrame=df[["Time", "V1"]], column="V1", method="ebisuzaki",
                                 numSurrogates=surrogates)
        frame = pd.concat([df, sd.iloc[:, 1:]], axis=1)
        return np.asarray([simplex_rho(frame, t) for t in ["V1"] + list(sd.columns[1:])])

    def ref_smap():
        out = []
        for th in thetas:
            r = pyEDM.SMap(dataFrame=df, columns="V1", target="V1", lib=slib, pred=spred, E=3, Tp=1, theta=th)
            P = r["predictions"]
            out.append(_rho(P["Observations"].to_numpy(), P["Predictions"].to_numpy()))
        return np.asarray(out)

    def ref_ccm(parallel):
        r = pyEDM.CCM(dataFrame=dfc, columns="V1", target="V3", libSizes=sizes, sample=ccm_sample, E=3, seed=seed,
                      parallel=parallel)
        return np.stack([r["V1:V3"].to_numpy(), r["V3:V1"].to_numpy()])

    def ours_ccm():
        r = ccm(dfc, "V1", "V3", sizes, sample=ccm_sample, E=3, seed=seed)
        return np.stack([r.rho_x_to_y, r.rho_y_to_x])

    ours = {
        "scan": lambda: simplex_scan(arr, [0], [0], lib, pred, E=Es, Tp=Tps, tau=-1)["rho"][:, 0, :, 0],
        "surrogates": lambda: simplex_surrogates(arr, [0], [0], lib, pred, E=3, Tp=1, n_surrogates=surrogates,
                                                 seed=seed),
        "ebisuzaki": lambda: simplex_surrogates(arr, [0], [0], lib, pred, E=3, Tp=1, n_surrogates=surrogates,
                                                seed=seed, method="ebisuzaki"),
        "smap": lambda: np.array([r["rho"] for r in predict_nonlinear(df, "V1", "V1", slib, spred, E=3, Tp=1,
                                                                      theta=thetas)]),
        "ccm": ours_ccm,
    }
    refs = {"scan": ref_scan, "surrogates": ref_sur, "ebisuzaki": ref_ebi, "smap": ref_smap,
            "ccm": lambda: ref_ccm(False)}
    extra = {"ccm": ("pyedm_pool_s", lambda: ref_ccm(True))} if pool else {}
    km = _kedm() if kedm else None
    kside = _kedm_side(km, v1, n_lib, n_pred, Es, Tps, thetas, smap_lib, smap_pred, dfc["V1"].to_numpy(),
                       dfc["V3"].to_numpy(), sizes, ccm_sample, seed, (np.concatenate([v1[None], shuf]),
                                                                       np.concatenate([v1[None], ebi]))) if km else {}

    def timed(fn):
        t = time.perf_counter(); r = fn(); return r, time.perf_counter() - t

    warnings.simplefilter("ignore")
    report = {
        "machine": {**hardware(), "versions": {**versions(), "pyEDM": package_version("pyEDM"),
                                               "kedm": package_version("kedm") if km else None}},
        "data": {"kind": "Lorenz-96, 5-D, RK4 dt 0.05, seed %d" % seed, "n_lib": n_lib, "n_pred": n_pred,
                 "smap_lib": smap_lib, "smap_pred": smap_pred, "ccm_rows": ccm_rows},
        "timing": f"median of {repeats} runs per side, ours, pyEDM and kEDM alternating; ours after one first "
                  "call (compile), reported apart; pyEDM.CCM sequential (pyedm_s) and with its worker pool "
                  "(pyedm_pool_s, its default); kEDM in float32",
    }
    for key in ("scan", "surrogates", "ebisuzaki", "smap", "ccm"):
        log(f"{key} ...")
        first_res, t_first = timed(ours[key])
        times = {"ours": [], "pyedm": []}
        sides = [("ours", ours[key]), ("pyedm", refs[key])]
        if key in extra:
            times[extra[key][0]] = []
            sides.append((extra[key][0], extra[key][1]))
        if key in kside:
            times["kedm"] = []
            sides.append(("kedm", kside[key]))
        res = {}
        for _ in range(repeats):
            for name, fn in sides:
                res[name], t = timed(fn)
                times[name].append(t)
        med = {k: float(np.median(v)) for k, v in times.items()}
        entry = {"ours_first_call_s": t_first, "ours_s": med["ours"], "pyedm_s": med["pyedm"],
                 "ours_runs_s": times["ours"], "pyedm_runs_s": times["pyedm"],
                 "speedup": med["pyedm"] / med["ours"], "speedup_first_call": med["pyedm"] / t_first}
        o, r = res["ours"], res["pyedm"]
        if key in ("surrogates", "ebisuzaki"):
            entry.update({"n": surrogates, "E": 3, "Tp": 1, "rho": o.rho, "p_value": o.p_value,
                          "null_mean": o.null_mean, "null_p95": o.null_p95})
            if key == "surrogates":
                entry["max_abs_rho_diff"] = float(max(abs(o.rho - r[0]), np.nanmax(np.abs(o.null - r[1:]))))
            else:   # each side draws its own surrogates: the data's rho is compared, the nulls described
                entry["max_abs_rho_diff"] = float(abs(o.rho - r[0]))
                entry["pyedm_null_mean"] = float(np.nanmean(r[1:]))
                entry["pyedm_p_value"] = float((1 + np.sum(r[1:] >= r[0])) / (1 + surrogates))
        else:
            entry["max_abs_rho_diff"] = float(np.nanmax(np.abs(np.asarray(o) - np.asarray(r))))
        if key == "scan":
            entry.update({"E": [1, max_E], "Tp": [1, max_Tp], "tau": -1})
        if key == "smap":
            entry.update({"theta": thetas, "E": 3, "Tp": 1})
        if key == "ccm":
            entry.update({"lib_sizes": sizes, "sample": ccm_sample, "E": 3, "columns": "V1", "target": "V3",
                          "rho_x_to_y": np.asarray(o)[0].tolist(), "rho_y_to_x": np.asarray(o)[1].tolist()})
        for name in times:
            if name not in ("ours", "pyedm"):
                entry[f"{name}_s" if name == "kedm" else name] = med[name]
                entry[f"{name}_runs_s" if name == "kedm" else name.replace("_s", "_runs_s")] = times[name]
                entry[f"speedup_vs_{name.replace('_s', '')}"] = med[name] / med["ours"]
        if "kedm" in res:
            k = np.asarray(res["kedm"], float)
            ours_vals = np.asarray([o.rho] + list(o.null)) if key in ("surrogates", "ebisuzaki") else np.asarray(o)
            if key == "ebisuzaki":
                ours_vals, k = ours_vals[:1], k[:1]
            entry["kedm_max_abs_rho_diff_vs_ours"] = float(np.nanmax(np.abs(k - ours_vals)))
        report[key] = entry
    return report


def format_table(report: dict) -> str:
    lines = [f"{'':12s}{'ours (s)':>10s}{'1st call':>10s}{'pyEDM (s)':>11s}{'ratio':>8s}{'max|drho|':>11s}"
             f"{'kEDM (s)':>10s}{'ratio':>8s}"]
    for k in ("scan", "surrogates", "ebisuzaki", "smap", "ccm"):
        if k not in report:
            continue
        s = report[k]
        kd = (f"{s['kedm_s']:10.3f}{s['speedup_vs_kedm']:8.1f}" if "kedm_s" in s else f"{'-':>10s}{'-':>8s}")
        lines.append(f"{k:12s}{s['ours_s']:10.3f}{s['ours_first_call_s']:10.3f}{s['pyedm_s']:11.3f}"
                     f"{s['speedup']:8.1f}{s['max_abs_rho_diff']:11.2e}{kd}")
        if "pyedm_pool_s" in s:
            lines.append(f"{'  (pool)':12s}{'':20s}{s['pyedm_pool_s']:11.3f}{s['speedup_vs_pyedm_pool']:8.1f}")
    return "\n".join(lines)
