"""STAC solved the conventional way: a reference for `mimic_core.stac.solver`.

The same algorithm and settings as the JAX solver (`StacConfig`): frame 0 from the best of the
`n_init`^nq grid of starts, IK along the clip with each frame warm-started from the previous
frame's solution, then `n_iters` times the closed-form offset fit followed by IK of every frame
from its previous solution; NaN keypoints masked; joint limits as box bounds; lengths in mm.

Differences are only in how each frame's IK is solved: `scipy.optimize.least_squares`
(method "trf", box bounds, float64) with forward kinematics by MuJoCo C (`mj_kinematics`,
body xpos/xmat + xmat @ offset) and, by default, the analytic Jacobian of each keypoint from
`mujoco.mj_jac` (`jac="2-point"` selects scipy's finite differences instead), in a plain
Python loop over frames. Slow by design: it is the baseline the JAX solver is timed against.
Stopping: scipy's own tests at ftol = xtol = gtol = 1e-12 (float64) and max_nfev = lm_max_iters;
the JAX solver's lm_tol / lm_ftol / lm_damping have no counterpart here.
"""
from __future__ import annotations

import mujoco
import numpy as np
from scipy.optimize import least_squares

from mimic_core.model import ForelimbModel
from mimic_core.stac.solver import MM, StacConfig

TOL = 1e-12  # ftol, xtol, gtol of least_squares (float64)


class _Frame:
    """MuJoCo C kinematics of one model: keypoint sites (mm), their Jacobians and body poses."""

    def __init__(self, fm: ForelimbModel):
        self.m = fm.model
        self.d = mujoco.MjData(self.m)
        self.bodies = np.asarray(fm.keypoint_body_ids, dtype=int)
        self.jacp = np.zeros((3, self.m.nv))

    def poses(self, q: np.ndarray):
        """Body positions (K, 3) mm and rotations (K, 3, 3) of the keypoints' bodies at q."""
        self.d.qpos[:] = q
        mujoco.mj_kinematics(self.m, self.d)
        return self.d.xpos[self.bodies] * MM, self.d.xmat[self.bodies].reshape(-1, 3, 3)

    def sites(self, q: np.ndarray, offsets_mm: np.ndarray) -> np.ndarray:
        """Keypoint sites (K, 3) mm: body position + rotation @ offset."""
        pos, rot = self.poses(q)
        return pos + np.einsum("kij,kj->ki", rot, offsets_mm)

    def site_jac(self, q: np.ndarray, offsets_mm: np.ndarray) -> np.ndarray:
        """d sites / d q, (K, 3, nq) in mm/rad, from mujoco.mj_jac at each site."""
        s = self.sites(q, offsets_mm)
        mujoco.mj_comPos(self.m, self.d)  # mj_jac reads cdof and subtree_com
        out = np.empty((len(self.bodies), 3, self.m.nv))
        for k, b in enumerate(self.bodies):
            mujoco.mj_jac(self.m, self.d, self.jacp, None, s[k] / MM, int(b))
            out[k] = self.jacp * MM
        return out


def joint_bounds(model: mujoco.MjModel) -> tuple[np.ndarray, np.ndarray]:
    """Joint limits (rad) as in `make_kinematics`: unlimited joints get [-pi, pi]."""
    lo, hi = model.jnt_range[:, 0].astype(float), model.jnt_range[:, 1].astype(float)
    unlimited = ~model.jnt_limited.astype(bool)
    lo[unlimited], hi[unlimited] = -np.pi, np.pi
    return lo, hi


def initial_guesses(lo: np.ndarray, hi: np.ndarray, n: int) -> np.ndarray:
    """The grid of starts of `solver.initial_guesses`: n per joint at (i + 0.5) / n of the range."""
    fr = (np.arange(n) + 0.5) / n
    axes = [lo[j] + (hi[j] - lo[j]) * fr for j in range(lo.shape[0])]
    return np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], axis=-1)


def ik_frame_scipy(kf: _Frame, q0, y_mm, mask, offsets_mm, lo, hi, cfg: StacConfig, jac: str = "analytic",
                   stats: dict | None = None) -> np.ndarray:
    """One frame's IK: least_squares(trf) within [lo, hi] fitting y (K, 3) mm; masked keypoints drop out."""
    w = mask.astype(float)[:, None]
    y = np.where(mask[:, None], y_mm, 0.0)

    def res(q):
        return ((kf.sites(q, offsets_mm) - y) * w).ravel()

    def jacobian(q):
        return (kf.site_jac(q, offsets_mm) * w[:, :, None]).reshape(-1, q.shape[0])

    x0 = np.clip(q0, lo, hi)
    sol = least_squares(res, x0, jac=jacobian if jac == "analytic" else jac, bounds=(lo, hi), method="trf",
                        x_scale="jac", ftol=TOL, xtol=TOL, gtol=TOL, max_nfev=cfg.lm_max_iters)
    if stats is not None:
        stats["solves"] = stats.get("solves", 0) + 1
        stats["nfev"] = stats.get("nfev", 0) + int(sol.nfev)
        stats["max_nfev_hit"] = stats.get("max_nfev_hit", 0) + int(sol.status == 0)
    return sol.x, float(2.0 * sol.cost)


def fit_offsets_np(kf: _Frame, qs, y_mm, mask, offsets0_mm, cfg: StacConfig) -> np.ndarray:
    """Closed-form offsets (K, 3) mm: argmin sum_t |p_t + R_t o - y_t|^2 + reg |o - o0|^2, per keypoint."""
    w = mask.astype(float)
    num = cfg.offset_reg * np.asarray(offsets0_mm, float)
    for t, q in enumerate(qs):
        pos, rot = kf.poses(q)
        local = np.einsum("kji,kj->ki", rot, np.where(mask[t][:, None], y_mm[t], 0.0) - pos)  # R^T (y - p)
        num = num + w[t][:, None] * local
    return num / (w.sum(axis=0)[:, None] + cfg.offset_reg)


def register_clip_scipy(fm: ForelimbModel, y_m: np.ndarray, offsets0_m: np.ndarray, cfg: StacConfig,
                        jac: str = "analytic", stats: dict | None = None):
    """Register one clip (T, K, 3) m, NaN where missing: returns qpos (T, nq) rad and offsets (K, 3) m.

    `jac`: "analytic" (mujoco.mj_jac) or a scipy finite-difference scheme ("2-point", "3-point").
    `stats`, if given, collects solves, function evaluations and solves stopped by max_nfev.
    """
    y_m = np.asarray(y_m, float)
    mask = np.all(np.isfinite(y_m), axis=-1)
    y = np.where(mask[..., None], y_m, 0.0) * MM
    off0 = np.asarray(offsets0_m, float) * MM
    kf = _Frame(fm)
    lo, hi = joint_bounds(fm.model)

    def ik(q0, t, offsets):
        return ik_frame_scipy(kf, q0, y[t], mask[t], offsets, lo, hi, cfg, jac, stats)

    # First pass: frame 0 from the best start of the grid, then along the clip from the neighbour.
    offsets = off0
    starts = [ik(q0, 0, offsets) for q0 in initial_guesses(lo, hi, cfg.n_init)]
    q = starts[int(np.argmin([c for _, c in starts]))][0]
    qs = np.empty((y.shape[0], lo.shape[0]))
    for t in range(y.shape[0]):
        q = ik(q, t, offsets)[0]
        qs[t] = q
    # Alternate: offsets in closed form, then every frame from its previous solution.
    for _ in range(cfg.n_iters):
        offsets = fit_offsets_np(kf, qs, y, mask, off0, cfg)
        qs = np.stack([ik(qs[t], t, offsets)[0] for t in range(y.shape[0])])
    return qs, offsets / MM
