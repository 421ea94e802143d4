"""The `latents` stage: PCA of the policy's intention (the bottleneck) and of each decoder layer.

For each control-cost weight, the activity of a layer over every control step of every clip is one
sample matrix (clips x steps, units); its principal components come from the SVD of the centred
matrix, and the report gives the share of the total variance along PC1..PCn (the paper's figure:
intention 44-45 / 32-33 / 20-21 %, last decoder layer 55 / 16 / 6.5 %).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from mimic_core.analysis.rollouts import read_rollout, sweep_keys
from mimic_core.config import as_params
from mimic_core.errors import DataError


def explained_variance(x: np.ndarray, n_components: int = 3) -> np.ndarray:
    """Share of the total variance along each of the first `n_components` PCs of `x` (samples, features).

    PCs beyond min(samples - 1, features) explain nothing (0). Raises ValueError for data without variance.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"PCA needs a (samples, features) matrix with at least 2 samples, got shape {x.shape}")
    s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    var = s ** 2
    total = var.sum()
    if not total > 0:
        raise ValueError("the data have no variance")
    out = np.zeros(n_components)
    k = min(n_components, var.size)
    out[:k] = var[:k] / total
    return out


def layer_pca(a: np.ndarray, n_components: int, path: Path, layer: str) -> dict[str, Any]:
    """PCA of one layer's activity (clips, steps, units), every step of every clip a sample."""
    x = a.reshape(-1, a.shape[-1])
    try:
        ratios = explained_variance(x, n_components)
    except ValueError as e:
        raise DataError(path, layer, f"cannot do PCA: {e}") from None
    out: dict[str, Any] = {f"pc{i + 1}": float(r) for i, r in enumerate(ratios)}
    out.update(n_samples=int(x.shape[0]), n_features=int(x.shape[1]))
    return out


def run_latents(params: Mapping[str, Any], rollouts_dir: str | Path, weights: Sequence[str] | None = None,
                echo=None) -> dict[str, Any]:
    """The stage: {weight: {layer: {pc1.., n_samples, n_features}}, "data": label}."""
    p = as_params(params)
    layers, k = p.latents.layers, p.latents.n_components
    report: dict[str, Any] = {}
    labels = set()
    for key in sweep_keys(p, weights):
        ro = read_rollout(rollouts_dir, key, layers)
        labels.add(ro.label)
        report[key] = {layer: layer_pca(ro[layer], k, ro.path, layer) for layer in layers}
        if echo:
            echo(f"lambda_ctrl {key}: " + "; ".join(
                f"{layer} " + "/".join(f"{100 * v[f'pc{i + 1}']:.1f}" for i in range(min(k, 3))) + " %"
                for layer, v in report[key].items()))
    report["data"] = labels.pop() if len(labels) == 1 else "mixed: " + ", ".join(sorted(labels))
    return report
