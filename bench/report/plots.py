"""The report's plots (seaborn), one function per PNG: None when drawn, else why it was not."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from bench.report.figures import ReportSettings
from bench.report.inputs import Collected, _is_number, edm_entry, label, latent_layer, weight_order
from bench.report.rows import fmt

PLOTS = {
    "throughput_scaling.png": "Throughput scaling",
    "registration_per_keypoint.png": "Registration error per keypoint",
    "tracking_vs_ctrl_cost.png": "Tracking error and action high-frequency power against lambda_ctrl",
    "emg_vs_activation.png": "EMG envelope against simulated activation",
    "rho_surrogates.png": "Simplex rho against its shuffled-surrogate null",
    "pca_variance.png": "PCA variance explained per layer",
    "convergence.png": "Training convergence",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.85)
    return plt, sns


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)


def _rate(result: Mapping, name: str) -> float | None:
    """The steps/s figure of one measurement: env steps where it counts them, else control steps."""
    m = result.get(name)
    if not isinstance(m, Mapping):
        return None
    v = m.get("env_steps_per_s", m.get("control_steps_per_s"))
    return v if _is_number(v) else None


def plot_throughput(c: Collected, s: ReportSettings, path: Path) -> str | None:
    if c.throughput is None:
        return f"no {c.sources.throughput_dir}/*.json"
    import pandas as pd

    plt, sns = _plt()
    src, doc = c.throughput
    titles = doc.get("titles") or {}
    long = [{"envs": r["envs"], "measurement": titles.get(name, name), "steps/s": v}
            for r in doc["results"] for name in r if (v := _rate(r, name)) is not None]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    if long:
        sns.lineplot(data=pd.DataFrame(long), x="envs", y="steps/s", hue="measurement", marker="o", ax=ax)
    ax.scatter([f.envs for f in s.throughput], [f.paper for f in s.throughput], marker="*", s=160,
               color="black", zorder=5, label="paper: training (" + ", ".join(f"{f.gpus} x {f.gpu}"
                                                                               for f in s.throughput) + ")")
    hw = doc["hardware"]
    ax.set(xscale="log", yscale="log", xlabel="parallel envs", ylabel="env (control) steps/s",
           title=f"{hw['device_kind']} x{hw['device_count']} ({src.name})")
    ax.legend(fontsize=7)
    _save(fig, path)
    return None


def _labelled(docs: Sequence[tuple[Any, Path]], data_of: Callable[[Any], Any]) -> list[tuple[str, Any]]:
    """(legend label, doc) of the docs that are there: their data label, plus the file where two labels agree."""
    there = [(label(data_of(d)), p, d) for d, p in docs if d]
    same = len({lab for lab, _, _ in there}) < len(there)
    return [(f"{lab} ({p})" if same else lab, d) for lab, p, d in there]


def plot_registration(c: Collected, s: ReportSettings, path: Path) -> str | None:
    docs = _labelled([(c.registration, c.sources.registration), (c.registration_real, c.sources.registration_real)],
                     lambda d: d.get("data", "?"))
    if not docs:
        return f"no {c.sources.registration} or {c.sources.registration_real}"
    import pandas as pd

    plt, sns = _plt()
    names = ["mean", "median", *s.registration_keypoints]
    long = [{"keypoint": k, "source": "paper", "error (mm)": f.paper}
            for k, f in {**s.registration, **s.registration_keypoints}.items() if not isinstance(f.paper, tuple)]
    for src, d in docs:
        e = d["keypoint_error_mm"]
        long += [{"keypoint": k, "source": src, "error (mm)": v} for k in names
                 if _is_number(v := (e.get(k) if k in ("mean", "median") else (e.get("per_keypoint") or {}).get(k)))]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    sns.barplot(data=pd.DataFrame(long), x="keypoint", y="error (mm)", hue="source", order=names, errorbar=None, ax=ax)
    ax.set(title="STAC registration: keypoint-to-site error", xlabel="")
    _save(fig, path)
    return None


def plot_tracking(c: Collected, s: ReportSettings, path: Path) -> str | None:
    sets = _labelled([(c.tracking, c.sources.tracking), (c.tracking_real, c.sources.tracking_real)],
                     lambda t: next(iter(t.values()))["data"])
    if not sets:
        return f"no {c.sources.tracking} or {c.sources.tracking_real}"
    import pandas as pd

    plt, sns = _plt()
    long = []
    for src, t in sets:
        for w, m in t.items():
            x = weight_order(w)[0]
            if math.isfinite(x):
                long.append({"lambda_ctrl": x, "data": src,
                             "keypoint error mean (mm)": m["keypoint_error_mm"]["mean"],
                             "action HF power (share)": m.get("action_hf_power")})
    df = pd.DataFrame(long)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, y in zip(axes, ("keypoint error mean (mm)", "action HF power (share)")):
        d = df[df[y].notna()] if y in df else df.iloc[:0]
        if len(d):
            sns.lineplot(data=d, x="lambda_ctrl", y=y, hue="data", marker="o", errorbar=None, ax=ax)
        ax.set(xlabel="control cost lambda_ctrl", ylabel=y)
    axes[0].axhline(s.tracking.paper, ls="--", color="black", lw=1, label=f"paper: {s.tracking.shown('g')} mm")
    axes[0].legend(fontsize=7)
    fig.suptitle("Tracking the reference against the control cost")
    _save(fig, path)
    return None


def plot_emg(c: Collected, s: ReportSettings, path: Path) -> str | None:
    """The traces behind edm.json's EMG MAE, read as the `edm` stage read them (its muscles and start frame)."""
    from mimic_core.edm.emg_fit import emg_epochs

    if not c.maes:
        return f"no emg_mae in {c.sources.edm}"
    epochs = emg_epochs(c.sources.emg, c.sources.rollouts_dir, c.edm["emg_mae_muscles"],
                        int(c.edm["settings"]["prepare_clip_start_frame"]), sorted(c.maes, key=weight_order))
    if epochs is None:
        return f"needs {c.sources.emg} and {c.sources.rollouts_dir}/*.h5"
    import pandas as pd

    plt, sns = _plt()
    chans = [ch for ch in s.emg_mae if any(ch in per for per in epochs["weights"].values())]
    if not chans:
        return "no EMG channel of report.emg_mae in the EMG file"
    fig, axes = plt.subplots(1, len(chans), figsize=(5.5 * len(chans), 4.2), squeeze=False)
    dt = 1000.0 / epochs["fps"]
    for ax, ch in zip(axes[0], chans):
        envelope = None
        act = []
        for w, per in epochs["weights"].items():
            if ch not in per:
                continue
            env, a = per[ch]
            envelope = env
            C, n = a.shape
            act.append(pd.DataFrame({"t (ms)": np.tile(np.arange(n) * dt, C), "value": a.ravel(),
                                     "lambda_ctrl": f"activation, lambda_ctrl {w}"}))
        C, n = envelope.shape
        sns.lineplot(data=pd.DataFrame({"t (ms)": np.tile(np.arange(n) * dt, C), "value": envelope.ravel()}),
                     x="t (ms)", y="value", color="black", errorbar="sd", label="EMG envelope (mean ± sd)", ax=ax)
        sns.lineplot(data=pd.concat(act), x="t (ms)", y="value", hue="lambda_ctrl", errorbar=None, ax=ax)
        mae = c.maes.get(s.weight, {}).get(ch)
        ax.set(title=f"{ch}: envelope vs {epochs['muscles'][ch]} activation\n"
                     f"MAE at lambda_ctrl {s.weight}: {fmt(mae, '.4f')} (paper {s.emg_mae[ch].shown('.4f')})",
               xlabel="time in the reach epoch (ms)", ylabel="envelope (scaled) / activation")
        ax.legend(fontsize=7)
    _save(fig, path)
    return None


def plot_rho(c: Collected, s: ReportSettings, path: Path) -> str | None:
    if c.edm is None:
        return f"no {c.sources.edm}"
    import pandas as pd

    analyses = [a for a in s.rho if isinstance(c.edm.get(a), Mapping) and c.edm[a]]
    if not analyses:
        return f"none of the analyses of report.rho in {c.sources.edm}"
    plt, sns = _plt()
    fig, axes = plt.subplots(1, len(analyses), figsize=(3.6 * len(analyses), 4.2), squeeze=False, sharey=True)
    for ax, a in zip(axes[0], analyses):
        weights = sorted((w for w in c.edm[a]), key=weight_order)
        entries = {w: edm_entry(c.edm, c.sources.edm, a, w) for w in weights}
        df = pd.DataFrame([{"lambda_ctrl": w, "rho": e["rho"]} for w, e in entries.items() if e["rho"] is not None])
        if len(df):
            sns.barplot(data=df, x="lambda_ctrl", y="rho", order=weights, color="tab:blue", errorbar=None, ax=ax)
        x = np.arange(len(weights))
        mean = [entries[w]["surrogate_mean"] for w in weights]
        p95 = [entries[w]["surrogate_p95"] for w in weights]
        ax.scatter(x, [np.nan if v is None else v for v in mean], color="grey", zorder=5, label="surrogates: mean")
        ax.scatter(x, [np.nan if v is None else v for v in p95], marker="_", s=400, color="black", zorder=5,
                   label="surrogates: p95")
        ax.axhline(s.rho[a].paper, ls="--", color="tab:red", lw=1, label=f"paper {s.rho[a].shown('.3f')}")
        ax.set_xticks(x, weights)
        ax.set(title=a.replace("_from_", "\nfrom "), xlabel="lambda_ctrl", ylabel="rho")
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Simplex projection rho against target-shuffled surrogates ({label(c.edm['data'])})")
    _save(fig, path)
    return None


def plot_pca(c: Collected, s: ReportSettings, path: Path) -> str | None:
    if c.latents is None:
        return f"no {c.sources.latents}"
    import pandas as pd

    weights = sorted((w for w in c.latents if w != "data"), key=weight_order)
    layers = sorted({layer for w in weights for layer in c.latents[w]},
                    key=lambda k: (k != "latent", int(k.rsplit("_", 1)[1]) if k[-1:].isdigit() else 0, k))
    if not layers:
        return f"no layers in {c.sources.latents}"
    plt, sns = _plt()
    fig, axes = plt.subplots(1, len(layers), figsize=(3.4 * len(layers), 4), squeeze=False, sharey=True)
    for ax, layer in zip(axes[0], layers):
        long = [{"PC": k[2:], "variance (%)": 100 * v, "lambda_ctrl": w}
                for w in weights for k, v in c.latents[w].get(layer, {}).items()
                if re.fullmatch(r"pc\d+", k) and _is_number(v)]
        if long:
            sns.barplot(data=pd.DataFrame(long), x="PC", y="variance (%)", hue="lambda_ctrl", errorbar=None, ax=ax)
        figs = next((f for name, f in s.pca.items()
                     if any(latent_layer(c.latents[w], name) == layer for w in weights)), None)
        for i, f in enumerate(figs or ()):
            lo, hi = f.paper if isinstance(f.paper, tuple) else (f.paper, f.paper)
            ax.plot([i - 0.4, i + 0.4], [lo, lo], color="black", lw=1.5, label="paper" if i == 0 else None)
            if hi != lo:
                ax.plot([i - 0.4, i + 0.4], [hi, hi], color="black", lw=1.5)
        ax.set(title=layer)
        ax.legend(fontsize=7)
    fig.suptitle(f"Variance explained by the top PCs ({label(c.latents.get('data', '?'))})")
    _save(fig, path)
    return None


def plot_convergence(c: Collected, s: ReportSettings, path: Path) -> str | None:
    if not c.curves:
        return f"no {c.sources.training_dir}/*.csv"
    plt, sns = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colors = sns.color_palette(n_colors=len(c.curves))
    for color, (w, cur) in zip(colors, c.curves.items()):
        ax.plot(cur["env_steps"], cur["err"], color=color, alpha=0.25, lw=0.8)
        ax.plot(cur["env_steps"], cur["smooth"], color=color, lw=1.6, label=f"lambda_ctrl {w}")
        i = int(np.searchsorted(cur["env_steps"], cur["converged_at"]))
        ax.scatter([cur["converged_at"]], [cur["smooth"][i]], color=color, marker="o", edgecolor="black", zorder=5)
    ax.set(xlabel="env steps", ylabel="joint error (deg)",
           title=f"Joint error while training (moving average of {s.smooth_iterations} iterations; "
                 f"dot: within {s.tolerance_deg:g} deg of final)")
    ax.legend(fontsize=7)
    _save(fig, path)
    return None


PLOTTERS: dict[str, Callable[[Collected, ReportSettings, Path], str | None]] = {
    "throughput_scaling.png": plot_throughput,
    "registration_per_keypoint.png": plot_registration,
    "tracking_vs_ctrl_cost.png": plot_tracking,
    "emg_vs_activation.png": plot_emg,
    "rho_surrogates.png": plot_rho,
    "pca_variance.png": plot_pca,
    "convergence.png": plot_convergence,
}


def make_plots(c: Collected, s: ReportSettings, folder: Path) -> dict[str, str | None]:
    """Every plot into `folder`: {file name: None when drawn, else why it was not}."""
    return {name: fn(c, s, Path(folder) / name) for name, fn in PLOTTERS.items()}
