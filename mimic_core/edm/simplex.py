"""Simplex projection (Sugihara & May 1990) in JAX with pyEDM 2.5.7 semantics.

Every rule below is taken from pyEDM 2.5.7 (EDM.CreateIndices, EDM.RemoveNan,
Neighbors.FindNeighbors with the top-level ``tieBreak``, Simplex.Project,
Formatting.FormatProjection, AuxFunc.ComputeError):

* ``lib`` / ``pred`` are 1-based inclusive row pairs ("1 100 201 300").
* Library rows: each pair loses ``(E-1)|tau|`` rows at its start (tau < 0) or end (tau > 0);
  for Tp >= 0 only the *last* pair loses its final Tp rows; for Tp < 0 every pair's start
  moves by ``|Tp| - 1``.  (pyEDM does not trim Tp rows from earlier pairs of a disjoint library.)
* Prediction rows: every row of the pred pairs whose embedding vector is complete; a prediction
  is made for each and placed Tp rows later in the output.
* knn = E + 1 neighbours, *also for a multivariate embedding* (pyEDM sets knn = E + 1 from E, not
  from the embedding width E * len(columns)).
* Neighbours exclude library rows with ``|pred_row - lib_row| <= exclusionRadius`` (the row
  itself when the radius is 0); ties are ordered by (distance, |pred_row - lib_row|, lib_row);
  rows with fewer valid neighbours keep only those (inf padding, weight 0).
* Weights ``exp(-d / max(d_min, 1e-6))`` (d_min over finite neighbours); prediction is the
  weighted mean of the neighbours' targets Tp rows ahead (a negative index wraps like numpy).
* The output table (Observations / Predictions, NaN padded by |Tp| rows) is laid out as in
  FormatProjection; rho, RMSE are computed from it as ComputeError does (finite pairs only, NaN if
  fewer than 5).  ``mae`` is the mean absolute error; ``max_error`` is what pyEDM 2.5.7 labels
  "MAE" (``max(obs - pred)``, a pyEDM quirk).  pyEDM rounds to 6 digits, we do not.

Work is not done twice.  Neighbours are searched once per embedding (tau, E) with scipy's
cKDTree (as pyEDM does), for every Tp at once, one embedding per thread; the search is exact,
ties included (see ``neighbours.candidates``).  Weights, projections and statistics for every (tau, E),
Tp and target series / shuffled surrogate are then one jit-compiled JAX call (``lax.map`` over
embeddings, ``vmap`` over Tp and targets).  Computation runs in float64 inside
``jax.enable_x64(True)`` only.

The parts: `indices` (pyEDM's row rules), `tables` (data in), `neighbours` (the tree search), `kernel`
(the JAX projection); this module runs them and holds the public functions.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
import os
from typing import Sequence

import numpy as np

from mimic_core.edm.embed import embed
from mimic_core.edm.indices import parse_pairs, plan as make_plan
from mimic_core.edm.kernel import kernel, run_numpy
from mimic_core.edm.neighbours import candidates, candidates_brute
from mimic_core.edm.tables import load_csv, prepare
from mimic_core.errors import DataError

__all__ = ["SimplexResult", "SurrogateResult", "load_csv", "parse_pairs", "shuffled_targets", "simplex",
           "simplex_scan", "simplex_surrogates", "surrogate_p_value"]


# ----------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------
@dataclass
class SimplexResult:
    rho: float
    mae: float
    rmse: float
    n: int
    observations: np.ndarray      # pyEDM's Observations column
    predictions: np.ndarray       # pyEDM's Predictions column
    rows: np.ndarray              # 0-based data row of each output row (may be < 0 or >= N)
    variance: np.ndarray = field(default=None)   # pyEDM's Pred_Variance column
    max_error: float = float("nan")              # pyEDM 2.5.7's "MAE" (max(obs - pred))
    E: int = 0
    tau: int = -1
    Tp: int = 1

    def as_dict(self) -> dict:
        return {"rho": self.rho, "mae": self.mae, "rmse": self.rmse, "n": self.n}


@dataclass
class SurrogateResult:
    rho: float                    # observed rho
    null: np.ndarray              # rho of each target-shuffled surrogate
    null_mean: float
    null_p95: float
    p_value: float                # (1 + #(null >= rho)) / (1 + n_surrogates)
    n_surrogates: int
    mae: float = float("nan")
    rmse: float = float("nan")
    n: int = 0


def surrogate_p_value(observed: float, null) -> tuple[float, float, float]:
    """(p, mean, p95) of a null distribution; NaN surrogates are dropped."""
    null = np.asarray(null, dtype=np.float64)
    null = null[np.isfinite(null)]
    if null.size == 0 or not np.isfinite(observed):
        return float("nan"), float("nan"), float("nan")
    p = (1.0 + np.count_nonzero(null >= observed)) / (1.0 + null.size)
    return float(p), float(np.mean(null)), float(np.percentile(null, 95))


def _run(data, col_idx, Y, lib, pred, Es, taus, Tps, exclusion_radius, want_proj):
    """Returns (plan, outputs); outputs are arrays (n_tau, Emax, n_Tp, n_Y, ...) indexed by E-1.

    A small problem (every prediction row against every library row in at most _SMALL distances, and a
    projection of at most _SMALL_KERNEL terms) is done in numpy by brute force, without importing JAX or
    compiling anything: a one-off prediction from the command line then starts in a fraction of a second.
    Larger ones search with the KD-tree and project in one compiled JAX call. Both give pyEDM's neighbours
    (the brute force computes the tree's distances bit for bit) and agree to rounding."""
    n, _ = data.shape
    Es = [int(e) for e in Es]
    taus = [int(t) for t in taus]
    Tps = [int(t) for t in Tps]
    if not Es or not taus or not Tps:
        raise DataError(None, "E" if not Es else "tau" if not taus else "Tp", "no values given")
    for E in Es:
        if E < 1:
            raise DataError(None, "E", f"E = {E} is invalid: must be >= 1")
    for t in taus:
        if t == 0:
            raise DataError(None, "tau", "tau must be non-zero")
    if exclusion_radius < 0:
        raise DataError(None, "exclusion_radius", f"must be >= 0, got {exclusion_radius}")
    excl = int(exclusion_radius)
    plan = make_plan(n, parse_pairs(lib, "lib"), parse_pairs(pred, "pred"), Es, taus, Tps)
    Emax = max(Es)
    C = len(col_idx)
    Xall = [np.nan_to_num(embed(data[:, col_idx], Emax, tau), nan=0.0) for tau in taus]
    G, nT, P = len(plan["groups"]), len(Tps), len(plan["pred_all"])
    n_lib = int(plan["lib_tp"].any(axis=(0, 1)).sum()) if np.size(plan["lib_tp"]) else 0
    small = G * P * n_lib <= _SMALL and G * nT * len(Y) * P * (Emax + 1) <= _SMALL_KERNEL
    if small:
        cands = []
        for g, (a, _, E) in enumerate(plan["groups"]):
            cands.append(candidates_brute(np.ascontiguousarray(Xall[a][:, :E * C]), plan["lib_tp"][g],
                                          plan["pred_all"], plan["pred_valid"][g], E + 1, excl))
        return plan, _to_full(plan, taus, Emax, run_numpy(*_stack(cands, G, nT, P), plan["obs_row"],
                                                           plan["pred_valid"], np.array(Tps, np.int64), Y,
                                                           want_proj=want_proj))
    import jax
    import jax.numpy as jnp

    def search(g):
        a, _, E = plan["groups"][g]
        return candidates(np.ascontiguousarray(Xall[a][:, :E * C]), plan["lib_tp"][g], plan["pred_all"],
                           plan["pred_valid"][g], E + 1, excl, workers=1 if len(plan["groups"]) > 1 else -1)

    # one embedding per thread (the tree releases the GIL); the largest E first
    order = sorted(range(len(plan["groups"])), key=lambda g: -plan["groups"][g][2])
    with ThreadPoolExecutor(min(os.cpu_count() or 1, len(order))) as pool:
        found = dict(zip(order, pool.map(search, order)))
    cands = [found[g] for g in range(len(plan["groups"]))]
    idx, dist, chosen = _stack(cands, G, nT, P)
    with jax.enable_x64(True):
        out = kernel()(jnp.asarray(idx), jnp.asarray(dist), jnp.asarray(chosen), jnp.asarray(plan["obs_row"]),
                        jnp.asarray(plan["pred_valid"]), jnp.asarray(np.array(Tps, np.int64)), jnp.asarray(np.asarray(Y, np.float64)),
                        want_proj=want_proj)
        out = jax.tree_util.tree_map(np.asarray, out)
    return plan, _to_full(plan, taus, Emax, out)


_SMALL = 2_000_000          # prediction x library rows (per embedding) searched by brute force
_SMALL_KERNEL = 20_000_000  # embeddings x Tp x targets x prediction rows x neighbours projected in numpy


def _stack(cands, G, nT, P):
    """The embeddings' candidates as one (idx, d, chosen) block, padded to the widest."""
    k = max(c[0].shape[1] for c in cands)
    idx, dist, chosen = np.zeros((G, P, k), np.int64), np.full((G, P, k), np.inf), np.zeros((G, nT, P, k), bool)
    for g, (i, dd, ch) in enumerate(cands):
        idx[g, :, :i.shape[1]], dist[g, :, :i.shape[1]], chosen[g, :, :, :i.shape[1]] = i, dd, ch
    return idx, dist, chosen


def _to_full(plan, taus, Emax, out):
    """(G, ...) outputs back to (n_tau, Emax, ...), so that callers index by E - 1."""
    full = []
    for o in out:
        f = np.zeros((len(taus), Emax) + o.shape[1:], o.dtype)
        for g, (a, _, E) in enumerate(plan["groups"]):
            f[a, E - 1] = o[g]
        full.append(f)
    return tuple(full)


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------
def simplex(data, columns, target, lib, pred, E: int = 3, Tp: int = 1, tau: int = -1,
            exclusion_radius: int = 0, names: Sequence[str] | None = None) -> SimplexResult:
    """One simplex projection, identical to ``pyEDM.Simplex(..., embedded=False)``.

    ``data`` is an (N, C) array (or DataFrame); ``columns`` / ``target`` are column indices or
    names (with ``names`` or a DataFrame).  ``lib`` / ``pred``: 1-based inclusive row pairs."""
    arr, cols, tgts = prepare(data, columns, target, names)
    if len(tgts) != 1:
        raise DataError(None, "target", "simplex takes one target column")
    Y = arr[:, tgts].T
    plan, out = _run(arr, cols, Y, lib, pred, [E], [tau], [Tp], exclusion_radius, want_proj=True)
    rho, mae, rmse, mxe, nn, proj, var = (o[0, int(E) - 1, 0, 0] for o in out)
    (out_len, obs_rows_out, pred_pos, rows, _), sel = plan["layouts"][(int(E), int(tau), int(Tp))]
    y = arr[:, tgts[0]]
    obs = np.where(obs_rows_out >= 0, y[np.clip(obs_rows_out, 0, None)], np.nan)
    preds = np.full(out_len, np.nan)
    preds[pred_pos] = proj[sel]
    varo = np.full(out_len, np.nan)
    varo[pred_pos] = var[sel]
    return SimplexResult(rho=float(rho), mae=float(mae), rmse=float(rmse), n=int(nn), observations=obs,
                         predictions=preds, rows=rows, variance=varo, max_error=float(mxe),
                         E=int(E), tau=int(tau), Tp=int(Tp))


def simplex_scan(data, columns, target, lib, pred, E=range(1, 11), Tp=range(1, 11), tau=-1,
                 exclusion_radius: int = 0, names: Sequence[str] | None = None) -> dict:
    """rho/MAE/RMSE over a grid of E x tau x Tp x targets in one compiled call.

    ``E``, ``Tp``, ``tau``: ints or sequences; ``target``: one or several columns.
    Returns a dict of arrays shaped (n_E, n_tau, n_Tp, n_targets) plus the axes."""
    Es = [E] if np.isscalar(E) else list(E)
    Tps = [Tp] if np.isscalar(Tp) else list(Tp)
    taus = [tau] if np.isscalar(tau) else list(tau)
    arr, cols, tgts = prepare(data, columns, target, names)
    Y = arr[:, tgts].T
    plan, out = _run(arr, cols, Y, lib, pred, Es, taus, Tps, exclusion_radius, want_proj=False)
    rho, mae, rmse, mxe, nn = out
    e_idx = np.array([int(e) - 1 for e in Es])

    def grid(a):      # (n_tau, Emax, n_Tp, n_Y) -> (n_E, n_tau, n_Tp, n_Y)
        return np.moveaxis(a[:, e_idx], 0, 1)

    return {"E": np.array(Es), "tau": np.array(taus), "Tp": np.array(Tps),
            "target": [names[t] if names else t for t in tgts] if names else tgts,
            "rho": grid(rho), "mae": grid(mae), "rmse": grid(rmse), "max_error": grid(mxe),
            "n": grid(nn)}


def shuffled_targets(y: np.ndarray, n_surrogates: int, seed: int) -> np.ndarray:
    """(n_surrogates, N) random permutations of the target series (deterministic in seed)."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(y) for _ in range(int(n_surrogates))]) if n_surrogates else \
        np.zeros((0, len(y)))


def simplex_surrogates(data, columns, target, lib, pred, E: int = 3, Tp: int = 1, tau: int = -1,
                       exclusion_radius: int = 0, n_surrogates: int = 100, seed: int = 0,
                       names: Sequence[str] | None = None, method: str = "random_shuffle",
                       clips=None) -> SurrogateResult:
    """Observed rho against surrogate targets (``surrogates.make_surrogates``: ``random_shuffle``,
    ``ebisuzaki``, ``clip_ebisuzaki``, ``clip_swap``; the clip methods need a label per row in ``clips``),
    the embedding and its neighbours unchanged, all in one compiled call.  Each surrogate is scored as a
    full re-run with the surrogate series as target (observations replaced too)."""
    from mimic_core.edm.surrogates import make_surrogates

    if int(n_surrogates) < 1:
        raise DataError(None, "n_surrogates", f"must be >= 1, got {n_surrogates}")
    arr, cols, tgts = prepare(data, columns, target, names)
    if len(tgts) != 1:
        raise DataError(None, "target", "surrogates take one target column")
    y = arr[:, tgts[0]]
    Y = np.concatenate([y[None, :], make_surrogates(y, method, n_surrogates, seed, clips)])
    plan, out = _run(arr, cols, Y, lib, pred, [E], [tau], [Tp], exclusion_radius, want_proj=False)
    rho, mae, rmse, _, nn = (o[0, int(E) - 1, 0] for o in out)
    p, mean, p95 = surrogate_p_value(rho[0], rho[1:])
    return SurrogateResult(rho=float(rho[0]), null=rho[1:], null_mean=mean, null_p95=p95, p_value=p,
                           n_surrogates=int(n_surrogates), mae=float(mae[0]), rmse=float(rmse[0]),
                           n=int(nn[0]))
