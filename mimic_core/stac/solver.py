"""STAC in JAX: alternate per-frame inverse kinematics and a fit of the keypoint offsets.

(a) IK: for each frame, the joint angles that bring the model's keypoint sites (body pose +
    offset) onto the measured keypoints: projected Levenberg-Marquardt with `jax.jacfwd`
    through the hinge-chain kinematics (`Kinematics`), inside the joint limits, NaN keypoints
    masked. The first pass runs along the clip with `lax.scan`, each frame starting from its
    neighbour's solution; later passes refine every frame at once (vmap) from their own
    previous solution.
(b) Offsets: with the joint angles fixed, each site is linear in its offset, so the fit over
    all frames with a penalty toward the initial offsets is a closed-form least squares.

Everything is a pure function of arrays; `make_register` vmaps over clips. Lengths are in
millimetres inside the solver so that float32 keeps sub-micrometre precision.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from mimic_core.config import StacConfig  # noqa: F401  (the solver settings; re-exported)
from mimic_core.errors import ModelError

MM = 1e3  # metres -> millimetres


class Kinematics(NamedTuple):
    """A hinge-joint kinematic tree as constant arrays: what the solver differentiates through.

    MJX's `kinematics` handles every joint type and compiles slowly when nested in the solver's
    loops; registration needs only the hinge chain, so this evaluates the same transforms
    (MuJoCo's convention: body offset, then each joint's rotation about its anchor) and
    `test_stac.py` checks it against `mujoco.mj_kinematics` to float rounding.
    """

    parent: tuple               # (nbody,) parent id of each body (static)
    body_joints: tuple          # per body: tuple of (joint id, qpos address) (static)
    body_pos: np.ndarray        # (nbody, 3) m
    body_rot: np.ndarray        # (nbody, 3, 3)
    jnt_axis: np.ndarray        # (njnt, 3)
    jnt_pos: np.ndarray         # (njnt, 3) m
    qpos0: np.ndarray           # (nq,)
    body_ids: tuple             # (K,) body of each keypoint (static)
    lo: np.ndarray              # (nq,) joint lower limits (rad)
    hi: np.ndarray              # (nq,) joint upper limits (rad)


def make_kinematics(model: mujoco.MjModel, body_ids) -> Kinematics:
    """Read a model's tree; every joint must be a hinge (the forelimb's 4 DOF are)."""
    types = set(int(t) for t in model.jnt_type)
    if types - {int(mujoco.mjtJoint.mjJNT_HINGE)}:
        raise ModelError("STAC supports hinge joints only; this model has other joint types")
    rot = np.zeros((model.nbody, 3, 3))
    for b in range(model.nbody):
        mujoco.mju_quat2Mat(rot[b].reshape(9), model.body_quat[b])
    joints = tuple(
        tuple((j, int(model.jnt_qposadr[j])) for j in range(model.body_jntadr[b], model.body_jntadr[b] + model.body_jntnum[b]))
        if model.body_jntnum[b] > 0 else ()
        for b in range(model.nbody)
    )
    lo, hi = model.jnt_range[:, 0].copy(), model.jnt_range[:, 1].copy()
    unlimited = ~model.jnt_limited.astype(bool)
    lo[unlimited], hi[unlimited] = -np.pi, np.pi
    return Kinematics(tuple(int(p) for p in model.body_parentid), joints, model.body_pos * MM, rot,
                      model.jnt_axis.copy(), model.jnt_pos * MM, model.qpos0.copy(),
                      tuple(int(b) for b in body_ids), lo.astype(np.float32), hi.astype(np.float32))


def _axis_angle(axis: np.ndarray, angle: jnp.ndarray) -> jnp.ndarray:
    """Rotation matrix about a unit axis (Rodrigues)."""
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + jnp.sin(angle) * K + (1 - jnp.cos(angle)) * (K @ K)


def body_poses(kin: Kinematics, q: jnp.ndarray):
    """World position (K, 3) in mm and rotation (K, 3, 3) of each keypoint's body at joint angles q."""
    pos = [jnp.zeros(3)]
    rot = [jnp.eye(3)]
    for b in range(1, len(kin.parent)):
        pa = kin.parent[b]
        R = rot[pa] @ kin.body_rot[b]
        p = pos[pa] + rot[pa] @ kin.body_pos[b]
        for j, adr in kin.body_joints[b]:
            anchor = p + R @ kin.jnt_pos[j]
            R = R @ _axis_angle(kin.jnt_axis[j], q[adr] - kin.qpos0[adr])
            p = anchor - R @ kin.jnt_pos[j]
        pos.append(p)
        rot.append(R)
    ids = list(kin.body_ids)
    return jnp.stack([pos[i] for i in ids]), jnp.stack([rot[i] for i in ids])


def sites(kin: Kinematics, q: jnp.ndarray, offsets_mm: jnp.ndarray) -> jnp.ndarray:
    """Model keypoint sites (K, 3) in mm."""
    pos, rot = body_poses(kin, q)
    return pos + jnp.einsum("kij,kj->ki", rot, offsets_mm)


def _residual(kin, q, y, mask, offsets_mm):
    r = (sites(kin, q, offsets_mm) - jnp.where(mask[:, None], y, 0.0)) * mask[:, None]
    return r.ravel()


def ik_frame(kin: Kinematics, q0: jnp.ndarray, y: jnp.ndarray, mask: jnp.ndarray, offsets_mm: jnp.ndarray,
             cfg: StacConfig) -> jnp.ndarray:
    """Projected Levenberg-Marquardt for one frame: joint angles within limits that fit y (K, 3) mm."""
    res = lambda q: _residual(kin, q, y, mask, offsets_mm)  # noqa: E731
    jac = jax.jacfwd(res)
    nq = q0.shape[0]

    def cond(s):
        q, cost, mu, it, step = s
        return (it < cfg.lm_max_iters) & (step > cfg.lm_tol)

    def body(s):
        q, cost, mu, it, _ = s
        r, J = res(q), jac(q)
        JtJ = J.T @ J
        g = J.T @ r
        # Active set: a joint at a limit whose descent direction points outward stays there,
        # and the step is solved for the other joints (plain clipping would stop short).
        blocked = ((q <= kin.lo) & (g > 0)) | ((q >= kin.hi) & (g < 0))
        free = ~blocked
        A = JtJ + mu * (jnp.diag(jnp.diag(JtJ)) + 1e-9 * jnp.eye(nq))
        A = jnp.where(free[:, None] & free[None, :], A, jnp.diag(jnp.where(free, 0.0, 1.0)))
        q_new = jnp.clip(q - jnp.linalg.solve(A, jnp.where(free, g, 0.0)), kin.lo, kin.hi)
        r_new = res(q_new)
        cost_new = r_new @ r_new
        better = cost_new < cost
        # Converged: an accepted step that barely lowers the cost (a flat or rank-deficient
        # frame, e.g. with missing keypoints), or rejected steps at an enormous damping.
        stalled = better & (cost - cost_new <= cfg.lm_ftol * cost)
        step = jnp.where(stalled | (~better & (mu >= 1e8)), 0.0, jnp.max(jnp.abs(q_new - q)))
        return (jnp.where(better, q_new, q), jnp.where(better, cost_new, cost),
                jnp.where(better, mu * 0.3, mu * 10.0), it + 1, step)

    r0 = res(q0)
    init = (q0, r0 @ r0, jnp.asarray(cfg.lm_damping, q0.dtype), 0, jnp.asarray(jnp.inf, q0.dtype))
    return jax.lax.while_loop(cond, body, init)[0]


def initial_guesses(kin: Kinematics, n: int) -> jnp.ndarray:
    """A grid of starts over the joint range (n per joint, inside the limits)."""
    fr = (jnp.arange(n) + 0.5) / n
    axes = [kin.lo[j] + (kin.hi[j] - kin.lo[j]) * fr for j in range(kin.lo.shape[0])]
    return jnp.stack([g.ravel() for g in jnp.meshgrid(*axes, indexing="ij")], axis=-1)


def ik_clip_sequential(kin, y, mask, offsets_mm, cfg: StacConfig):
    """IK along a clip (frames, K, 3): the first frame from the best of a grid of starts, then each
    frame from its neighbour's solution (lax.scan)."""
    first = jax.vmap(lambda q0: ik_frame(kin, q0, y[0], mask[0], offsets_mm, cfg))(initial_guesses(kin, cfg.n_init))
    costs = jax.vmap(lambda q: jnp.sum(_residual(kin, q, y[0], mask[0], offsets_mm) ** 2))(first)
    q_first = first[jnp.argmin(costs)]

    def step(q_prev, inputs):
        yt, mt = inputs
        q = ik_frame(kin, q_prev, yt, mt, offsets_mm, cfg)
        return q, q

    _, qs = jax.lax.scan(step, q_first, (y, mask))
    return qs


def ik_clip_refine(kin, qs, y, mask, offsets_mm, cfg: StacConfig):
    """IK of every frame at once, each starting from its previous solution."""
    return jax.vmap(lambda q, yt, mt: ik_frame(kin, q, yt, mt, offsets_mm, cfg))(qs, y, mask)


def fit_offsets(kin, qs, y, mask, offsets0_mm, cfg: StacConfig):
    """Closed-form offsets (K, 3) mm: argmin sum_t |p_t + R_t o - y_t|^2 + reg |o - o0|^2, per keypoint."""
    pos, rot = jax.vmap(lambda q: body_poses(kin, q))(qs)               # (T, K, 3), (T, K, 3, 3)
    w = mask.astype(y.dtype)                                            # (T, K)
    local = jnp.einsum("tkji,tkj->tki", rot, jnp.where(mask[..., None], y, 0.0) - pos)  # R^T (y - p)
    num = jnp.sum(w[..., None] * local, axis=0) + cfg.offset_reg * offsets0_mm
    return num / (jnp.sum(w, axis=0)[:, None] + cfg.offset_reg)


def stac_clip(kin: Kinematics, y_mm: jnp.ndarray, mask: jnp.ndarray, offsets0_mm: jnp.ndarray, cfg: StacConfig):
    """Register one clip: returns joint angles (T, nq) and offsets (K, 3) mm."""
    qs = ik_clip_sequential(kin, y_mm, mask, offsets0_mm, cfg)

    def alternate(_, carry):
        qs, _ = carry
        offsets = fit_offsets(kin, qs, y_mm, mask, offsets0_mm, cfg)
        return ik_clip_refine(kin, qs, y_mm, mask, offsets, cfg), offsets

    # One traced copy of the loop body, however many alternations: keeps compile time flat.
    return jax.lax.fori_loop(0, cfg.n_iters, alternate, (qs, offsets0_mm))


def make_register(kin: Kinematics, cfg: StacConfig):
    """A jitted function registering a batch of clips: (clips, T, K, 3) m -> qpos, offsets (m)."""

    @jax.jit
    def register(y_m, mask, offsets0_m):
        y = jnp.asarray(y_m, jnp.float32) * MM
        off0 = jnp.broadcast_to(jnp.asarray(offsets0_m, jnp.float32) * MM, (y.shape[0],) + y.shape[2:])
        qs, off = jax.vmap(lambda yc, mc, oc: stac_clip(kin, yc, mc, oc, cfg))(y, mask, off0)
        return qs, off / MM

    return register
