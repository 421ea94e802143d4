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
