"""The forelimb MJCF against the published figures (shared/reference/mouse_forelimb_facts.md).

The figures are copied here (the facts file lives outside the repository, in ../shared, which a
user's clone does not have). Checks:
  * names and order of joints, muscles and keypoint sites;
  * joint ranges and defaults, muscle parameters;
  * the kinematic tree, and (marker `real`) the 30 registered real clips;
  * muscle forces over the whole joint range at full activation;
  * MJX against MuJoCo C on a short rollout;
  * bring-your-own-model errors and a small alternative MJCF.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import mujoco
import numpy as np
import pytest

from mimic_core.errors import ModelError
from mimic_core.model import (
    DEFAULT_KEYPOINT_MAP,
    DEFAULT_MODEL_XML,
    JOINT_NAMES,
    MUSCLE_NAMES,
    actuator_ids,
    keypoint_bodies,
    keypoint_positions,
    load_forelimb,
    load_model,
)

REAL_CLIPS = Path(__file__).resolve().parents[2] / "shared" / "real" / "mouse_arm_clips"

# ---------------------------------------------------------------------------------------------
# Published figures (units: m, kg, degrees, N); every pos is in the parent body's frame.
# ---------------------------------------------------------------------------------------------
BODIES = {  # body: (parent, pos, euler xyz in degrees)
    "ground": ("world", (0, 0, 0), (0, 0, 0)),
    "clavicle": ("ground", (0, 0, 0), (0, 0, 0)),
    "scapula": ("clavicle", (-0.0001, -0.0001, 0.0005), (-30, -15, 0)),
    "humerus": ("scapula", (0, 0.0007, -0.0002), (-15, 0, 0)),
    "ulna": ("humerus", (-0.0005, 0.0003, -0.0068), (-15, 0, 0)),
    "elbow": ("ulna", (0, 0, 0), (0, 0, 0)),
    "radius": ("ulna", (0.00035, 0.0002, 0.0002), (0, 0, 0)),
    "wrist_body": ("radius", (-0.002, 0.0065, 0.0005), (0, 0, 0)),
}
JOINTS = {  # joint: (body, axis, range in degrees)
    "sh_elv": ("humerus", (0, 1, 0), (-70, 0)),
    "sh_extension": ("humerus", (0, 0, 1), (-70, 40)),
    "sh_rotation": ("humerus", (1, 0, 0), (-25, 89)),
    "elbow": ("ulna", (1, 0, 0), (-80, 90)),
}
INERTIA = {  # body: (inertial pos, mass, diag inertia)
    "humerus": ((-0.0005, 0.0003, -0.004), 1.258e-4, (3e-8, 3e-8, 3e-8)),
    "ulna": ((-0.0009, 0.004, 0.0005), 1.258e-4, (3e-8, 3e-8, 3e-8)),
    "wrist_body": ((0, 0, 0), 7.1e-4, (7e-8, 7e-8, 7e-8)),
}
MUSCLES = {  # muscle: (peak force N, operating range in L0, path (body, pos) insertion first)
    "Pec_C": (0.8, (0.5, 1.2), [("humerus", (0, 0.001, -0.0005)), ("humerus", (-0.0005, 0.0009, -0.0003)),
                                ("clavicle", (-0.002, 0, 0.0005))]),
    "Lat": (0.8, (0.75, 1.05), [("humerus", (-0.0004, 0.0008, -0.0006)), ("humerus", (-0.001, 0, -0.0006)),
                                ("scapula", (-0.0005, -0.004, -0.0035))]),
    "PD": (0.87, (0.6, 1.1), [("humerus", (0.0003, 0.001, -0.001)), ("humerus", (0.0003, -0.0003, -0.0006)),
                              ("scapula", (0.0004, -0.0007, 0.0006))]),
    "AD": (1.2, (0.5, 1.0), [("humerus", (0.0003, 0.0012, -0.0021)), ("humerus", (0.0003, 0.0012, -0.0003)),
                             ("clavicle", (0, 0.0013, 0.0007))]),
    "MD": (0.9, (0.55, 1.2), [("humerus", (0.0003, 0.001, -0.0016)), ("humerus", (0.0008, 0.0003, -0.0003)),
                              ("scapula", (0.0007, 0.0005, 0.0005))]),
    "Triceps_Lateral": (0.6, (0.82, 1.05), [("ulna", (0.0002, -0.0008, 0.0002)), ("humerus", (0, 0, -0.0018))]),
    "Triceps_Long": (0.9, (0.7, 1.1), [("ulna", (0.0002, -0.0008, 0.0002)), ("scapula", (0, -0.0003, -0.0005))]),
    "Brachialis": (0.6, (0.7, 1.2), [("ulna", (-0.0002, 0.001, 0.0001)), ("humerus", (-0.0005, 0.0005, -0.0045))]),
    "Biceps_Long": (0.52, (0.7, 1.05), [("radius", (-0.0002, 0.0001, 0.0001)), ("humerus", (-0.0002, 0.0012, -0.0005)),
                                        ("humerus", (-0.0002, 0.0009, 0.0005)), ("scapula", (0.0001, 0.0003, 0.0007))]),
}
KEYPOINT_SITES = {"Shoulder": "scapula", "Elbow": "elbow", "Wrist": "wrist_body"}
MIN_PEAK_N, MAX_PEAK_N = 0.2, 1.2


@pytest.fixture(scope="module")
def model() -> mujoco.MjModel:
    return load_model()


def _name(m, obj, i) -> str:
    return mujoco.mj_id2name(m, obj, i)


# ---------------------------------------------------------------------------------------------
# 1. Names and order
# ---------------------------------------------------------------------------------------------
def test_joints_are_four_hinges_in_qpos_order(model):
    assert JOINT_NAMES == ("sh_elv", "sh_extension", "sh_rotation", "elbow")
    assert (model.njnt, model.nq, model.nv) == (4, 4, 4)
    for i, name in enumerate(JOINT_NAMES):
        j = model.joint(name)
        assert j.id == i
        assert model.jnt_type[i] == mujoco.mjtJoint.mjJNT_HINGE
        assert model.jnt_qposadr[i] == i and model.jnt_dofadr[i] == i


def test_nine_muscles_in_published_order_on_spatial_tendons(model):
    assert MUSCLE_NAMES == ("Pec_C", "Lat", "PD", "AD", "MD",
                            "Triceps_Lateral", "Triceps_Long", "Brachialis", "Biceps_Long")
    assert tuple(MUSCLES) == MUSCLE_NAMES
    assert model.nu == 9 and model.na == 9  # one activation state per muscle
    assert [_name(model, mujoco.mjtObj.mjOBJ_ACTUATOR, i) for i in range(model.nu)] == list(MUSCLE_NAMES)
    np.testing.assert_array_equal(actuator_ids(model, MUSCLE_NAMES), np.arange(9))
    # EMG-compared indices in the published rollouts
    assert MUSCLE_NAMES[5] == "Triceps_Lateral" and MUSCLE_NAMES[8] == "Biceps_Long"
    for i in range(model.nu):
        assert model.actuator_dyntype[i] == mujoco.mjtDyn.mjDYN_MUSCLE
        assert model.actuator_gaintype[i] == mujoco.mjtGain.mjGAIN_MUSCLE
        assert model.actuator_biastype[i] == mujoco.mjtBias.mjBIAS_MUSCLE
        assert model.actuator_trntype[i] == mujoco.mjtTrn.mjTRN_TENDON
        t = model.actuator_trnid[i, 0]
        adr, num = model.tendon_adr[t], model.tendon_num[t]
        assert num >= 2
        assert all(model.wrap_type[adr + k] == mujoco.mjtWrap.mjWRAP_SITE for k in range(num)), \
            f"{MUSCLE_NAMES[i]}: not a plain spatial tendon through sites"


def test_tendon_paths_follow_the_published_sites(model):
    for i, (muscle, (_, _, path)) in enumerate(MUSCLES.items()):
        t = model.actuator_trnid[i, 0]
        adr, num = model.tendon_adr[t], model.tendon_num[t]
        assert num == len(path), muscle
        for k, (body, pos) in enumerate(path):
            s = model.wrap_objid[adr + k]
            assert _name(model, mujoco.mjtObj.mjOBJ_BODY, model.site_bodyid[s]) == body, (muscle, k)
            np.testing.assert_allclose(model.site_pos[s], pos, atol=1e-12, err_msg=f"{muscle} site {k}")


def test_keypoint_sites_on_their_bodies(model):
    assert DEFAULT_KEYPOINT_MAP == KEYPOINT_SITES
    for site, body in KEYPOINT_SITES.items():
        s = model.site(site)
        assert _name(model, mujoco.mjtObj.mjOBJ_BODY, model.site_bodyid[s.id]) == body
        np.testing.assert_array_equal(model.site_pos[s.id], 0.0)  # registration fits the offsets
    ids = keypoint_bodies(model, DEFAULT_KEYPOINT_MAP)
    assert [_name(model, mujoco.mjtObj.mjOBJ_BODY, i) for i in ids] == list(KEYPOINT_SITES.values())


# ---------------------------------------------------------------------------------------------
# 2. Joint ranges and defaults, muscle parameters
# ---------------------------------------------------------------------------------------------
def test_joint_axes_ranges_and_defaults(model):
    for name, (body, axis, rng) in JOINTS.items():
        j = model.joint(name)
        assert _name(model, mujoco.mjtObj.mjOBJ_BODY, model.jnt_bodyid[j.id]) == body
        np.testing.assert_allclose(model.jnt_axis[j.id], axis, atol=1e-12)
        np.testing.assert_array_equal(model.jnt_pos[j.id], 0.0)  # hinges at the body origin
        assert model.jnt_limited[j.id]
        np.testing.assert_allclose(np.degrees(model.jnt_range[j.id]), rng, atol=1e-9)
        np.testing.assert_allclose(model.jnt_solref[j.id], (0.01, 1))
        np.testing.assert_allclose(model.jnt_solimp[j.id, :3], (0.99, 0.9999, 0))
        np.testing.assert_allclose(model.jnt_stiffness[j.id], 1e-12)
        dof = model.jnt_dofadr[j.id]
        np.testing.assert_allclose(model.dof_damping[dof], 1e-5)
        np.testing.assert_allclose(model.dof_armature[dof], 4e-8)


def test_muscle_forces_ranges_and_controls(model):
    for i, (muscle, (force, op_range, _)) in enumerate(MUSCLES.items()):
        gain = model.actuator_gainprm[i]
        assert gain[2] == pytest.approx(force, abs=1e-12), muscle  # peak isometric force, N
        assert MIN_PEAK_N <= gain[2] <= MAX_PEAK_N, muscle
        np.testing.assert_allclose(gain[0:2], op_range, err_msg=muscle)
        # MuJoCo defaults except vmax 15: lmin 0.5, lmax 1.6, vmax, fpmax 1.3, fvmax 1.2
        np.testing.assert_allclose(gain[4:9], (0.5, 1.6, 15, 1.3, 1.2), err_msg=muscle)
        np.testing.assert_allclose(model.actuator_biasprm[i, :9], gain[:9], err_msg=muscle)
        np.testing.assert_allclose(model.actuator_dynprm[i, :2], (0.01, 0.04), err_msg=muscle)
        assert model.actuator_ctrllimited[i]
        np.testing.assert_array_equal(model.actuator_ctrlrange[i], (0, 1))
        lr = model.actuator_lengthrange[i]
        assert 0 < lr[0] < lr[1], f"{muscle}: lengthrange not computed"


def test_simulation_options(model):
    assert model.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
    assert model.opt.solver == mujoco.mjtSolver.mjSOL_CG
    assert (model.opt.iterations, model.opt.ls_iterations) == (30, 30)
    assert model.opt.timestep == pytest.approx(0.001)


# ---------------------------------------------------------------------------------------------
# 3. Kinematics
# ---------------------------------------------------------------------------------------------
def test_body_tree_and_inertia(model):
    assert model.nbody == 1 + len(BODIES)
    for name, (parent, pos, euler) in BODIES.items():
        b = model.body(name)
        assert _name(model, mujoco.mjtObj.mjOBJ_BODY, model.body_parentid[b.id]) == parent, name
        np.testing.assert_allclose(model.body_pos[b.id], pos, atol=1e-12, err_msg=name)
        quat = np.empty(4)
        mujoco.mju_euler2Quat(quat, np.radians(euler), "xyz")
        np.testing.assert_allclose(model.body_quat[b.id], quat, atol=1e-12, err_msg=name)
        assert model.body_jntnum[b.id] == sum(j[0] == name for j in JOINTS.values()), name
    for name, (ipos, mass, inertia) in INERTIA.items():
        b = model.body(name).id
        np.testing.assert_allclose(model.body_ipos[b], ipos, atol=1e-12)
        assert model.body_mass[b] == pytest.approx(mass)
        np.testing.assert_allclose(model.body_inertia[b], inertia)
        np.testing.assert_allclose(model.body_iquat[b], (1, 0, 0, 0))
    massless = set(BODIES) - set(INERTIA)
    assert all(model.body_mass[model.body(n).id] == 0 for n in massless)


def test_segment_lengths_match_the_figures(model):
    d = mujoco.MjData(model)
    for q in (np.zeros(4), model.jnt_range.mean(axis=1), model.jnt_range[:, 1]):
        d.qpos[:] = q
        mujoco.mj_kinematics(model, d)
        humerus = np.linalg.norm(d.xpos[model.body("ulna").id] - d.xpos[model.body("humerus").id])
        forearm = np.linalg.norm(d.xpos[model.body("wrist_body").id] - d.xpos[model.body("elbow").id])
        assert humerus == pytest.approx(6.8e-3, abs=0.05e-3)  # "about 6.8 mm"
        assert forearm == pytest.approx(6.9e-3, abs=0.1e-3)  # "about 6.9 mm"
        np.testing.assert_allclose(d.xpos[model.body("elbow").id], d.xpos[model.body("ulna").id])


def _real_clips() -> list[Path]:
    return sorted(REAL_CLIPS.glob("*.h5")) if REAL_CLIPS.is_dir() else []


@pytest.mark.real
@pytest.mark.skipif(not _real_clips(), reason=f"real clips absent ({REAL_CLIPS})")
def test_real_clips_kinematics_reproduce_stored_bodies_and_sites(model):
    """Stored qpos -> mj_kinematics -> stored xpos/xquat/marker sites, to float32 rounding.

    Positions are a few mm, so float32 rounding of the stored values is ~1e-9 m (measured max
    |error| 6.4e-9 m over 30 clips x 100 frames x 9 bodies); atol 1e-7 m leaves a 15x margin
    and would still catch any 0.1 um change of a body offset.
    """
    h5py = pytest.importorskip("h5py")
    clips = _real_clips()
    assert len(clips) == 30
    fm = load_forelimb(None, DEFAULT_KEYPOINT_MAP)
    d = mujoco.MjData(model)
    worst = 0.0
    for path in clips:
        with h5py.File(path, "r") as f:
            names_q = [n.decode() for n in f["names_qpos"][()]]
            names_x = [n.decode() for n in f["names_xpos"][()]]
            kp_names = [n.decode() for n in f["kp_names"][()]]
            qpos, xpos, xquat = f["qpos"][()], f["xpos"][()], f["xquat"][()]
            sites, offsets = f["marker_sites"][()], f["offsets"][()]
        # the registration model names the elbow hinge elbow_joint
        assert [n.replace("elbow_joint", "elbow") for n in names_q] == list(JOINT_NAMES), path.name
        assert names_x == ["world", *BODIES], path.name
        assert kp_names == list(DEFAULT_KEYPOINT_MAP), path.name
        assert qpos.shape == (100, 4) and xpos.shape == (100, 9, 3), path.name
        ids = [model.body(n).id for n in names_x]
        for t in range(len(qpos)):
            d.qpos[:] = qpos[t]
            mujoco.mj_kinematics(model, d)
            err = np.abs(d.xpos[ids] - xpos[t]).max()
            worst = max(worst, err)
            assert err < 1e-7, f"{path.name} frame {t}: body positions off by {err:.3g} m"
            # quaternions up to sign; the stored ones carry float32 arithmetic (measured 3.3e-7)
            dq = np.minimum(np.abs(d.xquat[ids] - xquat[t]), np.abs(d.xquat[ids] + xquat[t])).max()
            assert dq < 1e-6, f"{path.name} frame {t}: body orientations off by {dq:.3g}"
        kp = keypoint_positions(fm, qpos.astype(np.float64), offsets.astype(np.float64))
        np.testing.assert_allclose(kp, sites, rtol=0, atol=1e-7, err_msg=path.name)
    print(f"real clips: max |xpos error| {worst:.3g} m")


# ---------------------------------------------------------------------------------------------
# 4. Muscle forces over the whole joint range
# ---------------------------------------------------------------------------------------------
def test_full_activation_forces_over_the_joint_range(model):
    """Every muscle pulls (force <= 0), at most 1.2 N, and reaches >= 0.2 N somewhere.

    9^4 grid (corners included) plus 2000 uniform random configurations, act = ctrl = 1, qvel = 0.
    Measured (MuJoCo 4.0.0): actuator_force min .. max in N
        Pec_C            -0.8533 .. -0.0000     Lat              -0.8033 .. -0.4001
        PD               -0.8845 .. -0.0707     AD               -1.2000 .. -0.0000
        MD               -0.9600 .. -0.0178     Triceps_Lateral  -0.6025 .. -0.4445
        Triceps_Long     -0.9149 .. -0.2904     Brachialis       -0.6400 .. -0.1920
        Biceps_Long      -0.5222 .. -0.1685
    Largest magnitude 1.19999999 N (AD at its optimal length, where the passive force is 0).
    Muscles whose operating range reaches past L0 (e.g. MD 0.55..1.2) exceed their own F0 through
    the passive element, but all stay under 1.2 N. The "-0.0000" are at lengths below lmin where
    the active curve is 0 (MuJoCo returns -0.0 or a tiny negative number).
    """
    lo, hi = model.jnt_range[:, 0], model.jnt_range[:, 1]
    grid = np.array(list(itertools.product(*[np.linspace(lo[j], hi[j], 9) for j in range(model.nq)])))
    corners = np.array(list(itertools.product(*model.jnt_range)))
    assert all((grid == c).all(axis=1).any() for c in corners)
    rand = np.random.default_rng(0).uniform(lo, hi, size=(2000, model.nq))
    qs = np.vstack([grid, rand])

    d = mujoco.MjData(model)
    force = np.empty((len(qs), model.nu))
    length = np.empty((len(qs), model.nu))
    for k, q in enumerate(qs):
        d.qpos[:] = q
        d.qvel[:] = 0
        d.act[:] = 1
        d.ctrl[:] = 1
        mujoco.mj_forward(model, d)
        force[k] = d.actuator_force
        length[k] = d.actuator_length

    summary = {m: (force[:, i].min(), force[:, i].max()) for i, m in enumerate(MUSCLE_NAMES)}
    print("\nfull-activation actuator_force over the joint range (N):")
    for m, (fmin, fmax) in summary.items():
        print(f"  {m:16s} min {fmin:+.4f}  max {fmax:+.4f}")

    assert np.isfinite(force).all()
    for i, m in enumerate(MUSCLE_NAMES):
        f = force[:, i]
        assert f.max() <= 0.0, f"{m} pushes: max force {f.max():.3g} N at qpos {qs[f.argmax()]}"
        assert -f.min() <= MAX_PEAK_N + 1e-9, f"{m}: {-f.min():.6f} N > {MAX_PEAK_N} N at qpos {qs[f.argmin()]}"
        assert -f.min() >= MIN_PEAK_N, f"{m}: peak {-f.min():.4f} N < {MIN_PEAK_N} N over the whole range"
        # the compiled lengthrange (mode="muscle") covers the tendon lengths the joint range reaches
        lr = model.actuator_lengthrange[i]
        slack = 0.01 * (lr[1] - lr[0])
        assert lr[0] - slack <= length[:, i].min() and length[:, i].max() <= lr[1] + slack, m


# ---------------------------------------------------------------------------------------------
# 5. MJX against MuJoCo C
# ---------------------------------------------------------------------------------------------
N_CTRL, N_SUB = 50, 2  # 50 control steps of 2 physics steps (0.1 s at dt = 1 ms)


def _c_rollout(m: mujoco.MjModel, q0: np.ndarray, ctrl: np.ndarray) -> np.ndarray:
    d = mujoco.MjData(m)
    d.qpos[:] = q0
    out = np.empty((len(ctrl), m.nq))
    for t, u in enumerate(ctrl):
        d.ctrl[:] = u
        for _ in range(N_SUB):
            mujoco.mj_step(m, d)
        out[t] = d.qpos
    return out


def _x64():
    import jax

    if hasattr(jax, "enable_x64"):  # jax >= 0.8: a config context manager
        return jax.enable_x64(True)
    from jax.experimental import enable_x64  # older jax

    return enable_x64()


@pytest.mark.slow
def test_mjx_matches_mujoco_c_on_a_short_rollout(model):
    """Same model (RK4, CG 30/30, muscles on spatial tendons), same q0 and ctrl, C vs MJX.

    Runs MJX in float64 (jax x64 inside this test only), so both sides compute the same float64
    arithmetic in a different order: the trajectories agree to ~1e-15 rad (measured max 4e-16;
    float32 MJX gives 2.7e-7 rad, i.e. float32 rounding accumulated over 100 steps). 1e-10 rad is
    the tolerance: tight enough to catch any modelling difference, loose enough for summation order.

    Joint limits: the published solimplimit has width 0 ("0.99 0.9999 0"). MuJoCo C treats a zero
    width as a flat impedance 0.5*(0.99+0.9999) = 0.99495 (getimpedance: solimp[2] <= mjMINVAL);
    MJX 3.17 clamps the width to mjMINVAL and uses dmax = 0.9999 for any violation. So once a limit
    is hit the two differ by design (measured ~4.4e-4 rad after 0.1 s, the same in float32 and
    float64; with the Newton solver at tolerance 1e-15 it is still 4.4e-4, so it is the impedance,
    not the solver). With a tiny positive width (1e-9) both take dmax: a single mj_forward at a
    violated limit then agrees to 5e-12 in qacc, and the rollout to 2.9e-5 rad; that remainder is
    where the two CG implementations stop (30 iterations, tolerance 1e-8, different line searches
    and warm starts at a stiff limit). Newton at tolerance 1e-15 brings it to 6e-16, measured
    outside this test, as another solver means another compile.
    """
    jax = pytest.importorskip("jax")
    mjx = pytest.importorskip("mujoco.mjx")
    jnp = jax.numpy

    lo, hi = model.jnt_range[:, 0], model.jnt_range[:, 1]
    q_mid = (lo + hi) / 2
    q_lim = hi - 0.02  # drives sh_elv and elbow into their upper limits within a few ms
    ctrl = np.random.default_rng(0).uniform(0, 1, size=(N_CTRL, model.nu))

    m_width = load_model()
    m_width.jnt_solimp[:, 2] = 1e-9

    with _x64():

        def rollout(mx, q0, u):
            dx = mjx.make_data(mx).replace(qpos=q0)
            dx = mjx.forward(mx, dx)  # also settles dtypes of the carry

            def control_step(dx, u_t):
                dx = dx.replace(ctrl=u_t)
                dx = jax.lax.fori_loop(0, N_SUB, lambda _, d: mjx.step(mx, d), dx)
                return dx, dx.qpos

            return jax.lax.scan(control_step, dx, u)[1]

        jit_rollout = jax.jit(rollout)  # the model is an argument: one compile for all three runs
        mx, mx_width = mjx.put_model(model), mjx.put_model(m_width)
        assert mx.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
        assert mx.opt.solver == mujoco.mjtSolver.mjSOL_CG
        u = jnp.asarray(ctrl, jnp.float64)

        def run(mx_, q0):
            q = np.asarray(jit_rollout(mx_, jnp.asarray(q0, jnp.float64), u))
            assert q.dtype == np.float64
            return q

        q_mjx_mid = run(mx, q_mid)
        q_mjx_lim = run(mx, q_lim)
        q_mjx_lim_w = run(mx_width, q_lim)

    q_c_mid = _c_rollout(model, q_mid, ctrl)
    q_c_lim = _c_rollout(model, q_lim, ctrl)
    q_c_lim_w = _c_rollout(m_width, q_lim, ctrl)

    # the rollouts move: the comparison is not trivially of a resting arm
    assert np.abs(q_c_mid[-1] - q_mid).max() > 0.1
    assert (q_c_lim > hi).any(), "the near-limit rollout never reached a joint limit"
    assert (q_c_mid > lo).all() and (q_c_mid < hi).all(), "the mid-range rollout hit a limit"

    err_mid = np.abs(q_mjx_mid - q_c_mid).max()
    err_lim = np.abs(q_mjx_lim - q_c_lim).max()
    err_lim_w = np.abs(q_mjx_lim_w - q_c_lim_w).max()
    print(f"\nMJX(x64) vs C max |qpos diff|: mid-range {err_mid:.3g} rad, at limits {err_lim:.3g} rad "
          f"(solimp width 0), at limits {err_lim_w:.3g} rad (width 1e-9)")
    assert err_mid < 1e-10
    # at the limits: a known, small difference (well under a degree), mostly the zero width ...
    assert err_lim < 2e-3
    # ... as a positive width removes most of it; the rest is where the two CG solvers stop
    assert err_lim_w < 1e-4
    assert err_lim_w < err_lim / 5


# ---------------------------------------------------------------------------------------------
# 6. Bring your own model
# ---------------------------------------------------------------------------------------------
TWO_LINK_ARM = """
<mujoco model="two_link_arm">
  <compiler angle="degree"/>
  <worldbody>
    <body name="torso">
      <body name="upper_arm" pos="0 0 0.1">
        <joint name="shoulder" type="hinge" axis="0 1 0" range="-90 90"/>
        <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.02"/>
        <site name="bi_origin" pos="0.02 0 0.03"/>
        <body name="forearm" pos="0.3 0 0">
          <joint name="elbow_flex" type="hinge" axis="0 1 0" range="0 150"/>
          <geom type="capsule" fromto="0 0 0 0.25 0 0" size="0.015"/>
          <site name="bi_insertion" pos="0.05 0 0.02"/>
          <body name="hand" pos="0.25 0 0"/>
        </body>
      </body>
    </body>
  </worldbody>
  <tendon><spatial name="bi_tendon"><site site="bi_origin"/><site site="bi_insertion"/></spatial></tendon>
  <actuator><muscle name="biceps" tendon="bi_tendon" force="50"/></actuator>
</mujoco>
"""
TWO_LINK_MAP = {"Shoulder": "upper_arm", "Elbow": "forearm", "Wrist": "hand"}


def test_keypoint_map_naming_a_missing_body_lists_the_model_bodies():
    with pytest.raises(ModelError) as e:
        load_forelimb(None, {"Shoulder": "scapula", "Elbow": "elbow", "Wrist": "hand"})
    msg = str(e.value)
    assert "'hand'" in msg
    for body in BODIES:
        assert body in msg
    with pytest.raises(ModelError, match="empty"):
        load_forelimb(None, {})


def test_a_model_without_joints_is_refused(tmp_path):
    xml = tmp_path / "still.xml"
    xml.write_text("<mujoco><worldbody>" + "".join(f"<body name='{b}'><geom size='0.001'/></body>"
                                                    for b in ("scapula", "elbow", "wrist_body")) + "</worldbody></mujoco>")
    with pytest.raises(ModelError, match=r"still\.xml: the model has no joints"):
        load_forelimb(xml, {"Shoulder": "scapula", "Elbow": "elbow", "Wrist": "wrist_body"})


def test_missing_muscle_lists_the_actuators(model):
    with pytest.raises(ModelError) as e:
        actuator_ids(model, ["Pec_C", "Deltoid"])
    msg = str(e.value)
    assert "'Deltoid'" in msg
    for m in MUSCLE_NAMES:
        assert m in msg


def test_load_model_missing_or_invalid_file_names_the_file(tmp_path):
    missing = tmp_path / "nope.xml"
    with pytest.raises(ModelError, match="not found") as e:
        load_model(missing)
    assert str(missing) in str(e.value)

    broken = tmp_path / "broken.xml"
    broken.write_text("<mujoco><worldbody><body name='a'></worldbody></mujoco>")
    with pytest.raises(ModelError) as e:
        load_model(broken)
    assert str(broken) in str(e.value)

    bad_ref = tmp_path / "bad_ref.xml"  # well-formed XML that does not compile
    bad_ref.write_text(TWO_LINK_ARM.replace('site="bi_insertion"', 'site="no_such_site"'))
    with pytest.raises(ModelError) as e:
        load_model(bad_ref)
    assert str(bad_ref) in str(e.value)


def test_load_forelimb_rejects_free_joints(tmp_path):
    xml = tmp_path / "free.xml"
    xml.write_text("<mujoco><worldbody><body name='b'><freejoint/><geom size='0.1'/></body>"
                   "</worldbody></mujoco>")
    with pytest.raises(ModelError, match="nq == nv"):
        load_forelimb(xml, {"Wrist": "b"})


def test_alternative_mjcf_loads_with_its_own_keypoint_map(tmp_path):
    xml = tmp_path / "two_link_arm.xml"
    xml.write_text(TWO_LINK_ARM)
    fm = load_forelimb(xml, TWO_LINK_MAP)
    assert fm.xml == str(xml)
    assert fm.keypoint_names == ("Shoulder", "Elbow", "Wrist")
    assert fm.joint_names == ["shoulder", "elbow_flex"]
    assert fm.muscle_names == ["biceps"]
    np.testing.assert_allclose(np.degrees(fm.joint_range), [[-90, 90], [0, 150]])
    np.testing.assert_array_equal(actuator_ids(fm.model, ["biceps"]), [0])
    with pytest.raises(ModelError, match="biceps"):
        actuator_ids(fm.model, MUSCLE_NAMES)
    with pytest.raises(ModelError, match="upper_arm"):
        load_forelimb(xml, DEFAULT_KEYPOINT_MAP)  # the forelimb's map does not fit this model

    # planar forward kinematics: hinges about +y rotate +x towards -z
    offsets = np.zeros((3, 3))
    q = np.array([[0.0, 0.0], [np.pi / 2, 0.0], [0.0, np.pi / 2]])
    kp = keypoint_positions(fm, q, offsets)
    expected = np.array([
        [[0, 0, 0.1], [0.3, 0, 0.1], [0.55, 0, 0.1]],
        [[0, 0, 0.1], [0, 0, -0.2], [0, 0, -0.45]],
        [[0, 0, 0.1], [0.3, 0, 0.1], [0.3, 0, -0.15]],
    ])
    np.testing.assert_allclose(kp, expected, atol=1e-12)
    # offsets are in the bodies' frames: a hand offset along the forearm follows the elbow
    offsets[2] = (0.05, 0, 0)
    np.testing.assert_allclose(keypoint_positions(fm, q[2], offsets)[0, 2], (0.3, 0, -0.2), atol=1e-12)


def test_default_xml_path_is_the_packaged_model():
    assert DEFAULT_MODEL_XML.is_file()
    assert load_forelimb(None, DEFAULT_KEYPOINT_MAP).xml == str(DEFAULT_MODEL_XML)
