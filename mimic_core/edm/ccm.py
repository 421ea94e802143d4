"""Convergent cross mapping (Sugihara et al. 2012) with pyEDM 2.5.7 semantics (``pyEDM.CCM``).

The rules, from pyEDM 2.5.7 (CCM.Validate, CCM.Embed, CCM.Project, _ccm_for_libsize):

* Forward map: the delay embedding of ``columns`` (each column E lags, side by side) predicts the first
  ``target`` column Tp rows ahead; the reverse map swaps the roles.  A row is valid when its embedding
  and its target Tp ahead exist; the valid rows (M of them) are both the prediction set and the pool the
  libraries are drawn from.
* knn = E + 1 (pyEDM sets it before it looks at the number of columns), at most L - 1.
* For every library size L, ``sample`` libraries of L valid rows drawn by
  ``Generator.choice(M, L, replace=False)`` and sorted.  pyEDM seeds every (direction, L) task's
  generator with the same entropy (``SeedSequence(seed).spawn`` keeps the entropy, and each task builds
  ``SeedSequence(child.entropy)``), so every task draws from the same stream; this is reproduced, so a
  fixed seed gives pyEDM's very libraries.
* Every valid row is predicted from its knn nearest library rows, the row itself and rows within
  ``exclusion_radius`` of it (in data rows) left out; a row with fewer such library rows is not
  predicted.  Weights ``exp(-d / d_min)`` (only the zero-distance rows when d_min = 0).
* rho of a library is Pearson's r over the predicted rows (NaN below 3, 0 for a constant prediction);
  the result at L is the mean over the samples (NaN samples left out), the variance beside it.

How it is computed here: for each L, the knn nearest library rows of every row for all samples at once
from each row's nearest candidates when the library is large (a library of L of M rows holds a row's
knn nearest members among its first ~knn M / L candidates: distances between all valid rows once per
direction, then one compiled search over all samples), and with pyEDM's own tree (scipy ``KDTree`` on
the library, its defaults) when the library is small, where the candidate window would be wide.  Where
two library rows tie for the last place in the window (the k-th and the next admissible distance agree
to 1e-9), those rows are re-done with the same tree: ties fall as in pyEDM, not just nearly.  Above 8,000
valid rows the distance matrix is not built and every library takes the tree (exact, at pyEDM's speed).

``random=False`` takes one sequential library, the first L valid rows (cppEDM's ``random = false``);
pyEDM 2.5.7 itself only draws random libraries.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache, partial
from typing import Sequence

import numpy as np

from mimic_core.edm.embed import check_args
from mimic_core.edm.tables import prepare
from mimic_core.errors import DataError

__all__ = ["CCMResult", "ccm", "convergence", "cross_map_full"]

_TIE = 1e-9            # relative gap below which two distances count as a tie (re-done on pyEDM's tree)
_CHUNK = 1_000_000     # elements per (samples x rows x candidates) block: bounds the memory of one step (and
                       # keeps it in cache: the bench workload 0.53-0.56 s at 4M, 0.46 s at 1M, 2-core CPU)
_DENSE_MAX = 8_000     # above this many valid rows the (M, M) distance matrix is not built: pyEDM's tree per library
_TREE_NS = 120.0       # cost of one neighbour from pyEDM's tree per row (ns, 2-core CPU), against 1.6 ns a window candidate


@dataclass
class CCMResult:
    """Mean cross-map skill per library size.  ``rho_x_to_y``: the embedding of ``columns`` (x)
    predicting ``target`` (y), pyEDM's ``"x:y"`` column (high when y drives x); ``rho_y_to_x`` the
    reverse.  ``samples`` (2, n_lib_sizes, sample): each library's rho, forward then reverse."""

    lib_sizes: np.ndarray
    rho_x_to_y: np.ndarray
    rho_y_to_x: np.ndarray
    var_x_to_y: np.ndarray
    var_y_to_x: np.ndarray
    samples: np.ndarray = field(repr=False)
    columns: list = field(default_factory=list)
    target: list = field(default_factory=list)
    E: int = 0
    Tp: int = 0
    tau: int = -1
    knn: int = 0
    exclusion_radius: int = 0
    n_valid: tuple = (0, 0)

    def rows(self) -> list[dict]:
        """One dict per library size: ``{"lib_size", "rho_x_to_y", "rho_y_to_x"}`` (the CLI's JSON rows)."""
        return [{"lib_size": int(L), "rho_x_to_y": float(a), "rho_y_to_x": float(b)}
                for L, a, b in zip(self.lib_sizes, self.rho_x_to_y, self.rho_y_to_x)]


def _lagged(data: np.ndarray, cols: Sequence[int], E: int, tau: int) -> tuple[np.ndarray, np.ndarray]:
    """pyEDM's mixed multivariate embedding (E lags of each column, column-major) and its valid rows."""
    n = data.shape[0]
    out = np.full((n, E * len(cols)), np.nan)
    for c_i, c in enumerate(cols):
        v = data[:, c]
        for k in range(E):
            s = k * tau
            j = c_i * E + k
            if abs(s) >= n:
                continue
            if s <= 0:
                out[-s:, j] = v[:n + s]
            else:
                out[:n - s, j] = v[s:]
    return out, ~np.isnan(out).any(axis=1)


def _direction(data, emb_cols, pred_col, E, tau, Tp, valid_lib):
    """(X (M, D) valid embedding rows, y (M,) their target Tp ahead, t (M,) their data rows)."""
    n = data.shape[0]
    X, ok = _lagged(data, emb_cols, E, tau)
    if valid_lib is not None:
        ok &= valid_lib
    shifted = np.arange(n) + Tp
    ok &= (shifted >= 0) & (shifted < n)
    t = np.flatnonzero(ok)
    return np.ascontiguousarray(X[t]), data[t + Tp, pred_col], t


def _libraries(M: int, L: int, sample: int, entropy, random: bool) -> np.ndarray:
    """(sample, L) sorted library rows (indices into the M valid rows), drawn as pyEDM draws them."""
    if not random:
        return np.arange(L)[None, :]
    rng = np.random.default_rng(np.random.SeedSequence(entropy))
    out = np.empty((sample, L), np.int64)
    for s in range(sample):
        out[s] = np.sort(rng.choice(M, size=L, replace=False))
    return out


def pyedm_neighbours(X, t, lib, rows, k: int, excl: int):
    """pyEDM's own search for ``rows`` given one library (sorted indices into X): a scipy KDTree on the
    library with its defaults, queried for k + 1 (+ 2 radius) rows, the row itself and the excluded
    rows dropped, the first k kept.  Returns (nn (R, k), d (R, k), insufficient (R,))."""
    from scipy.spatial import KDTree

    L = len(lib)
    kq = min(k + 1 + (2 * excl if excl > 0 else 0), L)
    d, loc = KDTree(X[lib]).query(X[rows], k=kq)
    d, loc = np.asarray(d).reshape(len(rows), kq), np.asarray(loc).reshape(len(rows), kq)
    nb = lib[loc]
    drop = nb == np.asarray(rows)[:, None]
    if excl > 0:
        drop |= np.abs(t[rows][:, None] - t[nb]) <= excl
    ok = ~drop
    cs = np.cumsum(ok, axis=1)
    short = cs[:, -1] < k
    first = ok & (cs <= k) & ~short[:, None]
    nn = np.zeros((len(rows), k), np.int64)
    dd = np.zeros((len(rows), k))
    r, _ = np.nonzero(first)
    if r.size:
        nn[~short] = nb[first].reshape(-1, k)
        dd[~short] = d[first].reshape(-1, k)
    return nn, dd, short


def _bucket(n: int, q: int = 16) -> int:
    return int(-(-n // q) * q)


@cache
def _kernels():
    """The jit-compiled window search (x64), mapping over chunks of samples; k is static.  It neither
    sorts nor scans (XLA's cumsum and top_k are slow on CPU): it packs each row's candidates into 64-bit
    words and peels the lowest set bits."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    def lowest_bits(words, k):
        # words (..., nw) uint64: positions of the first k + 1 set bits (64 * nw where none is left)
        nw = words.shape[-1]
        out = []
        for _ in range(k + 1):
            nz = words != 0
            w = jnp.argmax(nz, axis=-1)
            any_ = jnp.any(nz, axis=-1)
            x = jnp.take_along_axis(words, w[..., None], axis=-1)[..., 0]
            low = x & (~x + jnp.uint64(1))
            bit = 63 - lax.clz(low).astype(jnp.int32)
            out.append(jnp.where(any_, w * 64 + bit, 64 * nw))
            words = jnp.where(jnp.arange(nw) == w[..., None], words & ~low[..., None], words)
        return jnp.stack(out, axis=-1)

    @partial(jax.jit, static_argnames="k")
    def window(order, dsorted, adm, member, *, k):
        # order, dsorted, adm (M, W) with W = 64 * nw: each row's nearest rows; member (C, Sc, M)
        M, W = order.shape
        nw = W // 64
        rows = jnp.arange(M)[:, None]
        shifts = jnp.arange(64, dtype=jnp.uint64)

        def chunk(mem):
            def one_lib(m):
                ok = (m[order] & adm).reshape(M, nw, 64).astype(jnp.uint64)
                words = jnp.sum(ok << shifts, axis=-1, dtype=jnp.uint64)          # distinct bits: sum = or
                pos = lowest_bits(words, k)                                       # (M, k + 1)
                count = jnp.sum(lax.population_count(words), axis=-1).astype(jnp.int32)
                p = jnp.minimum(pos, W - 1)
                return order[rows, p], dsorted[rows, p], count
            return jax.vmap(one_lib)(mem)
        return lax.map(chunk, member)

    return window


def _chunks(S: int, per_sample: int) -> tuple[int, int]:
    """(samples per chunk, chunks): a chunk holds about _CHUNK elements."""
    sc = max(1, min(S, _CHUNK // max(per_sample, 1)))
    return sc, -(-S // sc)


def _nearest(order, dsorted, adm, lib, k: int):
    """knn nearest admissible library rows of every row, for every library in ``lib`` (S, L), from each
    row's W nearest candidates ``order`` (M, W).  Returns (nn (S, M, k), d (S, M, k), short (S, M),
    redo (S, M)): redo marks a tie for the last place (or a candidate list too short to tell), to be
    re-done on pyEDM's tree."""
    import jax
    import jax.numpy as jnp

    S, L = lib.shape
    M, W = order.shape
    window = _kernels()
    with jax.enable_x64(True):
        sc, nc = _chunks(S, M * W)
        member = np.zeros((nc * sc, M), bool)
        member[np.arange(S)[:, None], lib] = True
        nn, d, count = window(jnp.asarray(order, jnp.int32), jnp.asarray(dsorted), jnp.asarray(adm),
                              jnp.asarray(member.reshape(nc, sc, M)), k=k)
        nn, d, count = (np.array(a).reshape((nc * sc,) + a.shape[2:])[:S] for a in (nn, d, count))
    full = W >= M
    dk = d[..., k - 1]
    # past the candidates: the next one is no nearer than the last candidate
    nxt = np.where(count > k, d[..., k], dsorted[:, -1][None, :])
    tie = ~(nxt - dk > _TIE * np.maximum(dk, 1e-300))
    short = (count < k) & full
    redo = ((count >= k) & tie & ~((count == k) & full)) | ((count < k) & (not full))
    return nn[..., :k].astype(np.int64), d[..., :k], short, redo


def _tree_neighbours(X, t, libs, k: int, excl: int):
    """``pyedm_neighbours`` of every row for each library in ``libs`` (S, L), the libraries spread over
    threads (the tree releases the GIL): pyEDM's own search, so ties fall as in pyEDM with nothing to redo."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    rows = np.arange(X.shape[0])
    with ThreadPoolExecutor(min(os.cpu_count() or 1, len(libs))) as pool:
        res = list(pool.map(lambda lb: pyedm_neighbours(X, t, lb, rows, k, excl), libs))
    return tuple(np.stack(a) for a in zip(*res))


def _weights(d):
    d_min = d[..., :1]
    w = np.exp(-d / np.where(d_min > 0.0, d_min, 1.0))
    w = np.where(d_min == 0.0, (d == 0.0).astype(float), w)
    s = w.sum(axis=-1, keepdims=True)
    return w / np.where(s > 0.0, s, 1.0)


def _pearson(pred, obs):
    """pyEDM's NaN-safe Pearson r over rows, per sample: (S, M) -> (S,)."""
    ok = np.isfinite(pred)
    n = ok.sum(axis=1)
    nf = np.maximum(n, 1)
    p = np.where(ok, pred, 0.0)
    o = np.where(ok, obs[None, :], 0.0)
    pm = np.where(ok, p - (p.sum(axis=1) / nf)[:, None], 0.0)
    om = np.where(ok, o - (o.sum(axis=1) / nf)[:, None], 0.0)
    den = np.sqrt((pm * pm).sum(axis=1) * (om * om).sum(axis=1))
    r = np.where(den == 0.0, 0.0, (pm * om).sum(axis=1) / np.where(den == 0.0, 1.0, den))
    return np.where(n < 3, np.nan, r)


def _cross_map(X, y, t, lib_sizes, sample, knn, excl, entropy, random, window_factor=4.0):
    """(len(lib_sizes), sample) rho of one direction."""
    M = X.shape[0]
    # Each library size goes to the cheaper search: the window of each row's W nearest rows (one compiled
    # call for all samples) or, where W would be wide (small libraries), pyEDM's own tree on each library.
    # Per row, measured on a 2-core CPU: ~1.6 ns a window candidate, ~120 ns a neighbour from the tree.
    plan = []
    for L in lib_sizes:
        k = min(knn, L - 1)
        w = _bucket(min(M, int(np.ceil(window_factor * (k + 2 * excl + 2) * M / max(L, 1))) + 8), 64)
        plan.append((k, w, M <= _DENSE_MAX and w * 1.6 < _TREE_NS * (k + 1)))
    Wmax = max([w for _, w, win in plan if win], default=0)
    order = dsorted = None
    if Wmax:      # each row's Wmax nearest rows, nearest first (padded past M with the farthest, never admitted)
        from scipy.spatial.distance import cdist

        D = cdist(X, X)
        Wr = min(Wmax, M)
        order = np.argpartition(D, Wr - 1, axis=1)[:, :Wr] if Wr < M else np.tile(np.arange(M), (M, 1))
        ds = np.take_along_axis(D, order, axis=1)
        o = np.argsort(ds, axis=1, kind="stable")
        order, dsorted = np.take_along_axis(order, o, axis=1), np.take_along_axis(ds, o, axis=1)
        if Wmax > Wr:
            order = np.pad(order, ((0, 0), (0, Wmax - Wr)), mode="edge")
            dsorted = np.pad(dsorted, ((0, 0), (0, Wmax - Wr)), mode="edge")
    out = np.full((len(lib_sizes), sample if random else 1), np.nan)
    for i, (L, (k, W, win)) in enumerate(zip(lib_sizes, plan)):
        if k < 1:
            continue
        lib = _libraries(M, L, sample, entropy, random)
        if win:
            o = order[:, :W]
            adm = (np.abs(t[o] - t[:, None]) > excl) & (np.arange(W) < M)[None, :]
            nn, dd, short, redo = _nearest(o, dsorted[:, :W], adm, lib, k)
            for s in np.flatnonzero(redo.any(axis=1)):
                r = np.flatnonzero(redo[s])
                nn[s, r], dd[s, r], short[s, r] = pyedm_neighbours(X, t, lib[s], r, k, excl)
        else:
            nn, dd, short = _tree_neighbours(X, t, lib, k, excl)
        pred = np.sum(_weights(dd) * y[nn], axis=-1)
        pred = np.where(short, np.nan, pred)
        out[i] = _pearson(pred, y)
    return out


def _lib_sizes(lib_sizes, M: int, E: int) -> list[int]:
    try:
        sizes = [int(v) for v in np.atleast_1d(lib_sizes)]
    except (TypeError, ValueError):
        raise DataError(None, "lib_sizes", f"expected integers, got {lib_sizes!r}") from None
    if not sizes:
        raise DataError(None, "lib_sizes", "no library sizes given")
    for L in sizes:
        if L < E + 2:
            raise DataError(None, "lib_sizes", f"library size {L} is below E + 2 = {E + 2} (pyEDM's minimum)")
        if L > M:
            raise DataError(None, "lib_sizes", f"library size {L} is larger than the library: {M} rows have "
                                               f"an embedding and a target (E {E}, its lags and Tp drop the rest)")
    return sizes


def ccm(data, columns, target, lib_sizes, sample: int = 30, E: int = 3, Tp: int = 0, tau: int = -1,
        knn: int = 0, exclusion_radius: int = 0, seed: int | None = None, random: bool = True,
        valid_lib=None, names: Sequence[str] | None = None) -> CCMResult:
    """Cross-map skill against library size, both directions, as ``pyEDM.CCM`` (2.5.7): with a fixed
    ``seed`` the same libraries and the same rho.  ``valid_lib`` (N,) bool: rows that may be used
    (pyEDM's ``validLib``)."""
    arr, cols, tgts = prepare(data, columns, target, names)
    E, tau, excl = check_args(E, tau, exclusion_radius)
    Tp = int(Tp)
    if int(sample) < 1:
        raise DataError(None, "sample", f"must be >= 1, got {sample}")
    nm = names if names is not None else [f"column {i}" for i in range(arr.shape[1])]
    if hasattr(data, "columns"):
        nm = [str(c) for c in data.columns]
    for c in dict.fromkeys(cols + tgts):
        if np.ptp(arr[:, c]) == 0:
            raise DataError(None, nm[c], "the column is constant: nothing to cross-map")
    if valid_lib is not None:
        valid_lib = np.asarray(valid_lib, bool)
        if valid_lib.shape != (arr.shape[0],):
            raise DataError(None, "valid_lib", f"must be {arr.shape[0]} booleans, got shape {valid_lib.shape}")
    knn = int(knn) if int(knn) > 0 else E + 1
    fwd = _direction(arr, cols, tgts[0], E, tau, Tp, valid_lib)
    rev = _direction(arr, tgts, cols[0], E, tau, Tp, valid_lib)
    M = min(len(fwd[0]), len(rev[0]))
    for what, d in (("columns", fwd), ("target", rev)):
        if len(d[0]) < knn + 1:
            raise DataError(None, "E", f"{len(d[0])} rows have an embedding of the {what} and a target; "
                                       f"CCM needs at least knn + 1 = {knn + 1} (lower E or Tp)")
    sizes = _lib_sizes(lib_sizes, M, E)
    entropy = np.random.SeedSequence(seed).entropy
    rhos = np.stack([_cross_map(*d, sizes, int(sample), knn, excl, entropy, random) for d in (fwd, rev)])
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(rhos, axis=2)
            var = np.nanvar(rhos, axis=2)
    label = names if names is not None else nm
    return CCMResult(lib_sizes=np.asarray(sizes), rho_x_to_y=mean[0], rho_y_to_x=mean[1], var_x_to_y=var[0],
                     var_y_to_x=var[1], samples=rhos, columns=[label[c] for c in cols],
                     target=[label[c] for c in tgts], E=E, Tp=Tp, tau=tau, knn=knn, exclusion_radius=excl,
                     n_valid=(len(fwd[0]), len(rev[0])))


def convergence(result: CCMResult) -> dict:
    """The convergence test for each direction: rho at the smallest and the largest library, the OLS
    slope of mean rho on library size (per 1000 rows), Kendall's tau of mean rho against size, and a
    one-sided Mann-Whitney p that the largest library's samples beat the smallest's (the samples of
    one size are independent draws given the data; rho at different sizes share the data, so the test
    asks about the libraries, not about new data)."""
    from scipy import stats

    L = np.asarray(result.lib_sizes, float)
    out = {}
    for i, key in enumerate(("x_to_y", "y_to_x")):
        mean = result.rho_x_to_y if i == 0 else result.rho_y_to_x
        ok = np.isfinite(mean)
        slope = float(np.polyfit(L[ok], mean[ok], 1)[0] * 1000) if ok.sum() >= 2 else float("nan")
        tau_k, p_k = stats.kendalltau(L[ok], mean[ok]) if ok.sum() >= 3 else (float("nan"), float("nan"))
        lo, hi = result.samples[i, 0], result.samples[i, -1]
        lo, hi = lo[np.isfinite(lo)], hi[np.isfinite(hi)]
        p_mw = float(stats.mannwhitneyu(hi, lo, alternative="greater").pvalue) \
            if len(L) > 1 and lo.size and hi.size else float("nan")
        out[key] = {"rho_min_lib": float(mean[0]), "rho_max_lib": float(mean[-1]),
                    "delta_rho": float(mean[-1] - mean[0]), "slope_per_1000": slope,
                    "kendall_tau": float(tau_k), "kendall_p": float(p_k), "mann_whitney_p": p_mw}
    return out


def cross_map_full(data, columns, targets, E: int = 3, tau: int = -1, exclusion_radius: int = 0, knn: int = 0,
                   valid_lib=None, names: Sequence[str] | None = None) -> np.ndarray:
    """rho of the forward cross map at the full library (every valid row, which is pyEDM's one library of
    size M) for each series in ``targets`` (n, N): the embedding of ``columns`` and its neighbours are
    found once, so a null distribution of surrogate targets costs one weighted sum per surrogate.  The
    first row of ``targets`` given the data's own target reproduces ``ccm(...)`` at L = M."""
    arr, cols, _ = prepare(data, columns, columns, names)
    Y = np.atleast_2d(np.asarray(targets, np.float64))
    if Y.shape[1] != arr.shape[0]:
        raise DataError(None, "targets", f"{Y.shape[1]} rows for data of {arr.shape[0]}")
    if not np.isfinite(Y).all():
        raise DataError(None, "targets", "a target is NaN or infinite")
    E, tau, excl = check_args(E, tau, exclusion_radius)
    knn = int(knn) if int(knn) > 0 else E + 1
    X, _, t = _direction(arr, cols, cols[0], E, tau, 0, None if valid_lib is None else np.asarray(valid_lib, bool))
    M = len(t)
    if M < knn + 2:
        raise DataError(None, "E", f"{M} rows have an embedding; the cross map needs at least {knn + 2}")
    k = min(knn, M - 1)
    nn, dd, short = (a[None] for a in pyedm_neighbours(X, t, np.arange(M), np.arange(M), k, excl))
    w = _weights(dd[0])                                    # (M, k)
    yv = Y[:, t]                                           # (n, M) each target at the valid rows (Tp 0)
    pred = np.einsum("mk,nmk->nm", w, yv[:, nn[0]])
    pred = np.where(short[0][None, :], np.nan, pred)
    return np.array([_pearson(p[None], o)[0] for p, o in zip(pred, yv)])
