"""STAC with a temporal prior: each clip's joint trajectory estimated over all its frames at once.

The per-frame solve (`solver.py`) fits every frame alone and so cannot beat the per-frame
Cramér-Rao bound; its finite-difference velocities are mostly noise. Here the joint angles get a
Gaussian process prior: white noise on their `order`-th derivative (order 3: white jerk, the
prior of minimum-jerk reaching; order 2: white acceleration, a cubic smoothing spline), i.e. the
state x_t = [q, q', ..., q^(order-1)] follows the integrated Wiener process
x_{t+1} = F x_t + w_t, w_t ~ N(0, qc Q(dt)). The keypoints are y_t = sites(q_t, offsets) + e_t,
e_t ~ N(0, sigma^2 I), missing keypoints masked (a missing frame is bridged by the prior).

The clip's keypoint offsets ride in the state as constants with the per-frame fit's prior (toward
the initial offsets), so trajectory and offsets are estimated jointly: alternating the two, as the
per-frame STAC does, converges slowly because they are confounded. The MAP estimate is found by
Gauss-Newton on the whole clip, which is the iterated extended Kalman smoother: linearise the
sites about the current trajectory, run a Kalman filter forward and a Rauch-Tung-Striebel pass back
(`lax.scan` both ways: the banded structure, never a dense solve over frames), repeat. Steps are
damped (Levenberg-Marquardt: a pseudo-observation of the current angles) and kept only when they
lower the MAP objective, so a jumpy start (per-frame angles on real clips) cannot throw the solve
into another basin; joint limits are kept by projecting each iterate onto them.

The prior's weight is chosen from the data alone: the ratio lambda = qc / sigma^2 maximises the
marginal likelihood of the keypoints (the Kalman filter's innovations, empirical Bayes), with
sigma^2 profiled out in closed form (every covariance scales with it), pooled over the data set:
one sigma and one lambda per data set, searched on a coarse log grid and then finely around its best
(params). The truth is never read. Velocities are the smoothed state's q'.

Everything runs in float64 (the diffuse start and the filter's covariances need it).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mimic_core.stac.solver import Kinematics, sites

# The start of every clip is diffuse: prior sd of the k-th derivative DIFFUSE_RAD / dt^k (in units of
# sigma = 1 mm, the scale the likelihood is profiled in), wide against any mouse joint motion.
DIFFUSE_RAD = 1e3


class Prior(NamedTuple):
    """The integrated-Wiener-process prior of a clip, with unit spectral density."""

    F: np.ndarray      # (n, n) transition, n = order * nq, state ordered derivative-major
    Q: np.ndarray      # (n, n) process covariance per unit qc
    P0: np.ndarray     # (n, n) diffuse start covariance (sigma = 1 units)
    nq: int
    order: int
    dt: float          # s between frames


def wiener_prior(order: int, dt: float, nq: int) -> Prior:
    """F and Q of `order`-times integrated white noise (per unit spectral density), nq joints."""
    k = order
    F1 = np.array([[dt ** (j - i) / math.factorial(j - i) if j >= i else 0.0 for j in range(k)] for i in range(k)])
    Q1 = np.array([[dt ** (2 * k - 1 - i - j) / ((2 * k - 1 - i - j) * math.factorial(k - 1 - i) * math.factorial(k - 1 - j))
                    for j in range(k)] for i in range(k)])
    P1 = np.diag([(DIFFUSE_RAD / dt ** i) ** 2 for i in range(k)])
    eye = np.eye(nq)
    return Prior(np.kron(F1, eye), np.kron(Q1, eye), np.kron(P1, eye), nq, k, dt)


class Pass(NamedTuple):
    """One Kalman smoother pass over a clip at one linearisation."""

    x: jnp.ndarray        # (T, order * nq) smoothed state [q, q', ...] (rad, rad/s, ...)
    offsets: jnp.ndarray  # (K, 3) mm, estimated with the trajectory
    quad: jnp.ndarray     # sum of v' S^-1 v over the clip (sigma = 1 units)
    logdet: jnp.ndarray   # sum of log |S|
    n_obs: jnp.ndarray    # observed scalars


def smoother_pass(kin: Kinematics, prior: Prior, qbar, obar, y_mm, mask, offsets0_mm, ratio, offset_var,
                  damping=0.0) -> Pass:
    """Kalman filter + RTS smoother of a clip linearised about the trajectory `qbar` (T, nq) and offsets `obar`
    (K, 3) mm: one Gauss-Newton step of the MAP problem. The state carries the offsets as constants (no process
    noise) with the prior N(offsets0, offset_var sigma^2), so trajectory and offsets move together; `ratio` =
    qc / sigma^2. `damping` (Levenberg-Marquardt) adds the pseudo-observation q_t = qbar_t of precision
    `damping` / sigma^2 to every frame, shortening the step; at 0 it changes nothing."""
    T, nq = qbar.shape
    nx = prior.order * nq
    no = obar.size
    n = nx + no
    dt = qbar.dtype
    rows = jnp.repeat(mask, 3, axis=-1).astype(dt)                                     # (T, 3K)
    fn = lambda q, o: sites(kin, q, o.reshape(-1, 3)).ravel()                          # noqa: E731
    h = jax.vmap(fn, in_axes=(0, None))(qbar, obar.ravel())                           # (T, 3K)
    Hq, Ho = jax.vmap(jax.jacfwd(fn, argnums=(0, 1)), in_axes=(0, None))(qbar, obar.ravel())
    Hq, Ho = Hq * rows[..., None], Ho * rows[..., None]
    z = (jnp.where(rows > 0, y_mm.reshape(T, -1), 0.0) - h * rows + jnp.einsum("tmj,tj->tm", Hq, qbar)
         + jnp.einsum("tmj,j->tm", Ho, obar.ravel()))
    Hx = jnp.concatenate([Hq, jnp.zeros((T, Hq.shape[1], nx - nq), dt), Ho], axis=-1)  # (T, 3K, n)
    root = jnp.sqrt(damping)
    Hd = jnp.broadcast_to(root * jnp.eye(nq, n, dtype=dt), (T, nq, n))               # the damping rows
    Hx, z = jnp.concatenate([Hx, Hd], axis=1), jnp.concatenate([z, root * qbar], axis=1)
    F = jax.scipy.linalg.block_diag(jnp.asarray(prior.F, dt), jnp.eye(no, dtype=dt))
    Qr = jax.scipy.linalg.block_diag(jnp.asarray(prior.Q, dt) * ratio, jnp.zeros((no, no), dt))
    P0 = jax.scipy.linalg.block_diag(jnp.asarray(prior.P0, dt), offset_var * jnp.eye(no, dtype=dt))
    m0 = jnp.concatenate([qbar[0], jnp.zeros(nx - nq, dt), offsets0_mm.ravel()])
    eye_m, eye_n = jnp.eye(Hx.shape[1], dtype=dt), jnp.eye(n, dtype=dt)

    def forward(carry, inp):
        m_pred, P_pred = carry
        zt, Ht = inp
        L = jnp.linalg.cholesky(Ht @ P_pred @ Ht.T + eye_m)
        v = zt - Ht @ m_pred
        K = jax.scipy.linalg.cho_solve((L, True), Ht @ P_pred).T                      # P H' S^-1
        m = m_pred + K @ v
        IKH = eye_n - K @ Ht
        P = IKH @ P_pred @ IKH.T + K @ K.T                                             # Joseph form
        quad = v @ jax.scipy.linalg.cho_solve((L, True), v)
        return (F @ m, F @ P @ F.T + Qr), (m, P, m_pred, P_pred, quad, 2.0 * jnp.sum(jnp.log(jnp.diag(L))))

    _, (m, P, m_pred, P_pred, quad, logdet) = jax.lax.scan(forward, (m0, P0), (z, Hx))

    def backward(ms_next, inp):
        mt, Pt, m_pred_next, P_pred_next = inp
        G = jnp.linalg.solve(P_pred_next, F @ Pt).T                                     # P F' (P_pred)^-1
        ms = mt + G @ (ms_next - m_pred_next)
        return ms, ms

    _, ms = jax.lax.scan(backward, m[-1], (m[:-1], P[:-1], m_pred[1:], P_pred[1:]), reverse=True)
    ms = jnp.concatenate([ms, m[-1:]], axis=0)
    return Pass(ms[:, :nx], ms[0, nx:].reshape(obar.shape), jnp.sum(quad), jnp.sum(logdet), jnp.sum(rows))


def map_cost(kin: Kinematics, prior: Prior, Q_inv, x, off, y_mm, mask, offsets0_mm, ratio, offset_var):
    """The MAP objective (sigma = 1 units): keypoint residuals, the prior on the state's increments, the offsets'
    prior (the diffuse start is left out: it is flat)."""
    nq = prior.nq
    r = (jax.vmap(lambda q: sites(kin, q, off))(x[:, :nq]) - jnp.where(mask[..., None], y_mm, 0.0)) * mask[..., None]
    d = x[1:] - x[:-1] @ jnp.asarray(prior.F, x.dtype).T
    return jnp.sum(r ** 2) + jnp.sum((d @ Q_inv) * d) / ratio + jnp.sum((off - offsets0_mm) ** 2) / offset_var


def smooth_clip(kin: Kinematics, prior: Prior, q_init, off_init, y_mm, mask, offsets0_mm, ratio, offset_var,
                iters: int) -> Pass:
    """The clip's MAP trajectory and offsets by damped Gauss-Newton (Levenberg-Marquardt over smoother passes):
    a step is kept only if it lowers the MAP objective (its joint angles projected onto the limits), else the
    damping grows tenfold; a last undamped pass at the solution gives the likelihood terms."""
    Q_inv = jnp.asarray(np.linalg.inv(prior.Q), q_init.dtype)
    nq, dt = prior.nq, q_init.dtype

    def project(x):
        return x.at[:, :nq].set(jnp.clip(x[:, :nq], kin.lo, kin.hi))

    def cost(x, off):
        return map_cost(kin, prior, Q_inv, x, off, y_mm, mask, offsets0_mm, ratio, offset_var)

    # the start: the per-frame angles with their finite-difference velocity, higher derivatives zero
    x0 = jnp.zeros((q_init.shape[0], prior.order * nq), dt).at[:, :nq].set(q_init)
    x0 = x0.at[:, nq:2 * nq].set(jnp.gradient(q_init, axis=0) * (1.0 / prior.dt))

    def step(_, carry):
        x, off, c, mu = carry
        p = smoother_pass(kin, prior, x[:, :nq], off, y_mm, mask, offsets0_mm, ratio, offset_var, mu)
        xn = project(p.x)
        cn = cost(xn, p.offsets)
        better = cn < c
        return (jnp.where(better, xn, x), jnp.where(better, p.offsets, off), jnp.where(better, cn, c),
                jnp.where(better, mu * 0.1, jnp.maximum(mu, 1e-6) * 10.0))

    x, off, _, _ = jax.lax.fori_loop(0, iters, step, (x0, off_init, cost(x0, off_init), jnp.asarray(0.0, dt)))
    final = smoother_pass(kin, prior, x[:, :nq], off, y_mm, mask, offsets0_mm, ratio, offset_var)
    return final._replace(x=x, offsets=off)


def profile_loglik(quad, logdet, n_obs):
    """The marginal log-likelihood with sigma^2 profiled out (its ML value quad / n_obs), and sigma^2."""
    sigma2 = jnp.maximum(quad / n_obs, 1e-30)
    return -0.5 * (n_obs * jnp.log(2 * jnp.pi * sigma2) + logdet + n_obs), sigma2


def search_grid(log10_range, coarse_step: float, fine_step: float) -> tuple[np.ndarray, np.ndarray]:
    """The coarse grid of log10 ratios over the range, and the offsets of the fine points placed around the
    best coarse one (every fine_step out to half a coarse step each side)."""
    lo, hi = log10_range
    coarse = np.arange(lo, hi + 1e-9, coarse_step)
    k = int(round(coarse_step / (2 * fine_step)))
    fine = np.array([i * fine_step for i in range(-k, k + 1) if i != 0], float)
    return coarse, fine


def make_temporal(kin: Kinematics, prior: Prior, log10_range, coarse_step: float, fine_step: float, iters: int,
                  offset_reg: float):
    """A jitted function: per-frame solution (clips, T, nq), its offsets (clips, K, 3) mm and the initial offsets
    -> the temporal solution at the data set's most likely prior weight.

    The weight's search: a coarse grid of log10(qc / sigma^2) over `log10_range`, then the points every
    `fine_step` around the best of it; each point is a full solve of every clip (vmapped), scored by the
    pooled profile likelihood. `offset_reg` (frame-equivalents, as in the per-frame offset fit) sets the
    offsets' prior variance, sigma^2 / offset_reg. Returns (q, qd, offsets mm, the log10 ratios tried, their
    log-likelihoods, their sigma (mm)); the solution is that of the first most likely ratio."""
    coarse, fine = search_grid(log10_range, coarse_step, fine_step)
    nq = prior.nq
    offset_var = 1.0 / offset_reg if offset_reg > 0 else DIFFUSE_RAD ** 2

    @jax.jit
    def run(q_pf, offsets_pf, y_mm, mask, offsets0_mm):
        per_clip = jax.vmap(lambda q, o, y, m, o0, r: smooth_clip(kin, prior, q, o, y, m, o0, r, offset_var, iters),
                            in_axes=(0, 0, 0, 0, 0, None))

        def solve(log10s):
            grid = jax.vmap(lambda g: per_clip(q_pf, offsets_pf, y_mm, mask, offsets0_mm, 10.0 ** g))(log10s)
            ll, sigma2 = profile_loglik(grid.quad.sum(1), grid.logdet.sum(1), grid.n_obs.sum(1))
            return grid, jnp.where(jnp.isfinite(ll), ll, -jnp.inf), jnp.sqrt(sigma2)

        g1 = jnp.asarray(coarse, q_pf.dtype)
        grid1, ll1, s1 = solve(g1)
        g2 = g1[jnp.argmax(ll1)] + jnp.asarray(fine, q_pf.dtype)
        grid2, ll2, s2 = solve(g2)
        log10s, ll, sigma = jnp.concatenate([g1, g2]), jnp.concatenate([ll1, ll2]), jnp.concatenate([s1, s2])
        best = jnp.argmax(ll)
        x = jnp.concatenate([grid1.x, grid2.x])[best]
        off = jnp.concatenate([grid1.offsets, grid2.offsets])[best]
        return x[..., :nq], x[..., nq:2 * nq], off, log10s, ll, sigma

    return run


def longest_gaps(valid: np.ndarray) -> list[tuple[int, int]]:
    """Per clip, the longest run of frames with no keypoint at all: (first frame, length); (0, 0) if none."""
    out = []
    for empty in ~valid.any(-1):
        best, start, run = (0, 0), 0, 0
        for t, e in enumerate(empty):
            run = run + 1 if e else 0
            if run == 1:
                start = t
            if run > best[1]:
                best = (start, run)
        out.append(best)
    return out
