"""Neighbours: scipy's cKDTree (what pyEDM uses), queried once per embedding for every Tp, exact with ties."""
from __future__ import annotations

import numpy as np


def _query(tree, Q, k, workers=-1):
    d, i = tree.query(Q, k=k, workers=workers)
    return d.reshape(len(Q), k), i.reshape(len(Q), k)


def candidates(Xe, lib_tp, pred_rows, pred_ok, knn: int, excl: int, workers: int = -1):
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


def distances(Q, X):
    """Euclidean distances (len(Q), len(X)) with cKDTree's own arithmetic (squared differences summed in four
    running sums over blocks of four coordinates, then the rest one by one, then the root), so that they
    equal the tree's bit for bit and ties fall the same way (tests/test_edm.py checks it)."""
    E = Q.shape[1]
    nb = E // 4 * 4
    acc = [np.zeros((len(Q), len(X))) for _ in range(4)]
    for i in range(0, nb, 4):
        for j in range(4):
            diff = Q[:, None, i + j] - X[None, :, i + j]
            acc[j] = acc[j] + diff * diff
    s = ((acc[0] + acc[1]) + acc[2]) + acc[3]
    for i in range(nb, E):
        diff = Q[:, None, i] - X[None, :, i]
        s = s + diff * diff
    return np.sqrt(s)


def candidates_brute(Xe, lib_tp, pred_rows, pred_ok, knn: int, excl: int):
    """``candidates`` by brute force, for small problems (no tree, no scipy import): every library row is a
    candidate, ordered as pyEDM orders them (distance, |pred_row - lib_row|, lib_row), cut after the last
    chosen one. The same (idx, d, chosen) neighbours as ``candidates``."""
    lib = np.flatnonzero(lib_tp.any(axis=0))
    P = len(pred_rows)
    if lib.size == 0 or P == 0:
        return np.zeros((P, 1), np.int64), np.full((P, 1), np.inf), np.zeros((len(lib_tp), P, 1), bool)
    D = distances(Xe[pred_rows], Xe[lib])
    gap = np.abs(pred_rows[:, None] - lib[None, :])
    order = np.lexsort((np.broadcast_to(lib, D.shape), gap, D), axis=-1)
    idx = lib[order]
    d = np.take_along_axis(D, order, axis=1)
    adm = (np.take_along_axis(gap, order, axis=1) > excl) & pred_ok[:, None]
    adm = adm[None] & lib_tp[:, idx]
    chosen = adm & (np.cumsum(adm, axis=-1, dtype=np.int32) <= knn)
    k = max(1, int(np.flatnonzero(chosen.any(axis=(0, 1))).max(initial=-1)) + 1)
    d = np.where(pred_ok[:, None], d, np.inf)
    return idx[:, :k], d[:, :k], chosen[..., :k]
