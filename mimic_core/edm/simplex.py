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

The heavy part is one jit-compiled call: ``lax.map`` over (E, tau) embeddings, and inside, for
one distance matrix and one ``top_k``, ``vmap`` over Tp and over target series / shuffled
surrogates.  Computation runs in float64 inside ``jax.enable_x64(True)`` only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
import os
from typing import Sequence

import numpy as np

from mimic_core.edm.embed import embed
from mimic_core.errors import DataError

PAD = 8  # extra top_k candidates to resolve distance ties exactly as pyEDM's tie-break does


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


def _lib_rows(pairs, E: int, tau: int, Tp: int, n: int) -> np.ndarray:
    """pyEDM CreateIndices (not embedded) + RemoveNan for complete data: 0-based library rows."""
    shift = abs(tau) * (E - 1)
    rows = []
    for r, (start, stop) in enumerate(pairs):
        if tau < 0:
            start = start + shift
        else:
            stop = stop - shift
        if Tp < 0:
            start = max(start, start + abs(Tp) - 1)
        elif r == len(pairs) - 1:
            stop = stop - Tp
        rows.append(np.arange(start - 1, stop, dtype=np.int64))
    lib = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    vec_len = abs(max(-shift, 0, Tp) - min(-shift, 0, Tp)) + 1
    if vec_len > len(lib):
        raise DataError(None, "lib", f"E = {E}, tau = {tau}, Tp = {Tp} need {vec_len} rows "
                                     f"(E*|tau| + |Tp|) but the library has {len(lib)}")
    if len(lib) and lib[-1] >= n:
        raise DataError(None, "lib", f"library row {lib[-1] + 1} is past the last data row {n}")
    # RemoveNan: rows whose embedding vector is incomplete (only possible at the data edges)
    ok = (lib >= shift) if tau < 0 else (lib <= n - 1 - shift)
    lib = lib[ok & (lib >= 0)]
    if len(lib) < E + 1:
        raise DataError(None, "lib", f"the library has {len(lib)} usable rows, fewer than the "
                                     f"{E + 1} neighbours simplex needs (E = {E}, tau = {tau}, Tp = {Tp})")
    return lib


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
    out_size = 0
    obs_i: list[int] = []
    for seg in pred_list:
        out_size += len(seg) + tpm
        if len(seg) == 0:
            continue
        seg = list(seg)
        if Tp == 0:
            app = seg
        elif Tp > 0:
            app = seg + list(range(seg[-1] + 1, seg[-1] + Tp + 1)) if seg[-1] + Tp < n else seg
        else:
            app = list(range(seg[0] + Tp, seg[0])) + seg if seg[0] + Tp > -1 else seg
        obs_i += app
    pred_out: list[int] = []
    p0 = 0
    for seg in pred_list:
        m = len(seg)
        if m == 0:
            continue
        if Tp == 0:
            r = list(range(p0, p0 + m)); pred_out += r; p0 = pred_out[-1] + 1
        elif Tp > 0:
            r = list(range(p0 + Tp, p0 + Tp + m)); pred_out += r; p0 = pred_out[-1] + 1
        else:
            r = list(range(p0, p0 + m)); pred_out += r; p0 = pred_out[-1] + tpm + 1
    if len(pred_i) != len(pred_out):   # cannot happen without NaN data; kept for fidelity
        m = len(pred_out)
        keys = pred_all[-m:] if tau < 0 else pred_all[:m]
        d = dict(zip(keys.tolist(), pred_out))
        pred_out = [d[i] for i in pred_i.tolist()]
    obs_i_a = np.asarray(obs_i, dtype=np.int64)
    if Tp > 0:
        obs_out = np.arange(len(obs_i)) if obs_i[-1] + Tp > n - 1 else np.arange(out_size)
    else:
        obs_out = np.arange(len(obs_i))
        if pred_i[0] + Tp < 0:
            obs_out = obs_out + (tpm - pred_i[0])
    pred_out_a = np.asarray(pred_out, dtype=np.int64)
    out_len = int(max(pred_out_a[-1], obs_out[-1])) + 1
    obs_rows_out = np.full(out_len, -1, dtype=np.int64)
    obs_rows_out[obs_out] = obs_i_a
    rows = np.full(out_len, np.iinfo(np.int64).min, dtype=np.int64)
    rows[obs_out] = obs_i_a
    # rows without an observation (the |Tp| padding): continue from the neighbouring rows
    known = np.flatnonzero(rows != np.iinfo(np.int64).min)
    for k in range(out_len):
        if rows[k] == np.iinfo(np.int64).min:
            before = known[known < k]
            if before.size:
                rows[k] = rows[before[-1]] + (k - before[-1])
            else:
                after = known[known > k]
                rows[k] = rows[after[0]] - (after[0] - k)
    return out_len, obs_rows_out, pred_out_a, rows, pred_i


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
# the JAX kernel
# ----------------------------------------------------------------------------------------------
_KERNEL = None
EXTRA = 16  # float32 pre-selection keeps this many more candidates than needed


def _kernel():
    """Build the jit-compiled scan.  Per tau, ``lax.scan`` walks E = 1..Emax adding one delay
    lag (C columns) to the running squared-distance matrix (so an E-scan computes each lag once);
    for each requested E a float32 ``top_k`` pre-selects candidates (exact float64 re-ranking,
    with a float64 ``top_k`` fallback whenever float32 rounding could have hidden a neighbour),
    then ``vmap`` over Tp (library mask, tie ordering, weights) and over target series /
    surrogates (projection and statistics)."""
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

    def nearest(d2m, K, K1):
        """Exact float64 top-K (ascending d2, then lower row) of each row of d2m."""
        big = jnp.max(jnp.where(jnp.isfinite(d2m), d2m, 0.0)) < 1e37
        # only the indices of the float32 top_k are used: consuming its values makes XLA:CPU
        # leave its fast top-k path (a full sort, ~50x slower)
        _, i1 = lax.top_k(-d2m.astype(jnp.float32), K1)
        c2 = jnp.take_along_axis(d2m, i1, axis=1)
        last32 = c2[:, -1].astype(jnp.float32)          # the largest float32 value selected
        c2, i1 = lax.sort((c2, i1), dimension=1, num_keys=2)
        kth32 = c2[:, K - 1].astype(jnp.float32)
        ok = jnp.all((kth32 < last32) | (jnp.isinf(last32) & big))

        def exact(_):
            negv, idx = lax.top_k(-d2m, K)
            return -negv, idx

        return lax.cond(ok, lambda _: (c2[:, :K], i1[:, :K]), exact, None)

    @partial(jax.jit, static_argnames=("C", "K", "KK", "want_proj"))
    def run(Xall, requested, pred_valid, lib_union, lib_tp, obs_row, pred_rows, Tps, Y, excl,
            *, C, K, KK, want_proj):
        # Xall (nTau, N, Emax*C); per-(tau, E) arrays have leading dims (nTau, Emax)
        N = Xall.shape[1]
        P = pred_rows.shape[0]
        Emax = Xall.shape[2] // C
        K1 = min(K + EXTRA, N)
        cols = jnp.arange(N)
        excl_mask = jnp.abs(pred_rows[:, None] - cols[None, :]) <= excl

        def select_project(d2, kn, pv, lu, ltp, orow):
            d2m = jnp.where(lu[None, :] & ~excl_mask, d2, jnp.inf)
            cd2, idx = nearest(d2m, K, K1)
            cd = jnp.sqrt(cd2)
            prox = jnp.abs(pred_rows[:, None] - idx)
            cd_last = cd[:, -1]      # every row outside the candidates is at least this far

            def cand_tp(libm):
                dd = jnp.where(libm[idx], cd, jnp.inf)
                dd, _, nb = lax.sort((dd, prox, idx), dimension=1, num_keys=3)
                t = jnp.take(dd, kn - 1, axis=1)           # the knn-th distance
                # a tie at the knn-th distance may continue past the candidates: full rows then
                bad = jnp.any(jnp.isfinite(t) & (t >= cd_last))
                return dd[:, :KK], nb[:, :KK], bad

            def full_tp(libm):                             # exact pyEDM order over whole rows
                dd = jnp.where(libm[None, :], jnp.sqrt(d2m), jnp.inf)
                ii = jnp.broadcast_to(cols[None, :], dd.shape).astype(idx.dtype)
                dd, _, nb = lax.sort((dd, jnp.abs(pred_rows[:, None] - ii), ii), dimension=1, num_keys=3)
                return dd[:, :KK], nb[:, :KK].astype(idx.dtype)

            dd_all, nb_all, bad = jax.vmap(cand_tp)(ltp)
            dd_all, nb_all = lax.cond(jnp.any(bad), lambda _: jax.vmap(full_tp)(ltp),
                                      lambda _: (dd_all, nb_all), None)

            def one_tp(dd, nb, tp, orw):
                dd = jnp.where(jnp.arange(KK)[None, :] < kn, dd, jnp.inf)
                fin = jnp.isfinite(dd)
                mind = jnp.min(jnp.where(fin, dd, jnp.inf), axis=1)
                mind = jnp.where(jnp.isfinite(mind), mind, 1.0)
                mind = jnp.maximum(mind, 1e-6)
                w = jnp.where(fin, jnp.exp(-dd / mind[:, None]), 0.0)
                ws = jnp.sum(w, axis=1)
                ws_safe = jnp.where(ws > 0, ws, 1.0)
                tidx = nb + tp
                tidx = jnp.clip(jnp.where(tidx < 0, tidx + N, tidx), 0, N - 1)
                obs_ok = orw >= 0
                orc = jnp.clip(orw, 0, N - 1)

                def one_y(y):
                    yv = jnp.where(fin, y[tidx], 0.0)
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

            return jax.vmap(one_tp)(dd_all, nb_all, Tps, orow)

        outs = []
        for ti in range(Xall.shape[0]):
            X = Xall[ti]

            def step(d2, xs, X=X):
                e, req, pv, lu, ltp, orow = xs
                lag = lax.dynamic_slice_in_dim(X, e * C, C, axis=1)     # (N, C): lag e
                lp = lag[pred_rows]
                for c in range(C):
                    d2 = d2 + (lp[:, c:c + 1] - lag[None, :, c]) ** 2
                args = (d2, e + 2, pv, lu, ltp, orow)
                shapes = jax.eval_shape(select_project, *args)
                res = lax.cond(req, lambda a: select_project(*a),
                               lambda a: jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes),
                               args)
                return d2, res

            xs = (jnp.arange(Emax), requested[ti], pred_valid[ti], lib_union[ti], lib_tp[ti], obs_row[ti])
            _, res = lax.scan(step, jnp.zeros((P, N), Xall.dtype), xs)
            outs.append(res)
        return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *outs)   # (nTau, Emax, nTp, nY, ...)

    _KERNEL = run
    return run


# ----------------------------------------------------------------------------------------------
# planning: host-side index sets for every (tau, E, Tp)
# ----------------------------------------------------------------------------------------------
def _plan(n, lib_pairs, pred_pairs, Es, taus, Tps):
    lib_p = _check_pairs(lib_pairs, n, "lib", strict=False)
    pred_p = _check_pairs(pred_pairs, n, "pred", strict=True)
    Emax = max(Es)
    pred_all = np.concatenate([np.arange(a - 1, b, dtype=np.int64) for a, b in pred_p])
    pos_of = {int(r): j for j, r in enumerate(pred_all)}
    P = len(pred_all)
    nA, nT = len(taus), len(Tps)
    requested = np.zeros((nA, Emax), bool)
    lib_tp = np.zeros((nA, Emax, nT, n), bool)
    obs_row = np.full((nA, Emax, nT, P), -1, np.int64)
    pred_valid = np.zeros((nA, Emax, P), bool)
    layouts = {}
    for a, tau in enumerate(taus):
        for E in sorted(set(Es)):
            e = E - 1
            requested[a, e] = True
            pa, plist = _pred_rows(pred_p, E, tau, n)
            pi = np.concatenate(plist)
            sel = np.array([pos_of[int(r)] for r in pi], dtype=np.int64)
            pred_valid[a, e, sel] = True
            for t, Tp in enumerate(Tps):
                lib = _lib_rows(lib_p, E, tau, Tp, n)
                lib_tp[a, e, t, lib] = True
                lay = _layout(plist, pa, tau, Tp, n)
                out_len, obs_rows_out, pred_pos, rows, _ = lay
                obs_row[a, e, t, sel] = obs_rows_out[pred_pos]
                layouts[(E, tau, Tp)] = (lay, sel)
    lib_union = lib_tp.any(axis=2)
    req = np.argwhere(requested)
    removed = int(max((lib_union[a, e].sum() - lib_tp[a, e, t].sum()) for a, e in req for t in range(nT)))
    kk = Emax + 1
    K = int(min(kk + PAD + removed, min(lib_union[a, e].sum() for a, e in req)))
    K = max(K, 1)
    return dict(pred_all=pred_all, requested=requested, lib_tp=lib_tp, lib_union=lib_union,
                obs_row=obs_row, pred_valid=pred_valid, layouts=layouts, K=K, KK=min(kk, K))


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
    plan = _plan(n, parse_pairs(lib, "lib"), parse_pairs(pred, "pred"), Es, taus, Tps)
    Emax = max(Es)
    C = len(col_idx)
    Xall = np.stack([np.nan_to_num(embed(data[:, col_idx], Emax, tau), nan=0.0) for tau in taus])
    with jax.enable_x64(True):
        out = _kernel()(jnp.asarray(Xall, jnp.float64), jnp.asarray(plan["requested"]),
                        jnp.asarray(plan["pred_valid"]), jnp.asarray(plan["lib_union"]),
                        jnp.asarray(plan["lib_tp"]), jnp.asarray(plan["obs_row"]),
                        jnp.asarray(plan["pred_all"]), jnp.asarray(np.array(Tps, np.int64)),
                        jnp.asarray(np.asarray(Y, np.float64)), jnp.asarray(int(exclusion_radius)),
                        C=C, K=plan["K"], KK=plan["KK"], want_proj=want_proj)
        out = jax.tree_util.tree_map(np.asarray, out)
    return plan, out


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
