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
ties included (see ``_candidates``).  Weights, projections and statistics for every (tau, E),
Tp and target series / shuffled surrogate are then one jit-compiled JAX call (``lax.map`` over
embeddings, ``vmap`` over Tp and targets).  Computation runs in float64 inside
``jax.enable_x64(True)`` only.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
import os
from typing import Sequence

import numpy as np

from mimic_core.edm.embed import embed
from mimic_core.errors import DataError



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


# ----------------------------------------------------------------------------------------------
# input parsing and validation
# ----------------------------------------------------------------------------------------------
def parse_pairs(spec, name: str = "lib") -> list[int]:
    """'1 100 201 300', [1, 100] or ((1, 100), (201, 300)) -> flat list of ints (even length)."""
    if isinstance(spec, str):
        parts = spec.replace(",", " ").split()
    else:
        parts = []
        for s in spec:
            parts.extend(s if isinstance(s, (list, tuple)) else [s])
    try:
        vals = [int(p) for p in parts]
        if any(float(p) != int(p) for p in parts):
            raise ValueError
    except (TypeError, ValueError):
        raise DataError(None, name, f"row ranges must be integers, got {spec!r}") from None
    if not vals or len(vals) % 2:
        raise DataError(None, name, f"needs start/stop pairs (an even number of rows), got {spec!r}")
    return vals


def _check_pairs(pairs: list[int], n: int, name: str, strict: bool) -> list[tuple[int, int]]:
    out = []
    for i in range(0, len(pairs), 2):
        a, b = pairs[i], pairs[i + 1]
        if a < 1 or b < 1:
            raise DataError(None, name, f"rows are 1-based: pair {a} {b} has a row below 1")
        if a > b or (strict and a == b):
            raise DataError(None, name, f"pair {a} {b}: start must be {'before' if strict else 'at most'} stop")
        if b > n:
            raise DataError(None, name, f"pair {a} {b}: row {b} is past the last data row {n}")
        out.append((a, b))
    return out


def _lib_mask(pairs, E: int, tau: int, Tp: int, n: int) -> np.ndarray:
    """pyEDM CreateIndices (not embedded) + RemoveNan for complete data: the library rows as a
    boolean mask over the n data rows."""
    shift = abs(tau) * (E - 1)
    mask = np.zeros(n, bool)
    n_rows = n_ok = 0
    last = None
    for r, (start, stop) in enumerate(pairs):
        if tau < 0:
            start = start + shift
        else:
            stop = stop - shift
        if Tp < 0:
            start = max(start, start + abs(Tp) - 1)
        elif r == len(pairs) - 1:
            stop = stop - Tp
        a, b = start - 1, stop                      # 0-based rows a .. b-1
        if b <= a:
            continue
        n_rows += b - a
        last = b - 1
        # RemoveNan: rows whose embedding vector is incomplete (only possible at the data edges)
        lo, hi = (max(a, shift, 0), min(b, n)) if tau < 0 else (max(a, 0), min(b, n - shift))
        if hi > lo:
            n_ok += hi - lo
            mask[lo:hi] = True
    vec_len = abs(max(-shift, 0, Tp) - min(-shift, 0, Tp)) + 1
    if vec_len > n_rows:
        raise DataError(None, "lib", f"E = {E}, tau = {tau}, Tp = {Tp} need {vec_len} rows "
                                     f"(E*|tau| + |Tp|) but the library has {n_rows}")
    if last is not None and last >= n:
        raise DataError(None, "lib", f"library row {last + 1} is past the last data row {n}")
    if n_ok < E + 1:
        raise DataError(None, "lib", f"the library has {n_ok} usable rows, fewer than the "
                                     f"{E + 1} neighbours simplex needs (E = {E}, tau = {tau}, Tp = {Tp})")
    return mask


def _pred_rows(pairs, E: int, tau: int, n: int):
    """(pred_i_all, predList) as pyEDM builds them (embedding-shift rows removed from predList)."""
    shift = abs(tau) * (E - 1)
    segs_all = [np.arange(a - 1, b, dtype=np.int64) for a, b in pairs]
    pred_all = np.concatenate(segs_all)
    if tau > 0:
        bad = lambda s: s > n - 1 - shift       # noqa: E731
    else:
        bad = lambda s: s < shift               # noqa: E731
    pred_list = [s[~bad(s)] for s in segs_all]
    return pred_all, pred_list


def _layout(pred_list, pred_all, tau: int, Tp: int, n: int):
    """Port of Formatting.FormatProjection index logic.

    Returns (out_len, obs_rows_out (out_len,) data row or -1, pred_pos (len pred_i,),
    rows (out_len,) data row of each output row, pred_i)."""
    pred_i = np.concatenate(pred_list) if pred_list else np.zeros(0, np.int64)
    if len(pred_i) == 0:
        raise DataError(None, "pred", "no valid prediction rows: examine pred, E, tau and Tp")
    tpm = abs(Tp)
    out_size = sum(len(seg) + tpm for seg in pred_list)
    segs = [seg for seg in pred_list if len(seg)]
    obs_parts, pred_parts = [], []
    p0 = 0
    for seg in segs:
        m = len(seg)
        if Tp > 0 and seg[-1] + Tp < n:
            obs_parts += [seg, np.arange(seg[-1] + 1, seg[-1] + Tp + 1)]
        elif Tp < 0 and seg[0] + Tp > -1:
            obs_parts += [np.arange(seg[0] + Tp, seg[0]), seg]
        else:
            obs_parts.append(seg)
        start = p0 + Tp if Tp > 0 else p0
        pred_parts.append(np.arange(start, start + m))
        p0 = start + m + (tpm if Tp < 0 else 0)
    obs_i = np.concatenate(obs_parts).astype(np.int64)
    pred_out = np.concatenate(pred_parts).astype(np.int64)
    if len(pred_i) != len(pred_out):   # cannot happen without NaN data; kept for fidelity
        m = len(pred_out)
        keys = pred_all[-m:] if tau < 0 else pred_all[:m]
        d = dict(zip(keys.tolist(), pred_out.tolist()))
        pred_out = np.array([d[i] for i in pred_i.tolist()], dtype=np.int64)
    if Tp > 0:
        obs_out = np.arange(len(obs_i)) if obs_i[-1] + Tp > n - 1 else np.arange(out_size)
    else:
        obs_out = np.arange(len(obs_i))
        if pred_i[0] + Tp < 0:
            obs_out = obs_out + (tpm - pred_i[0])
    out_len = int(max(pred_out[-1], obs_out[-1])) + 1
    obs_rows_out = np.full(out_len, -1, dtype=np.int64)
    obs_rows_out[obs_out] = obs_i
    # rows without an observation (the |Tp| padding) continue from the nearest known row before
    # them, or (leading rows) count back from the first known row
    known = np.zeros(out_len, bool)
    known[obs_out] = True
    rows = np.zeros(out_len, dtype=np.int64)
    rows[obs_out] = obs_i
    k = np.arange(out_len)
    prev = np.maximum.accumulate(np.where(known, k, -1))
    first = int(np.flatnonzero(known)[0])
    rows = np.where(known, rows, np.where(prev >= 0, rows[np.maximum(prev, 0)] + (k - prev),
                                          rows[first] - (first - k)))
    return out_len, obs_rows_out, pred_out, rows, pred_i


def _check_finite(data: np.ndarray, col_idx: Sequence[int], names, path=None) -> None:
    for c in dict.fromkeys(col_idx):
        bad = np.flatnonzero(~np.isfinite(data[:, c]))
        if bad.size:
            nm = names[c] if names is not None else f"column {c}"
            raise DataError(path, nm, f"row {bad[0] + 1} is NaN or infinite ({bad.size} such rows); "
                                      "remove or fill them before simplex")


def _as_data(data, names=None, need=None):
    """(array (N, C) float64, names).  For a DataFrame only the columns in ``need`` (names or
    indices) must be numeric: a non-numeric cell there is a DataError naming column and row."""
    if hasattr(data, "columns") and hasattr(data, "to_numpy"):   # pandas DataFrame
        import pandas as pd

        names = [str(c) for c in data.columns]
        need_i = set()
        for s in (need or []):
            if isinstance(s, (int, np.integer)):
                need_i.add(int(s))
            elif s in names:
                need_i.add(names.index(s))
        arr = np.full((len(data), len(names)), np.nan)
        for i, c in enumerate(data.columns):
            col = data[c]
            vals = pd.to_numeric(col, errors="coerce")
            if i in need_i:
                bad = np.flatnonzero(vals.isna().to_numpy() & col.notna().to_numpy())
                if bad.size:
                    raise DataError(None, names[i], f"non-numeric cell {col.iloc[bad[0]]!r} at data row {bad[0] + 1}")
            arr[:, i] = vals.to_numpy(dtype=np.float64)
        return arr, names
    try:
        arr = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(None, None, "data must be numeric") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(None, None, f"data must be 2-D (rows, columns), got shape {arr.shape}")
    return arr, names


def _col_index(spec, names, what: str) -> list[int]:
    if isinstance(spec, (str, int, np.integer)):
        spec = spec.split() if isinstance(spec, str) else [spec]
    out = []
    for s in spec:
        if isinstance(s, (int, np.integer)):
            out.append(int(s))
        elif names is not None and s in names:
            out.append(names.index(s))
        else:
            raise DataError(None, str(s), f"{what} column '{s}' not found"
                            + (f" (have: {', '.join(names)})" if names else ""))
    return out


def load_csv(path: str | os.PathLike, columns: Sequence[str], targets: Sequence[str]):
    """Read a CSV; returns (data (N, C) float64, names).  Missing columns, non-numeric cells and
    NaN cells in the named columns are DataErrors naming the column and the row."""
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(path, None, "file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(path, None, f"cannot read CSV: {e}") from None
    names = [str(c) for c in df.columns]
    need = list(dict.fromkeys(list(columns) + list(targets)))
    for c in need:
        if c not in names:
            raise DataError(path, c, f"column not found in CSV (have: {', '.join(names)})")
    for c in need:
        vals = pd.to_numeric(df[c], errors="coerce")
        bad = np.flatnonzero(vals.isna().to_numpy() & df[c].notna().to_numpy())
        if bad.size:
            raise DataError(path, c, f"non-numeric cell {df[c].iloc[bad[0]]!r} at data row {bad[0] + 1}")
        nan = np.flatnonzero(~np.isfinite(vals.to_numpy(dtype=np.float64)))
        if nan.size:
            raise DataError(path, c, f"row {nan[0] + 1} is empty or NaN ({nan.size} such rows)")
        df[c] = vals
    return df[need].to_numpy(dtype=np.float64), need


# ----------------------------------------------------------------------------------------------
# neighbours: scipy's cKDTree (what pyEDM uses), queried once per embedding for every Tp
# ----------------------------------------------------------------------------------------------
def _query(tree, Q, k, workers=-1):
    d, i = tree.query(Q, k=k, workers=workers)
    return d.reshape(len(Q), k), i.reshape(len(Q), k)


def _candidates(Xe, lib_tp, pred_rows, pred_ok, knn: int, excl: int, workers: int = -1):
    """Library candidates of each prediction row that provably hold its ``knn`` nearest
    neighbours under every Tp's library and the exclusion radius, ties included.

    ``lib_tp`` (nTp, N) holds each Tp's library.  The rows in every one of them (the core) go in
    one tree, queried with knn + 1 neighbours plus the rows the exclusion radius may remove.  A
    row is complete when its knn-th admissible distance is below the largest one returned:
    every core row left out is then strictly farther.  Rows that are not (a tie that runs past
    the candidates) are queried again with twice as many, up to the whole core.  The few rows
    that only some Tp libraries hold (a longer Tp drops the library's last rows) are added to
    a prediction row's candidates where they are no farther than its knn-th core neighbour.
    Returns (idx (P, k) data rows, d (P, k) inf padded, chosen (nTp, P, k): the candidate is
    one of the row's knn neighbours for that Tp), each row in pyEDM's order (distance,
    |pred_row - lib_row|, lib_row), so that chosen is each Tp's first knn admissible ones."""
    from scipy.spatial import cKDTree

    core = np.flatnonzero(lib_tp.all(axis=0))
    extra = np.flatnonzero(lib_tp.any(axis=0) & ~lib_tp.all(axis=0))
    nc, P = len(core), len(pred_rows)
    lo = np.searchsorted(core, pred_rows - excl, "left")
    hi = np.searchsorted(core, pred_rows + excl, "right")
    k = min(knn + 1 + int((hi - lo)[pred_ok].max(initial=0)), nc)
    idx = np.zeros((P, k), np.int64)
    d = np.full((P, k), np.inf)
    kth = np.full(P, np.inf)
    rows = np.flatnonzero(pred_ok)
    tree = cKDTree(Xe[core], leafsize=32, balanced_tree=False) if rows.size and nc else None
    while tree is not None and rows.size:
        dq, iq = _query(tree, Xe[pred_rows[rows]], k, workers)
        iq = core[np.minimum(iq, nc - 1)]
        if k > idx.shape[1]:
            idx = np.pad(idx, ((0, 0), (0, k - idx.shape[1])))
            d = np.pad(d, ((0, 0), (0, k - d.shape[1])), constant_values=np.inf)
        idx[rows], d[rows] = iq, dq
        n_ok = np.cumsum(np.abs(pred_rows[rows][:, None] - iq) > excl, axis=1)
        enough = n_ok[:, -1] >= knn
        kth[rows] = np.where(enough, dq[np.arange(len(rows)), np.argmax(n_ok >= knn, axis=1)], np.inf)
        if k >= nc:
            break
        rows = rows[~(enough & (kth[rows] < dq[:, -1]))]
        k = min(2 * k, nc)
    if extra.size and pred_ok.any():
        dx, ix = _query(cKDTree(Xe[extra]), Xe[pred_rows], len(extra), workers=1)
        ix = extra[np.minimum(ix, len(extra) - 1)]
        near = (dx <= kth[:, None]) & pred_ok[:, None]
        m = int(near.sum(axis=1).max())
        if m:
            idx = np.concatenate([idx, np.where(near, ix, 0)[:, :m]], axis=1)
            d = np.concatenate([d, np.where(near, dx, np.inf)[:, :m]], axis=1)
            merge = np.flatnonzero(near[:, 0])     # extras come nearest first, so near[:, 0] says if any
            o = np.argsort(d[merge], axis=1, kind="stable")
            idx[merge] = np.take_along_axis(idx[merge], o, axis=1)
            d[merge] = np.take_along_axis(d[merge], o, axis=1)
    _tie_order(idx, d, pred_rows)
    adm = np.isfinite(d) & (np.abs(pred_rows[:, None] - idx) > excl)
    adm = np.broadcast_to(adm, (len(lib_tp),) + adm.shape).copy()
    if extra.size:
        r, c = np.nonzero(np.isin(idx, extra) & np.isfinite(d))
        adm[:, r, c] &= lib_tp[:, idx[r, c]]
    return idx, d, adm & (np.cumsum(adm, axis=-1, dtype=np.int32) <= knn)


def _tie_order(idx, d, pred_rows):
    """Put equal distances in pyEDM's order (|pred_row - lib_row|, then lib_row), in place, on
    the rows that have any (the tree sorts by distance alone)."""
    tied = np.flatnonzero(((d[:, 1:] == d[:, :-1]) & np.isfinite(d[:, 1:])).any(axis=1))
    if tied.size:
        i, dd = idx[tied], d[tied]
        order = np.lexsort((i, np.abs(pred_rows[tied][:, None] - i), dd), axis=-1)
        idx[tied] = np.take_along_axis(i, order, axis=1)
        d[tied] = np.take_along_axis(dd, order, axis=1)


# ----------------------------------------------------------------------------------------------
# the JAX kernel: weights, projections and statistics for every (embedding, Tp, target)
# ----------------------------------------------------------------------------------------------
_KERNEL = None


def _kernel():
    """Build the jit-compiled projection: ``lax.map`` over (tau, E) embeddings, ``vmap`` over Tp
    (each with its chosen neighbours) and over target series / surrogates (projection and
    statistics)."""
    global _KERNEL
    if _KERNEL is not None:
        return _KERNEL
    import jax
    import jax.numpy as jnp
    from jax import lax

    def stats(obs, proj, valid):
        valid = valid & jnp.isfinite(proj) & jnp.isfinite(obs)
        n = jnp.sum(valid)
        nf = jnp.maximum(n, 1).astype(obs.dtype)
        o = jnp.where(valid, obs, 0.0)
        p = jnp.where(valid, proj, 0.0)
        do = jnp.where(valid, o - jnp.sum(o) / nf, 0.0)
        dp = jnp.where(valid, p - jnp.sum(p) / nf, 0.0)
        rho = jnp.sum(do * dp) / jnp.sqrt(jnp.sum(do * do) * jnp.sum(dp * dp))
        err = o - p
        mae = jnp.sum(jnp.abs(err)) / nf
        rmse = jnp.sqrt(jnp.sum(err * err) / nf)
        mxe = jnp.max(jnp.where(valid, err, -jnp.inf))
        few = n < 5
        nan = jnp.nan
        return (jnp.where(few, nan, rho), jnp.where(few, nan, mae), jnp.where(few, nan, rmse),
                jnp.where(few, nan, mxe), n)

    @partial(jax.jit, static_argnames=("want_proj",))
    def run(idx, d, chosen, obs_row, pred_valid, Tps, Y, *, want_proj):
        # idx, d (G, P, k); chosen (G, nTp, P, k); obs_row (G, nTp, P); pred_valid (G, P)
        N = Y.shape[1]

        def group(args):
            idx, d, chosen, orow, pv = args

            def one_tp(chosen, tp, orw):
                dd = jnp.where(chosen, d, jnp.inf)
                mind = jnp.min(dd, axis=1)
                mind = jnp.maximum(jnp.where(jnp.isfinite(mind), mind, 1.0), 1e-6)
                w = jnp.where(chosen, jnp.exp(-dd / mind[:, None]), 0.0)
                ws = jnp.sum(w, axis=1)
                ws_safe = jnp.where(ws > 0, ws, 1.0)
                tidx = idx + tp
                tidx = jnp.clip(jnp.where(tidx < 0, tidx + N, tidx), 0, N - 1)
                obs_ok = orw >= 0
                orc = jnp.clip(orw, 0, N - 1)

                def one_y(y):
                    yv = jnp.where(chosen, y[tidx], 0.0)
                    proj = jnp.sum(w * yv, axis=1) / ws_safe
                    proj = jnp.where(ws <= 0, jnp.nan, proj)
                    obs = jnp.where(obs_ok, y[orc], jnp.nan)
                    st = stats(obs, proj, pv)
                    if want_proj:
                        var = jnp.sum(w * (yv - proj[:, None]) ** 2, axis=1) / ws_safe
                        var = jnp.where(ws <= 0, jnp.nan, var)
                        return st + (proj, var)
                    return st

                return jax.vmap(one_y)(Y)

            return jax.vmap(one_tp)(chosen, Tps, orow)

        return lax.map(group, (idx, d, chosen, obs_row, pred_valid))   # (G, nTp, nY, ...)

    _KERNEL = run
    return run


# ----------------------------------------------------------------------------------------------
# planning: host-side index sets for every (tau, E, Tp)
# ----------------------------------------------------------------------------------------------
def _plan(n, lib_pairs, pred_pairs, Es, taus, Tps):
    lib_p = _check_pairs(lib_pairs, n, "lib", strict=False)
    pred_p = _check_pairs(pred_pairs, n, "pred", strict=True)
    pred_all = np.concatenate([np.arange(a - 1, b, dtype=np.int64) for a, b in pred_p])
    pos_of = np.full(n, -1, np.int64)
    pos_of[pred_all] = np.arange(len(pred_all))
    P = len(pred_all)
    groups = [(a, tau, E) for a, tau in enumerate(taus) for E in sorted(set(Es))]
    G, nT = len(groups), len(Tps)
    lib_tp = np.zeros((G, nT, n), bool)
    obs_row = np.full((G, nT, P), -1, np.int64)
    pred_valid = np.zeros((G, P), bool)
    layouts, seen = {}, {}
    for g, (a, tau, E) in enumerate(groups):
        pa, plist = _pred_rows(pred_p, E, tau, n)
        sel = pos_of[np.concatenate(plist)]
        pred_valid[g, sel] = True
        for t, Tp in enumerate(Tps):
            lib_tp[g, t] = _lib_mask(lib_p, E, tau, Tp, n)
            key = (tuple((int(s[0]), len(s)) if len(s) else (0, 0) for s in plist), tau, Tp)
            if key not in seen:       # E often leaves the prediction rows alone: lay them out once
                seen[key] = _layout(plist, pa, tau, Tp, n)
            lay = seen[key]
            out_len, obs_rows_out, pred_pos, rows, _ = lay
            obs_row[g, t, sel] = obs_rows_out[pred_pos]
            layouts[(E, tau, Tp)] = (lay, sel)
    return dict(pred_all=pred_all, groups=groups, lib_tp=lib_tp, obs_row=obs_row,
                pred_valid=pred_valid, layouts=layouts)


def _run(data, col_idx, Y, lib, pred, Es, taus, Tps, exclusion_radius, want_proj):
    """Returns (plan, outputs); outputs are arrays (n_tau, Emax, n_Tp, n_Y, ...) indexed by E-1."""
    import jax
    import jax.numpy as jnp

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
    plan = _plan(n, parse_pairs(lib, "lib"), parse_pairs(pred, "pred"), Es, taus, Tps)
    Emax = max(Es)
    C = len(col_idx)
    Xall = [np.nan_to_num(embed(data[:, col_idx], Emax, tau), nan=0.0) for tau in taus]

    def search(g):
        a, _, E = plan["groups"][g]
        return _candidates(np.ascontiguousarray(Xall[a][:, :E * C]), plan["lib_tp"][g], plan["pred_all"],
                           plan["pred_valid"][g], E + 1, excl, workers=1 if len(plan["groups"]) > 1 else -1)

    # one embedding per thread (the tree releases the GIL); the largest E first
    order = sorted(range(len(plan["groups"])), key=lambda g: -plan["groups"][g][2])
    with ThreadPoolExecutor(min(os.cpu_count() or 1, len(order))) as pool:
        found = dict(zip(order, pool.map(search, order)))
    cands = [found[g] for g in range(len(plan["groups"]))]
    k = max(c[0].shape[1] for c in cands)
    G, nT, P = len(cands), len(Tps), len(plan["pred_all"])
    idx, dist, chosen = np.zeros((G, P, k), np.int64), np.full((G, P, k), np.inf), np.zeros((G, nT, P, k), bool)
    for g, (i, dd, ch) in enumerate(cands):
        idx[g, :, :i.shape[1]], dist[g, :, :i.shape[1]], chosen[g, :, :, :i.shape[1]] = i, dd, ch
    with jax.enable_x64(True):
        out = _kernel()(jnp.asarray(idx), jnp.asarray(dist), jnp.asarray(chosen), jnp.asarray(plan["obs_row"]),
                        jnp.asarray(plan["pred_valid"]), jnp.asarray(np.array(Tps, np.int64)), jnp.asarray(np.asarray(Y, np.float64)),
                        want_proj=want_proj)
        out = jax.tree_util.tree_map(np.asarray, out)
    # back to (n_tau, Emax, ...) so callers index by E - 1
    full = []
    for o in out:
        f = np.zeros((len(taus), Emax) + o.shape[1:], o.dtype)
        for g, (a, _, E) in enumerate(plan["groups"]):
            f[a, E - 1] = o[g]
        full.append(f)
    return plan, tuple(full)


def _split(spec):
    if isinstance(spec, str):
        return spec.split()
    if isinstance(spec, (int, np.integer)):
        return [spec]
    return list(spec)


def _prep(data, columns, target, names):
    arr, names = _as_data(data, names, need=_split(columns) + _split(target))
    cols = _col_index(columns, names, "columns")
    tgts = _col_index(target, names, "target")
    for c in cols + tgts:
        if not 0 <= c < arr.shape[1]:
            raise DataError(None, "columns", f"column index {c} out of range (data has {arr.shape[1]} columns)")
    _check_finite(arr, cols + tgts, names)
    return arr, cols, tgts


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------
def simplex(data, columns, target, lib, pred, E: int = 3, Tp: int = 1, tau: int = -1,
            exclusion_radius: int = 0, names: Sequence[str] | None = None) -> SimplexResult:
    """One simplex projection, identical to ``pyEDM.Simplex(..., embedded=False)``.

    ``data`` is an (N, C) array (or DataFrame); ``columns`` / ``target`` are column indices or
    names (with ``names`` or a DataFrame).  ``lib`` / ``pred``: 1-based inclusive row pairs."""
    arr, cols, tgts = _prep(data, columns, target, names)
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
    arr, cols, tgts = _prep(data, columns, target, names)
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
                       names: Sequence[str] | None = None) -> SurrogateResult:
    """Observed rho against target-shuffled surrogates (the target series permuted, the
    embedding and its neighbours unchanged), all in one compiled call.  Each surrogate is
    scored as a full re-run with the shuffled series as target (observations shuffled too)."""
    if int(n_surrogates) < 1:
        raise DataError(None, "n_surrogates", f"must be >= 1, got {n_surrogates}")
    arr, cols, tgts = _prep(data, columns, target, names)
    if len(tgts) != 1:
        raise DataError(None, "target", "surrogates take one target column")
    y = arr[:, tgts[0]]
    Y = np.concatenate([y[None, :], shuffled_targets(y, n_surrogates, seed)])
    plan, out = _run(arr, cols, Y, lib, pred, [E], [tau], [Tp], exclusion_radius, want_proj=False)
    rho, mae, rmse, _, nn = (o[0, int(E) - 1, 0] for o in out)
    p, mean, p95 = surrogate_p_value(rho[0], rho[1:])
    return SurrogateResult(rho=float(rho[0]), null=rho[1:], null_mean=mean, null_p95=p95, p_value=p,
                           n_surrogates=int(n_surrogates), mae=float(mae[0]), rmse=float(rmse[0]),
                           n=int(nn[0]))
