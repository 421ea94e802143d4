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

Distances are computed once per embedding; every theta is one ``vmap`` lane of one jit-compiled call in
float64, which solves each row's normal equations (two matrix products over the library and a small
eigen-solve); the rows they cannot trust (``SMAP_NORMAL_EQ_MIN_EIG_RATIO``) are solved again by SVD.
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


# A row whose weighted normal matrix has eigenvalues spread wider than this (cond(W A) above 1e4) is solved
# again by SVD: the normal equations lose cond(W A)^2 * eps of relative accuracy (here <= 1e-8 on the
# coefficients, far inside the 1e-6 rho target), and rank-deficient rows need lstsq's own rcond cut.
SMAP_NORMAL_EQ_MIN_EIG_RATIO = 1e-8


@cache
def _kernel():
    """The fast path: per (theta, row), the weighted least-squares map from its normal equations.

    Weights ``w`` (P, L) per theta; G = sum_l w^2 x1 x1^T and b = sum_l w^2 x1 y are one matrix product over the
    library ((P, L) @ (L, (E+1)^2 + E+1)), then an (E+1)-sized symmetric eigen-solve per row. The library is centred
    first (the intercept absorbs it, so the solution is the same) to keep G well-conditioned."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    @jax.jit
    def run(D, keep, X1, Y, Xp1, thetas):
        # D, keep (P, L); X1 (L, E+1) = [1, centred library vectors]; Y (L,) centred targets; Xp1 (P, E+1)
        dk = jnp.where(keep, D, 0.0)
        cnt = jnp.sum(keep, axis=1)
        mean = jnp.sum(dk, axis=1) / jnp.maximum(cnt, 1)
        scale = jnp.where(mean > 0, 1.0 / jnp.where(mean > 0, mean, 1.0), 1.0)[:, None] * dk     # d / mean(d)
        k = X1.shape[1]
        # One product per weight power: w^2 against [x1 x1^T, x1 y] (the normal equations), w against
        # [1, y, y^2] (the variance's three sums, so no second pass over the library).
        Z2 = jnp.concatenate([(X1[:, :, None] * X1[:, None, :]).reshape(X1.shape[0], k * k), X1 * Y[:, None]], 1)
        Z1 = jnp.stack([jnp.ones_like(Y), Y, Y * Y], 1)

        # One theta at a time (lax.map): each (P, L) weight block stays in cache through its two products,
        # measured 4x faster on a 2-core CPU than one flat (theta * P, L) block.
        def one(theta):
            w = jnp.where(keep, jnp.where(theta == 0, 1.0, jnp.exp(-theta * scale)), 0.0)
            S2 = (w * w) @ Z2
            S1 = w @ Z1
            G, b = S2[:, :k * k].reshape(-1, k, k), S2[:, k * k:]
            lam, V = jnp.linalg.eigh(G)
            ok = (lam[:, 0] > SMAP_NORMAL_EQ_MIN_EIG_RATIO * lam[:, -1]) & (cnt > 0)
            c = jnp.einsum("pij,pj->pi", V, jnp.einsum("pji,pj->pi", V, b) / jnp.where(ok[:, None], lam, 1.0))
            proj = jnp.sum(c * Xp1, axis=1)
            var = (S1[:, 2] - 2 * proj * S1[:, 1] + proj * proj * S1[:, 0]) / S1[:, 0]
            return proj, var, c, ok

        return lax.map(one, thetas)

    return run


@cache
def _kernel_svd():
    """The exact path for the rows the normal equations cannot trust: numpy's lstsq (SVD, rcond = eps *
    max(rows, columns)) of the weighted system, one row per lane."""
    import jax
    import jax.numpy as jnp

    def one_row(d, keep, X1, y, xp1, theta):
        dk = jnp.where(keep, d, 0.0)
        cnt = jnp.sum(keep)
        mean = jnp.sum(dk) / jnp.maximum(cnt, 1)
        w = jnp.where(theta == 0, 1.0, jnp.exp(-(theta / jnp.where(mean > 0, mean, 1.0)) * dk))
        w = jnp.where(keep, w, 0.0)
        c, _, _, _ = jnp.linalg.lstsq(w[:, None] * X1, w * y)
        proj = jnp.dot(c, xp1)
        var = jnp.sum(w * (y - proj) ** 2) / jnp.sum(w)
        bad = cnt == 0
        return jnp.where(bad, jnp.nan, proj), jnp.where(bad, jnp.nan, var), jnp.where(bad, jnp.nan, c)

    return jax.jit(jax.vmap(one_row, in_axes=(0, 0, None, None, 0, 0)))


@cache
def _stats():
    import jax

    from mimic_core.edm.kernel import stats

    return jax.jit(jax.vmap(stats, in_axes=(None, 0, None)))


def _neighbours(D: np.ndarray, Xe: np.ndarray, pred_rows: np.ndarray, valid: np.ndarray, lib_rows: np.ndarray,
                excl: int) -> np.ndarray:
    """(P, L) bool: the library rows pyEDM's S-map uses for each prediction row.

    pyEDM's own search (Neighbors.FindNeighbors without tieBreak): knn = L - 1; a KD-tree (leafsize 20,
    compact, balanced) queried for knn rows, knn + 1 when the library holds prediction rows, all L when the
    exclusion radius can reach the library; then the excluded rows (within the radius, or the row itself)
    are dropped and the first knn left are kept. That is: every row not excluded, less the farthest one
    when none was excluded. Which row is farthest among tied distances is the KD-tree's choice, so only
    the rows whose two farthest candidates tie (to rounding) query the same tree."""
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
    if reach:
        kept = np.abs(pv[:, None] - lib_rows[None, :]) > excl
    elif overlap:
        kept = pv[:, None] != lib_rows[None, :]
    else:
        kept = np.ones((len(pv), L), bool)
    full = kept.sum(axis=1) == L                       # nothing excluded: the farthest row goes
    if full.any():
        d = D[rows[full]]
        first = d.argmax(axis=1)
        r = np.arange(len(d))
        hi = d[r, first]
        d[r, first] = -np.inf                          # d is a copy (fancy indexing)
        tied = (hi - d.max(axis=1)) <= 1e-9 * np.maximum(hi, 1e-300)
        fr = np.flatnonzero(full)
        kept[fr, first] = False
        if tied.any():
            from scipy.spatial import KDTree

            tree = KDTree(Xe[lib_rows], leafsize=20, compact_nodes=True, balanced_tree=True)
            t = fr[tied]
            _, i = tree.query(Xe[pv[t]], k=L - 1, eps=0, p=2)
            i = np.asarray(i).reshape(len(t), L - 1)
            kept[t] = False
            kept[np.repeat(t, L - 1), i.ravel()] = True
    keep[rows] = kept
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
    keep = _neighbours(D, Xe, pred_rows, valid, lib_rows, int(exclusion_radius))
    y = data[:, tgt]
    t = lib_rows + Tp
    t = np.where(t < 0, t + n, t)                      # pyEDM indexes with numpy: a negative row wraps
    Ylib = y[np.clip(t, 0, n - 1)]
    orow = p["obs_row"][0, 0]
    obs = np.where(orow >= 0, y[np.clip(orow, 0, n - 1)], np.nan)
    Xl, Xp = Xe[lib_rows], Xe[pred_rows]
    mx, my = Xl.mean(axis=0), Ylib.mean()
    ones_l, ones_p = np.ones((len(lib_rows), 1)), np.ones((len(pred_rows), 1))
    X1c, Xp1c = np.hstack([ones_l, Xl - mx]), np.hstack([ones_p, Xp - mx])
    with jax.enable_x64(True):
        proj, var, c, ok = map(np.array, _kernel()(jnp.asarray(D), jnp.asarray(keep), jnp.asarray(X1c),
                                                   jnp.asarray(Ylib - my), jnp.asarray(Xp1c), jnp.asarray(thetas)))
        has = keep.sum(axis=1) > 0
        proj[:, ~has], var[:, ~has], c[:, ~has] = np.nan, np.nan, np.nan
        redo = np.argwhere(~ok & has[None, :])
        if redo.size:
            # pad the batch to a power of two: a handful of compiled shapes, not one per count
            m = len(redo)
            size = 1 << (m - 1).bit_length()
            ti, pi = np.pad(redo[:, 0], (0, size - m), mode="edge"), np.pad(redo[:, 1], (0, size - m), mode="edge")
            pr, vr, cr = map(np.asarray, _kernel_svd()(jnp.asarray(D[pi]), jnp.asarray(keep[pi]), jnp.asarray(X1c),
                                                       jnp.asarray(Ylib - my), jnp.asarray(Xp1c[pi]),
                                                       jnp.asarray(thetas[ti])))
            proj[redo[:, 0], redo[:, 1]], var[redo[:, 0], redo[:, 1]] = pr[:m], vr[:m]
            c[redo[:, 0], redo[:, 1]] = cr[:m]
        proj = proj + my
        c[:, :, 0] = c[:, :, 0] + my - c[:, :, 1:] @ mx          # the intercept in the data's own coordinates
        rho, mae, rmse, mxe, nn = map(np.asarray, _stats()(jnp.asarray(obs), jnp.asarray(proj), jnp.asarray(valid)))
    return p, (rho, mae, rmse, mxe, nn, proj, var, c)


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
