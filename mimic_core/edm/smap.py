"""S-map (Sugihara 1994) in JAX with pyEDM 2.5.7 semantics (``SMap`` and ``PredictNonlinear``).

The rules, from pyEDM 2.5.7 (EDM.CreateIndices, Neighbors.FindNeighbors, SMap.Project):

* Library and prediction rows, the output table and rho/MAE/RMSE are those of simplex (the same
  ``indices.plan``; see ``simplex``).
* Neighbours: every library row, less the rows within ``exclusion_radius`` of the predicted row
  (the row itself when the radius is 0 and the library holds it). pyEDM asks for
  knn = (library size - 1) neighbours, so a row that loses none of them drops its farthest one;
  which one, among tied distances, is the KD-tree's choice, so the same tree is queried here.
* Weights ``exp(-theta * d / mean(d))`` over the kept neighbours (1 for theta = 0); the local linear
  map is the least-squares solution (numpy's ``lstsq``: SVD, rcond = eps * max(rows, columns)) of
  ``W [1, x_lib] c = W y_lib(+Tp)`` and the prediction is ``c0 + c . x_pred``.
* One column: pyEDM refuses a multivariate S-map of a delay embedding ("must use embedded = True"),
  and so do we.
* ``Pred_Variance`` is ``sum(w (y - prediction)^2) / sum(w)``.

Distances are computed once per embedding; every theta is one ``vmap`` lane of one jit-compiled
call (``vmap`` over prediction rows inside), in float64.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Sequence

import numpy as np

from mimic_core.edm.embed import check_args, embed
from mimic_core.edm.indices import parse_pairs, plan as make_plan
from mimic_core.edm.simplex import SimplexResult
from mimic_core.edm.tables import prepare
from mimic_core.errors import DataError

__all__ = ["SMapResult", "smap", "predict_nonlinear"]


@dataclass
class SMapResult(SimplexResult):
    """A simplex result plus the local linear maps: ``coefficients`` (output rows, E + 1) = C0, then one per lag."""

    coefficients: np.ndarray = field(default=None)
    theta: float = 0.0


@cache
def _kernel():
    import jax
    import jax.numpy as jnp

    from mimic_core.edm.kernel import stats

    def one_row(d, keep, X, y, x_pred, theta):
        dk = jnp.where(keep, d, 0.0)
        cnt = jnp.sum(keep)
        mean = jnp.sum(dk) / jnp.maximum(cnt, 1)
        w = jnp.where(theta == 0, 1.0, jnp.exp(-(theta / jnp.where(mean > 0, mean, 1.0)) * dk))
        w = jnp.where(keep, w, 0.0)
        A = w[:, None] * jnp.concatenate([jnp.ones((X.shape[0], 1)), X], axis=1)
        c, _, _, _ = jnp.linalg.lstsq(A, w * y)      # rcond: eps * max(rows, columns), as numpy's
        proj = c[0] + jnp.dot(c[1:], x_pred)
        var = jnp.sum(w * (y - proj) ** 2) / jnp.sum(w)
        bad = cnt == 0
        return jnp.where(bad, jnp.nan, proj), jnp.where(bad, jnp.nan, var), jnp.where(bad, jnp.nan, c)

    @jax.jit
    def run(D, keep, X, Y, Xp, thetas, obs, valid):
        # D, keep (P, L); X (L, E) library vectors; Y (L,) their targets Tp ahead; Xp (P, E); thetas (n,)
        def per_theta(theta):
            proj, var, c = jax.vmap(one_row, in_axes=(0, 0, None, None, 0, None))(D, keep, X, Y, Xp, theta)
            return stats(obs, proj, valid) + (proj, var, c)
        return jax.vmap(per_theta)(thetas)

    return run


def _neighbours(Xe: np.ndarray, pred_rows: np.ndarray, valid: np.ndarray, lib_rows: np.ndarray,
                excl: int) -> np.ndarray:
    """(P, L) bool: the library rows pyEDM's S-map uses for each prediction row.

    pyEDM's own search, step by step (Neighbors.FindNeighbors without tieBreak): knn = L - 1; a KD-tree
    (leafsize 20, compact, balanced) queried for knn rows, knn + 1 when the library holds prediction rows,
    all L when the exclusion radius can reach the library; then the excluded rows (within the radius, or
    the row itself) are dropped and the first knn left are kept. Running the same tree keeps its order of
    tied distances, which decides which row a full library drops."""
    from scipy.spatial import KDTree

    L = len(lib_rows)
    keep = np.zeros((len(pred_rows), L), bool)
    rows = np.flatnonzero(valid)
    if rows.size == 0:
        return keep
    pv = pred_rows[rows]
    overlap = np.intersect1d(lib_rows, pv).size > 0
    reach = False
    if excl > 0:
        gap = pv[0] - lib_rows[-1] if pv[0] > lib_rows[-1] else lib_rows[0] - pv[-1] if lib_rows[0] > pv[-1] else 0
        reach = overlap or excl >= gap
    knn = L - 1
    k = min(knn * 5, L) if reach else knn + 1 if overlap else knn
    tree = KDTree(Xe[lib_rows], leafsize=20, compact_nodes=True, balanced_tree=True)
    _, i = tree.query(Xe[pv], k=k, eps=0, p=2)
    i = np.asarray(i).reshape(len(pv), k)
    nb = lib_rows[i]
    if reach:
        drop = np.abs(pv[:, None] - nb) <= excl
    elif overlap:
        drop = pv[:, None] == nb
    else:
        drop = np.zeros(nb.shape, bool)
    first = ~drop & (np.cumsum(~drop, axis=1) <= knn)
    r = np.repeat(rows, k).reshape(len(pv), k)
    keep[r[first], i[first]] = True
    return keep


def _run(data, cols, tgt, lib, pred, E, tau, Tp, thetas, exclusion_radius):
    import jax
    import jax.numpy as jnp

    E, tau, exclusion_radius = check_args(E, tau, exclusion_radius)
    Tp = int(Tp)
    thetas = np.asarray(thetas, np.float64).reshape(-1)
    if thetas.size == 0 or not np.all(np.isfinite(thetas)) or (thetas < 0).any():
        raise DataError(None, "theta", f"theta must be finite and >= 0, got {thetas.tolist()}")
    if len(cols) != 1:
        raise DataError(None, "columns", f"S-map embeds one column, got {len(cols)}: pyEDM refuses a "
                        "multivariate S-map of a delay embedding")
    n = data.shape[0]
    p = make_plan(n, parse_pairs(lib, "lib"), parse_pairs(pred, "pred"), [E], [tau], [Tp])
    lib_rows = np.flatnonzero(p["lib_tp"][0, 0])
    pred_rows, valid = p["pred_all"], p["pred_valid"][0]
    if lib_rows.size < 2:
        raise DataError(None, "lib", f"S-map needs at least 2 library rows, the library leaves {lib_rows.size}")
    Xe = np.nan_to_num(embed(data[:, cols], E, tau), nan=0.0)      # (N, E)
    from scipy.spatial.distance import cdist

    D = cdist(Xe[pred_rows], Xe[lib_rows])
    keep = _neighbours(Xe, pred_rows, valid, lib_rows, int(exclusion_radius))
    y = data[:, tgt]
    t = lib_rows + Tp
    t = np.where(t < 0, t + n, t)                      # pyEDM indexes with numpy: a negative row wraps
    Ylib = y[np.clip(t, 0, n - 1)]
    orow = p["obs_row"][0, 0]
    obs = np.where(orow >= 0, y[np.clip(orow, 0, n - 1)], np.nan)
    with jax.enable_x64(True):
        out = _kernel()(jnp.asarray(D), jnp.asarray(keep), jnp.asarray(Xe[lib_rows]), jnp.asarray(Ylib),
                        jnp.asarray(Xe[pred_rows]), jnp.asarray(thetas), jnp.asarray(obs), jnp.asarray(valid))
        out = jax.tree_util.tree_map(np.asarray, out)
    return p, out


def smap(data, columns, target, lib, pred, E: int = 3, Tp: int = 1, tau: int = -1, theta: float = 0.0,
         exclusion_radius: int = 0, names: Sequence[str] | None = None) -> SMapResult:
    """One S-map prediction, as ``pyEDM.SMap(..., embedded=False)``; arguments as ``simplex`` plus theta."""
    arr, cols, tgts = prepare(data, columns, target, names)
    if len(tgts) != 1:
        raise DataError(None, "target", "S-map takes one target column")
    p, (rho, mae, rmse, _, nn, proj, var, coef) = _run(arr, cols, tgts[0], lib, pred, E, tau, Tp, [theta],
                                                       exclusion_radius)
    (out_len, obs_rows_out, pred_pos, rows, _), sel = p["layouts"][(int(E), int(tau), int(Tp))]
    y = arr[:, tgts[0]]
    obs = np.where(obs_rows_out >= 0, y[np.clip(obs_rows_out, 0, None)], np.nan)
    preds, varo = np.full(out_len, np.nan), np.full(out_len, np.nan)
    coefs = np.full((out_len, int(E) + 1), np.nan)
    preds[pred_pos], varo[pred_pos], coefs[pred_pos] = proj[0][sel], var[0][sel], coef[0][sel]
    return SMapResult(rho=float(rho[0]), mae=float(mae[0]), rmse=float(rmse[0]), n=int(nn[0]), observations=obs,
                      predictions=preds, rows=rows, variance=varo, E=int(E), tau=int(tau), Tp=int(Tp),
                      coefficients=coefs, theta=float(theta))


def predict_nonlinear(data, columns, target, lib, pred, E: int = 3, Tp: int = 1, tau: int = -1,
                      theta: Sequence[float] = (0.01, 0.1, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 4, 5, 6, 7, 8, 9),
                      exclusion_radius: int = 0, names: Sequence[str] | None = None) -> list[dict]:
    """rho against theta (pyEDM ``PredictNonlinear``, its default thetas): one row per theta, one compiled call."""
    arr, cols, tgts = prepare(data, columns, target, names)
    if len(tgts) != 1:
        raise DataError(None, "target", "S-map takes one target column")
    _, (rho, mae, rmse, _, nn, *_rest) = _run(arr, cols, tgts[0], lib, pred, E, tau, Tp, theta, exclusion_radius)
    return [{"theta": float(t), "rho": float(r), "mae": float(m), "rmse": float(s), "n": int(k)}
            for t, r, m, s, k in zip(np.asarray(theta, float).reshape(-1), rho, mae, rmse, nn)]
