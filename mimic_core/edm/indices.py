"""pyEDM 2.5.7's row index rules, ported: library and prediction rows, the output layout, and the plan
of index sets for every (tau, E, Tp) (see `mimic_core.edm.simplex` for the rules in words)."""
from __future__ import annotations

import numpy as np

from mimic_core.errors import DataError


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


def check_pairs(pairs: list[int], n: int, name: str, strict: bool) -> list[tuple[int, int]]:
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


def lib_mask(pairs, E: int, tau: int, Tp: int, n: int) -> np.ndarray:
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


def pred_rows(pairs, E: int, tau: int, n: int):
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


def layout(pred_list, pred_all, tau: int, Tp: int, n: int):
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


def plan(n, lib_pairs, pred_pairs, Es, taus, Tps):
    lib_p = check_pairs(lib_pairs, n, "lib", strict=False)
    pred_p = check_pairs(pred_pairs, n, "pred", strict=True)
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
        pa, plist = pred_rows(pred_p, E, tau, n)
        sel = pos_of[np.concatenate(plist)]
        pred_valid[g, sel] = True
        for t, Tp in enumerate(Tps):
            lib_tp[g, t] = lib_mask(lib_p, E, tau, Tp, n)
            key = (tuple((int(s[0]), len(s)) if len(s) else (0, 0) for s in plist), tau, Tp)
            if key not in seen:       # E often leaves the prediction rows alone: lay them out once
                seen[key] = layout(plist, pa, tau, Tp, n)
            lay = seen[key]
            out_len, obs_rows_out, pred_pos, rows, _ = lay
            obs_row[g, t, sel] = obs_rows_out[pred_pos]
            layouts[(E, tau, Tp)] = (lay, sel)
    return dict(pred_all=pred_all, groups=groups, lib_tp=lib_tp, obs_row=obs_row,
                pred_valid=pred_valid, layouts=layouts)
