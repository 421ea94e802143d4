"""The JAX kernel: weights, projections and statistics for every (embedding, Tp, target), one jit."""
from __future__ import annotations

from functools import cache, partial


def stats(obs, proj, valid):
    """rho, MAE, RMSE, max error and n over the finite (obs, proj) pairs of valid rows, as pyEDM's
    ComputeError (NaN below 5 pairs); traceable JAX."""
    import jax.numpy as jnp

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


@cache
def kernel():
    """Build the jit-compiled projection: ``lax.map`` over (tau, E) embeddings, ``vmap`` over Tp
    (each with its chosen neighbours) and over target series / surrogates (projection and
    statistics)."""
    import jax
    import jax.numpy as jnp
    from jax import lax

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

    return run


def _stats_np(obs, proj, valid):
    """``stats`` in numpy over the last axis (the same arithmetic)."""
    import numpy as np

    with np.errstate(all="ignore"):
        valid = valid & np.isfinite(proj) & np.isfinite(obs)
        n = valid.sum(axis=-1)
        nf = np.maximum(n, 1).astype(obs.dtype)
        o = np.where(valid, obs, 0.0)
        p = np.where(valid, proj, 0.0)
        do = np.where(valid, o - (o.sum(axis=-1) / nf)[..., None], 0.0)
        dp = np.where(valid, p - (p.sum(axis=-1) / nf)[..., None], 0.0)
        rho = (do * dp).sum(axis=-1) / np.sqrt((do * do).sum(axis=-1) * (dp * dp).sum(axis=-1))
        err = o - p
        mae = np.abs(err).sum(axis=-1) / nf
        rmse = np.sqrt((err * err).sum(axis=-1) / nf)
        mxe = np.where(valid, err, -np.inf).max(axis=-1)
    few = n < 5
    return (np.where(few, np.nan, rho), np.where(few, np.nan, mae), np.where(few, np.nan, rmse),
            np.where(few, np.nan, mxe), n)


def run_numpy(idx, d, chosen, obs_row, pred_valid, Tps, Y, *, want_proj):
    """``kernel()``'s projection and statistics in numpy, for problems too small to be worth importing JAX
    and compiling (a one-off prediction from the command line): the same formulas, the same outputs
    (G, nTp, nY[, P]); results agree with the compiled kernel to rounding."""
    import numpy as np

    Y = np.asarray(Y, np.float64)
    N = Y.shape[1]
    outs = []
    with np.errstate(all="ignore"):
        for g in range(idx.shape[0]):
            per_tp = []
            for t, tp in enumerate(np.asarray(Tps)):
                ch, dg, ig = chosen[g, t], d[g], idx[g]
                dd = np.where(ch, dg, np.inf)
                mind = dd.min(axis=1)
                mind = np.maximum(np.where(np.isfinite(mind), mind, 1.0), 1e-6)
                w = np.where(ch, np.exp(-dd / mind[:, None]), 0.0)
                ws = w.sum(axis=1)
                ws_safe = np.where(ws > 0, ws, 1.0)
                tidx = ig + tp
                tidx = np.clip(np.where(tidx < 0, tidx + N, tidx), 0, N - 1)
                orw = obs_row[g, t]
                yv = np.where(ch[None], Y[:, tidx], 0.0)                         # (nY, P, k)
                proj = (w[None] * yv).sum(axis=2) / ws_safe
                proj = np.where(ws <= 0, np.nan, proj)
                obs = np.where(orw >= 0, Y[:, np.clip(orw, 0, N - 1)], np.nan)
                st = _stats_np(obs, proj, pred_valid[g][None])
                if want_proj:
                    var = (w[None] * (yv - proj[..., None]) ** 2).sum(axis=2) / ws_safe
                    st = st + (proj, np.where(ws <= 0, np.nan, var))
                per_tp.append(st)
            outs.append([np.stack(x) for x in zip(*per_tp)])             # each (nTp, nY[, P])
    return tuple(np.stack(x) for x in zip(*outs))                        # each (G, nTp, nY[, P])
