"""Imitation (TRACK): config checks, the env's reward terms, GAE, the KL term, exact replay of the
intention, checkpoint resume, the NaN guard, multi-device sharding, and a tiny end-to-end run.

Everything runs on small networks and a handful of envs; the real architecture and budgets are
only in params.yaml.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

from mimic_core.errors import DataError, ParamsError
from mimic_core.model import load_forelimb
from mimic_core.config import weight_key
from mimic_core.track.config import track_config
from mimic_core.track.env import AutoReset, ImitationEnv, actuator_velocity
from mimic_core.track.reference import ReferenceClips, held_out_split, load_registered

ROOT = Path(__file__).resolve().parents[1]
KMAP = {"Shoulder": "scapula", "Elbow": "elbow", "Wrist": "wrist_body"}
_REPO = yaml.safe_load((ROOT / "params.yaml").read_text())

# Small networks and a handful of envs over the repository's params; termination and the intention's
# initial log-variance as the tests were written for.
TINY = {**_REPO["track"],
        "physics": {**_REPO["track"]["physics"], "timestep": 0.0025, "substeps": 2},
        "env": {**_REPO["track"]["env"], "episode_frames": 8, "obs_ref_frames": 2, "joint_scale": 20.0,
                "ctrl_diff_weight": 0.05, "energy_weight": 0.2, "termination_error_deg": 30.0},
        "network": {**_REPO["track"]["network"], "hidden": [16, 16], "intention_size": 2,
                    "kl_warmup_fraction": 0.5, "intention_init_logvar": 0.0},
        "ppo": {**_REPO["track"]["ppo"], "num_envs": 8, "unroll_length": 4, "num_minibatches": 2, "batch_size": 4,
                "update_epochs": 2, "total_env_steps": 96, "learning_rate": 1e-3, "checkpoint_every": 1},
        "ctrl_cost_weights": [0, 0.15], "profile": "cpu", "profiles": {}}


def _clips(fm, n_clips=3, n_frames=20, seed=0) -> ReferenceClips:
    """Smooth reaches inside the joint range, with their keypoint sites from MuJoCo."""
    from mimic_core.model import keypoint_positions

    rng = np.random.default_rng(seed)
    lo, hi = fm.joint_range[:, 0], fm.joint_range[:, 1]
    t = np.linspace(0, 1, n_frames)[:, None]
    qpos, sites = [], []
    offsets = np.tile(np.array([[1.7, 0.7, 1.5], [-0.4, 0.1, 2.2], [1.6, -0.2, 0.0]]) * 1e-3, (n_clips, 1, 1))
    for c in range(n_clips):
        a, b = lo + (hi - lo) * rng.uniform(0.3, 0.7, (2, 4))
        q = a + (b - a) * (10 * t ** 3 - 15 * t ** 4 + 6 * t ** 5)
        qpos.append(q)
        sites.append(keypoint_positions(fm, q, offsets[c]))
    qpos = np.stack(qpos)
    qvel = np.gradient(qpos, 1 / 200, axis=1)
    return ReferenceClips([f"clip{c}" for c in range(n_clips)], fm.joint_names, qpos, qvel, offsets,
                          np.stack(sites), 200.0, "synthetic")


def _write_clips(clips: ReferenceClips, folder: Path) -> None:
    from mimic_core.io import write_h5

    folder.mkdir(parents=True, exist_ok=True)
    for c, name in enumerate(clips.clip_names):
        write_h5(folder / f"{name}.h5", {
            "qpos": clips.qpos[c].astype(np.float32), "qvel": clips.qvel[c].astype(np.float32),
            "offsets": clips.offsets[c].astype(np.float32), "marker_sites": clips.sites[c].astype(np.float32),
            "names_qpos": np.array(clips.joint_names, dtype="S"), "kp_names": np.array(list(KMAP), dtype="S")}, {"fps": 200.0, "data": "synthetic"})


@pytest.fixture(scope="module")
def clips(fm):
    return _clips(fm)


@pytest.fixture(scope="module")
def cfg():
    return track_config(TINY, 0.15)


@pytest.fixture(scope="module")
def env(fm, clips, cfg):
    return ImitationEnv(fm.model, clips, cfg.env, cfg.physics, cfg.ctrl_cost_weight)


@pytest.fixture(scope="module")
def env_step(env):
    return jax.jit(env.step)


@pytest.fixture(scope="module")
def trainer(cfg, env):
    from mimic_core.track.train import make_train

    return make_train(cfg, env)


# -- params ---------------------------------------------------------------------------------

def test_unknown_and_mistyped_keys_are_named():
    bad = copy.deepcopy(TINY)
    bad["ppo"]["num_env"] = 8
    with pytest.raises(ParamsError, match=r"track\.ppo\.num_env'.*did you mean 'track\.ppo\.num_envs'"):
        track_config(bad)
    bad = copy.deepcopy(TINY)
    bad["ppo"]["num_envs"] = "many"
    with pytest.raises(ParamsError, match=r"track\.ppo\.num_envs.*'many'"):
        track_config(bad)
    with pytest.raises(ParamsError, match=r"track\.evnv"):
        track_config({**TINY, "evnv": {}})
    with pytest.raises(ParamsError, match="integrator"):
        track_config({**TINY, "physics": {**TINY["physics"], "integrator": "leapfrog"}})
    with pytest.raises(ParamsError, match=r"'track\.ppo': missing"):
        track_config({k: v for k, v in TINY.items() if k != "ppo"})


def test_profile_overrides_merge_over_the_base():
    t = {**copy.deepcopy(TINY), "profile": "paper", "profiles": {"paper": {"ppo": {"num_envs": 4096, "batch_size": 2048}}}}
    c = track_config(t)
    assert c.ppo.num_envs == 4096 and c.ppo.unroll_length == TINY["ppo"]["unroll_length"]
    with pytest.raises(ParamsError, match="not defined"):
        track_config({**t, "profile": "gpu"})
    with pytest.raises(ParamsError, match=r"track\.profiles\.paper\.ppo\.num_env'"):
        track_config({**t, "profile": "cpu", "profiles": {"paper": {"ppo": {"num_env": 4096}}}})


def test_the_repository_params_build_both_profiles():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    cpu = track_config(params["track"], 0.15)
    paper = track_config({**params["track"], "profile": "paper"}, 0.15)
    assert cpu.network.hidden == paper.network.hidden == (512, 512, 512)
    assert paper.ppo.num_envs == 4096 and paper.ppo.total_env_steps == 40_000_000
    # control at the reference rate (cpu), at twice it with each frame held two steps (paper: the original)
    assert abs(cpu.physics.timestep * cpu.physics.substeps - 1 / 200) < 1e-12
    assert abs(paper.physics.timestep * paper.physics.substeps - 1 / 400) < 1e-12
    assert [weight_key(w) for w in params["track"]["ctrl_cost_weights"]][:3] == ["0", "0.1", "0.15"]


def test_control_step_must_match_the_reference_rate(fm, clips, cfg):
    physics = dataclasses.replace(cfg.physics, timestep=0.002, substeps=2)
    with pytest.raises(ParamsError, match=r"'track\.physics\.timestep'.*divide the reference frame interval"):
        ImitationEnv(fm.model, clips, cfg.env, physics, 0.0)


def test_a_clip_shorter_than_the_window_is_an_error(fm, cfg):
    short = _clips(fm, n_frames=cfg.env.episode_frames + cfg.env.obs_ref_frames)
    with pytest.raises(DataError, match="reference window"):
        ImitationEnv(fm.model, short, cfg.env, cfg.physics, 0.0)


def test_registered_files_with_missing_fields_are_named(fm, clips, tmp_path):
    _write_clips(clips, tmp_path)
    ok = load_registered(sorted(tmp_path.glob("*.h5")), fm.joint_names)
    np.testing.assert_allclose(ok.qpos, clips.qpos, atol=1e-6)
    # Keypoints follow the model's keypoint map, whatever order the files store them in.
    other = load_registered(sorted(tmp_path.glob("*.h5")), fm.joint_names, kp_names=("Wrist", "Shoulder", "Elbow"))
    np.testing.assert_allclose(other.sites, clips.sites[:, :, [2, 0, 1]], atol=1e-6)
    np.testing.assert_allclose(other.offsets, clips.offsets[:, [2, 0, 1]], atol=1e-6)
    with pytest.raises(DataError, match="kp_names.*Paw"):
        load_registered(sorted(tmp_path.glob("*.h5")), fm.joint_names, kp_names=("Paw", "Shoulder", "Elbow"))
    (tmp_path / "b").mkdir()    # a second folder's clip1: clips are split and scored by name
    (tmp_path / "b" / "clip1.h5").write_bytes((tmp_path / "clip1.h5").read_bytes())
    with pytest.raises(DataError, match=r"clip1\.h5 and .*b/clip1\.h5 share the clip name 'clip1'"):
        load_registered([*sorted(tmp_path.glob("*.h5")), tmp_path / "b" / "clip1.h5"], fm.joint_names)
    with h5py.File(tmp_path / "clip1.h5", "a") as f:
        del f["marker_sites"]
    with pytest.raises(DataError, match=r"clip1\.h5: field 'marker_sites'"):
        load_registered(sorted(tmp_path.glob("*.h5")), fm.joint_names)


# -- env ------------------------------------------------------------------------------------

def test_reset_draws_clips_and_frames_from_the_data(env):
    states = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), 256))
    clip, frame = np.asarray(states.info["clip"]), np.asarray(states.info["frame"])
    assert set(clip) == set(range(env.n_clips))
    assert frame.min() == 0 and frame.max() == env.n_frames - 1 - env.cfg.episode_frames - env.cfg.obs_ref_frames
    np.testing.assert_allclose(states.pipeline_state.qpos, env.ref.qpos[clip, frame])


def test_each_reward_term_by_hand(env, env_step, clips):
    s0 = env.reset_to(jnp.array(1), jnp.array(3), jax.random.PRNGKey(0))
    a0 = jnp.linspace(-0.9, 0.9, env.action_size)
    s1 = env_step(s0, a0)
    s2 = env_step(s1, -a0)
    d = s2.pipeline_state
    c1, c2 = 0.5 * (np.asarray(a0) + 1), 0.5 * (1 - np.asarray(a0))
    sq = np.sum((np.asarray(d.qpos, np.float64) - clips.qpos[1, 5]) ** 2)
    e = env.cfg
    expected = {
        "joint": e.joint_weight * np.exp(-e.joint_scale * sq),
        "ctrl": -0.15 * np.sum(c2 ** 2),
        "ctrl_diff": -e.ctrl_diff_weight * np.sum((c2 - c1) ** 2),
        "energy": -e.energy_weight * np.sum(np.abs(actuator_velocity(d)) * np.abs(d.actuator_force)),
    }
    for k, v in expected.items():
        np.testing.assert_allclose(float(s2.metrics[f"reward_{k}"]), v, rtol=1e-4, atol=1e-7, err_msg=k)
    np.testing.assert_allclose(float(s2.reward), sum(expected.values()), rtol=1e-4)
    assert float(s2.metrics["reward_energy"]) < 0 and int(s2.info["frame"]) == 5
    np.testing.assert_allclose(s2.pipeline_state.ctrl, c2, atol=1e-6)


def test_episodes_truncate_terminate_and_auto_reset(env, env_step):
    wrapped = AutoReset(env)
    s = wrapped.reset(jax.random.PRNGKey(3))
    step = jax.jit(wrapped.step)
    for i in range(env.cfg.episode_frames):
        s = step(s, jnp.zeros(env.action_size))
    assert float(s.done) == 1 and float(s.info["truncation"]) == 1
    assert int(s.info["steps"]) == 0  # a fresh episode has begun
    # A far-off pose ends the episode by termination, not truncation.
    far = env.reset_to(jnp.array(0), jnp.array(0), jax.random.PRNGKey(0))
    far = far.replace(pipeline_state=far.pipeline_state.replace(qpos=far.pipeline_state.qpos + 1.0))
    t = env_step(far, jnp.zeros(env.action_size))
    assert float(t.done) == 1 and float(t.info["truncation"]) == 0


# -- PPO pieces -----------------------------------------------------------------------------

def test_gae_by_hand():
    from mimic_core.track.losses import Transition, gae

    rng = np.random.default_rng(0)
    T, B, g, lam = 6, 3, 0.9, 0.8
    r, v = rng.normal(size=(T, B)), rng.normal(size=(T, B))
    term = np.zeros((T, B)); term[2, 0] = 1
    trunc = np.zeros((T, B)); trunc[3, 1] = 1
    boot = rng.normal(size=B)
    batch = Transition(None, None, None, None, jnp.asarray(v), jnp.asarray(r), jnp.asarray(term), jnp.asarray(trunc),
                       None)
    targets, adv = gae(batch, jnp.asarray(boot), dataclasses.replace(track_config(TINY).ppo, discount=g, gae_lambda=lam))
    # By hand: delta_t = r_t + g (1 - term_t) v_{t+1} - v_t; A_t = delta_t + g lam (1 - term_t) A_{t+1};
    # a truncated step contributes nothing and cuts the recursion.
    vnext = np.concatenate([v[1:], boot[None]])
    A = np.zeros((T, B)); acc = np.zeros(B)
    for t in reversed(range(T)):
        delta = (r[t] + g * (1 - term[t]) * vnext[t] - v[t]) * (1 - trunc[t])
        acc = delta + g * lam * (1 - term[t]) * (1 - trunc[t]) * acc
        A[t] = acc
    vs = A + v
    vs_next = np.concatenate([vs[1:], boot[None]])
    adv_hand = (r + g * (1 - term) * vs_next - v) * (1 - trunc)
    np.testing.assert_allclose(targets, vs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(adv, adv_hand, rtol=1e-5, atol=1e-6)


def test_kl_to_standard_normal():
    from mimic_core.track.networks import kl_to_standard_normal

    assert float(kl_to_standard_normal(jnp.zeros(4), jnp.zeros(4))) == 0.0
    mean, logvar = jnp.array([0.5, -1.0]), jnp.array([0.3, -0.7])
    var = np.exp(np.asarray(logvar))
    closed = 0.5 * np.sum(var + np.asarray(mean) ** 2 - 1 - np.log(var))
    np.testing.assert_allclose(float(kl_to_standard_normal(mean, logvar)), closed, rtol=1e-6)
    # Monte Carlo: E_q[log q - log p]
    z = np.asarray(mean) + np.sqrt(var) * np.random.default_rng(0).normal(size=(200_000, 2))
    logq = -0.5 * np.sum((z - np.asarray(mean)) ** 2 / var + np.log(2 * np.pi * var), axis=1)
    logp = -0.5 * np.sum(z ** 2 + np.log(2 * np.pi), axis=1)
    np.testing.assert_allclose(np.mean(logq - logp), closed, rtol=0.02)


def test_stored_intention_replays_the_action_log_prob_exactly(trainer):
    from mimic_core.track.losses import action_log_prob, normalize_obs

    ts = trainer.jit_init(jax.random.PRNGKey(0))
    ts, _ = trainer.jit_iteration(ts)  # non-trivial normaliser and parameters
    _, _, batch, _, _ = trainer.jit_rollout(ts)
    nobs = normalize_obs(ts.obs_norm, batch.obs, True)
    recomputed, *_ = jax.jit(lambda p, o, e, a: action_log_prob(trainer.networks, p, o, e, a))(
        ts.params["policy"], nobs, batch.eps, batch.raw_action)
    np.testing.assert_allclose(recomputed, batch.log_prob, rtol=1e-5, atol=1e-5)
    # The original code's bug: a fresh intention sample at update time gives another log-prob.
    fresh = jax.random.normal(jax.random.PRNGKey(9), batch.eps.shape)
    resampled, *_ = action_log_prob(trainer.networks, ts.params["policy"], nobs, fresh, batch.raw_action)
    assert np.max(np.abs(np.asarray(resampled) - np.asarray(batch.log_prob))) > 1e-2


def test_kl_weight_warms_up_linearly(trainer):
    ts = trainer.jit_init(jax.random.PRNGKey(0))
    step = trainer.jit_iteration
    weights = []
    for _ in range(trainer.n_iterations):
        ts, m = step(ts)
        weights.append(float(m["kl_weight"]))
    warm = trainer.config.network.kl_warmup_fraction * trainer.n_iterations
    expected = [1e-5 * min(1.0, i / warm) for i in range(trainer.n_iterations)]
    np.testing.assert_allclose(weights, expected, rtol=1e-5)
    # the learning rate anneals to zero at the last of the run's updates (lr_schedule: linear)
    ppo = trainer.config.ppo
    n_updates = trainer.n_iterations * ppo.update_epochs * ppo.num_minibatches
    counts = [int(x) for x in jax.tree_util.tree_leaves(ts.opt_state) if getattr(x, "dtype", None) == jnp.int32]
    assert counts and set(counts) == {n_updates}
    assert ppo.lr_schedule == "linear" and float(trainer.learning_rate(0)) == pytest.approx(ppo.learning_rate)
    end = ppo.learning_rate * ppo.lr_final_fraction
    assert float(trainer.learning_rate(n_updates)) == pytest.approx(end)
    assert float(trainer.learning_rate(n_updates // 2)) == pytest.approx((ppo.learning_rate + end) / 2, rel=0.3)


def test_a_constant_learning_rate_stays(cfg, env):
    from mimic_core.track.train import make_train

    c = cfg.replace(ppo=dataclasses.replace(cfg.ppo, lr_schedule="constant"))
    t = make_train(c, env)
    assert float(t.learning_rate(0)) == float(t.learning_rate(10 ** 6)) == pytest.approx(c.ppo.learning_rate)


# -- checkpoints and the NaN guard -------------------------------------------------------------

def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def test_a_resumed_run_continues_as_if_never_stopped(trainer, tmp_path):
    from mimic_core.track.run import fit

    key = jax.random.PRNGKey(1)
    straight, rows_a = fit(trainer, key, tmp_path / "a")
    fit(trainer, key, tmp_path / "b", stop_after=1)
    resumed, rows_b = fit(trainer, key, tmp_path / "b")
    assert int(resumed.iteration) == trainer.n_iterations == len(rows_b)
    for x, y in zip(_leaves((straight.params, straight.obs_norm, straight.env_state)),
                    _leaves((resumed.params, resumed.obs_norm, resumed.env_state))):
        np.testing.assert_array_equal(x, y)
    assert [r["loss"] for r in rows_a] == [r["loss"] for r in rows_b]


def test_nan_guard_stops_and_keeps_the_last_good_checkpoint(trainer, tmp_path):
    import orbax.checkpoint as ocp

    from mimic_core.track.run import TrainingDiverged, fit, restore_state

    good, _ = fit(trainer, jax.random.PRNGKey(2), tmp_path, stop_after=1)
    poisoned = good.replace(params=jax.tree_util.tree_map(lambda x: x * jnp.nan, good.params))
    with pytest.raises(TrainingDiverged, match="iteration 2.*non-finite.*iteration 1"):
        fit(trainer, jax.random.PRNGKey(2), tmp_path, state=poisoned)
    mngr = ocp.CheckpointManager(tmp_path.resolve())
    assert mngr.latest_step() == 1
    restored = restore_state(mngr, 1, jax.eval_shape(trainer.init, jax.random.PRNGKey(2)))
    assert all(np.isfinite(x).all() for x in _leaves(restored.params))


WALL_CLOCK = ("seconds", "steps_per_s")


def _same_rows(a, b):
    """Rows equal in every column but the wall-clock ones."""
    strip = [{k: v for k, v in r.items() if k not in WALL_CLOCK} for r in a]
    assert strip == [{k: v for k, v in r.items() if k not in WALL_CLOCK} for r in b]


class _Interrupt:
    """A progress callback that raises KeyboardInterrupt once iteration `at` has run (before its checkpoint)."""

    def __init__(self, at):
        self.at = at

    def __call__(self, row):
        if row["iteration"] == self.at:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def straight(trainer, tmp_path_factory):
    from mimic_core.track.run import fit

    return fit(trainer, jax.random.PRNGKey(3), tmp_path_factory.mktemp("straight"))


@pytest.mark.parametrize("at", [1, 2, 3])
def test_rows_survive_an_interrupt_at_any_iteration(trainer, straight, tmp_path, at):
    """The metrics rows are saved inside each checkpoint: a resume gives the uninterrupted run's rows."""
    from mimic_core.track.run import fit

    assert trainer.n_iterations == 3
    with pytest.raises(KeyboardInterrupt):
        fit(trainer, jax.random.PRNGKey(3), tmp_path, _Interrupt(at))
    state, rows = fit(trainer, jax.random.PRNGKey(3), tmp_path)
    _same_rows(rows, straight[1])
    for x, y in zip(_leaves(state.params), _leaves(straight[0].params)):
        np.testing.assert_array_equal(x, y)


def _array_data(step_dir):
    """The files that hold the arrays' bytes (OCDBT data files under a `d/` folder), not metadata or sharding."""
    files = sorted(p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d")
    assert files, sorted(p.name for p in (step_dir / "state").rglob("*"))
    return files


def _flip_a_byte(step_dir):
    for f in _array_data(step_dir):
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0xFF
        f.write_bytes(bytes(data))


def _truncate(step_dir):
    for f in _array_data(step_dir):
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _bad_metadata(step_dir):
    for p in step_dir.rglob("*metadata*"):
        if p.is_file():
            p.write_text("{not json")


def _bad_rows(step_dir):
    for p in (step_dir / "log").rglob("*"):
        if p.is_file():
            p.write_text('{"rows": [], "state_sha256": "0"}')


def _emptied(step_dir):
    import shutil

    shutil.rmtree(step_dir)
    step_dir.mkdir()


@pytest.mark.parametrize("damage", [_flip_a_byte, _truncate, _bad_metadata, _bad_rows, _emptied])
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(trainer, straight, tmp_path, damage):
    from mimic_core.track.run import fit

    fit(trainer, jax.random.PRNGKey(3), tmp_path)          # keeps checkpoints 2 and 3
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.isdigit()) == ["2", "3"]
    damage(tmp_path / "3")
    lines = []
    state, rows = fit(trainer, jax.random.PRNGKey(3), tmp_path, log=lines.append)
    assert len(lines) == 1 and "checkpoint" in lines[0] and "3" in lines[0] and "damaged" in lines[0], lines
    _same_rows(rows, straight[1])
    for x, y in zip(_leaves(state.params), _leaves(straight[0].params)):
        np.testing.assert_array_equal(x, y)


KILLED = r"""
import os, signal, sys, jax
sys.path.insert(0, {tests!r})
from test_track import TINY, _clips, KMAP
from mimic_core.model import load_forelimb
from mimic_core.track.config import track_config
from mimic_core.track.env import ImitationEnv
from mimic_core.track.run import fit
from mimic_core.track.train import make_train
fm = load_forelimb(None, KMAP)
cfg = track_config(TINY, 0.15)
tr = make_train(cfg, ImitationEnv(fm.model, _clips(fm), cfg.env, cfg.physics, 0.15))
def progress(row):
    if row["iteration"] == {at}:
        os.kill(os.getpid(), signal.{sig})
fit(tr, jax.random.PRNGKey(3), {ckpt!r}, progress)
"""


@pytest.mark.parametrize("sig, at", [("SIGKILL", 2)])   # SIGINT is KeyboardInterrupt: the in-process test above
def test_rows_survive_a_real_signal(trainer, straight, tmp_path, sig, at):
    """A process killed mid-run (no cleanup at all): the resumed run's rows are the straight run's."""
    from mimic_core.track.run import fit

    code = KILLED.format(tests=str(Path(__file__).parent), at=at, sig=sig, ckpt=str(tmp_path))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode != 0 and (sig != "SIGINT" or "KeyboardInterrupt" in res.stderr), res.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.isdigit())[-1] == str(at - 1)
    state, rows = fit(trainer, jax.random.PRNGKey(3), tmp_path)
    _same_rows(rows, straight[1])


def test_no_good_checkpoint_is_one_clear_error(trainer, tmp_path):
    from mimic_core.track.run import CheckpointError, fit

    fit(trainer, jax.random.PRNGKey(3), tmp_path)
    for step in ("2", "3"):
        _bad_rows(tmp_path / step)
    lines = []
    with pytest.raises(CheckpointError, match=r"no checkpoint can be read back whole.*delete the folder"):
        fit(trainer, jax.random.PRNGKey(3), tmp_path, log=lines.append)
    assert len(lines) == 2


# -- multi-device -----------------------------------------------------------------------------

MULTI = r"""
import json, sys, jax, numpy as np
sys.path.insert(0, {tests!r})
from test_track import TINY, _clips, KMAP
from mimic_core.model import load_forelimb
from mimic_core.track.config import track_config
from mimic_core.track.env import ImitationEnv
from mimic_core.track.train import make_train, env_mesh
fm = load_forelimb(None, KMAP)
cfg = track_config(TINY, 0.15)
env = ImitationEnv(fm.model, _clips(fm), cfg.env, cfg.physics, 0.15)
out = {{"devices": jax.device_count()}}
for n in (1, 2):
    tr = make_train(cfg, env, env_mesh(jax.devices()[:n]))
    ts = jax.jit(tr.init)(jax.random.PRNGKey(0))
    out[f"shards_{{n}}"] = len(ts.env_state.pipeline_state.qpos.sharding.device_set)
    ts, m = jax.jit(tr.iteration)(ts)
    out[f"shards_after_{{n}}"] = len(ts.env_state.pipeline_state.qpos.sharding.device_set)
    out[f"loss_{{n}}"] = float(m["loss"])
    out[f"reward_{{n}}"] = float(m["reward"])
print(json.dumps(out))
"""


def test_envs_shard_across_two_cpu_devices():
    # the suite's own XLA_FLAGS (conftest: the cheapest LLVM optimisation level) plus two host devices
    flags = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    env_vars = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    res = subprocess.run([sys.executable, "-c", MULTI.format(tests=str(Path(__file__).parent))],
                         capture_output=True, text=True, env=env_vars, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["devices"] == 2
    assert out["shards_1"] == 1 and out["shards_2"] == 2 and out["shards_after_2"] == 2
    # Same seed, same envs: one device and two agree up to the order of float reductions.
    np.testing.assert_allclose(out["reward_2"], out["reward_1"], rtol=1e-5)
    np.testing.assert_allclose(out["loss_2"], out["loss_1"], rtol=1e-3, atol=1e-5)


# -- evaluation -------------------------------------------------------------------------------

def test_held_out_clips_are_a_seeded_choice_by_name():
    names = [f"trial{i:03d}" for i in range(46)]
    held = held_out_split(names, 0.2, 0)
    assert held.sum() == 9                                           # round(0.2 * 46)
    chosen = {n for n, h in zip(names, held) if h}
    rev = held_out_split(names[::-1], 0.2, 0)                       # file order does not matter
    assert {n for n, h in zip(names[::-1], rev) if h} == chosen
    fewer = names[:40]                                               # nor do the other clips, beyond the count
    kept = {n for n, h in zip(fewer, held_out_split(fewer, 0.2, 0)) if h}
    assert len(kept) == 8
    other_seed = {n for n, h in zip(names, held_out_split(names, 0.2, 1)) if h}
    assert other_seed != chosen and len(other_seed) == 9
    assert not held_out_split(names, 0.0, 0).any()
    assert held_out_split(names[:3], 0.2, 0).sum() == 1             # round(0.6)


def test_a_held_out_fraction_that_leaves_no_training_clip_is_refused():
    with pytest.raises(ParamsError, match="track.held_out_fraction.*leaves none to train on"):
        held_out_split(["a", "b", "c"], 0.9, 0)
    with pytest.raises(DataError, match="clip names must be unique"):
        held_out_split(["a", "a", "b"], 0.2, 0)
    with pytest.raises(ParamsError, match="track.held_out_fraction"):
        track_config({**TINY, "held_out_fraction": 1.0})


def test_baselines_replay_stored_controls_and_score_against_the_truth(fm, clips, cfg, env):
    """A truth made by the env itself from known controls: replaying them open loop is exact; the reference's
    and the mean trajectory's errors are the by-hand numbers."""
    from mimic_core.track.evaluate import Truth, baseline_metrics, keypoints_of, open_loop_clips

    rng = np.random.default_rng(0)
    C, T, nu = len(clips.clip_names), clips.n_frames, env.action_size
    ctrl = np.clip(0.3 + 0.2 * np.cumsum(rng.normal(0, 0.2, (C, T, nu)), axis=1), 0, 1)
    act0 = rng.uniform(0.1, 0.4, (C, nu))
    rec = open_loop_clips(env, ctrl, act0)
    np.testing.assert_allclose(rec["act"][:, 0], act0, atol=1e-6)
    np.testing.assert_allclose(rec["ctrl"], ctrl[:, :T - 1], atol=1e-6)   # frame t's control over frame t -> t+1
    truth = Truth(rec["qpos"], keypoints_of(fm, rec["qpos"], clips.offsets), rec["act"], ctrl)
    held = np.array([False, True, False])
    base = baseline_metrics(env, clips, fm, cfg, truth, held)
    assert set(base) == {"mean_trajectory", "open_loop", "reference"}
    ol = base["open_loop"]["held_out"]
    assert ol["n_clips"] == 1 and ol["truth"]["joint_error_deg"] < 1e-3
    assert ol["truth"]["keypoint_error_mm"]["mean"] < 1e-3 and ol["activation_mae"] < 1e-6
    assert ol["joint_error_deg"] > 1.0   # the truth is not the reference
    dq = np.degrees(clips.qpos[1, 1:] - truth.qpos[1, 1:])
    assert base["reference"]["held_out"]["truth"]["joint_error_deg"] == pytest.approx(np.sqrt(np.mean(dq ** 2)))
    mean = clips.qpos[[0, 2]].mean(0)
    for part, idx in (("train", [0, 2]), ("held_out", [1])):
        m = base["mean_trajectory"][part]
        dq = np.degrees(mean[None, 1:] - clips.qpos[idx, 1:])
        assert m["joint_error_deg"] == pytest.approx(np.sqrt(np.mean(dq ** 2)))
        dq_truth = np.degrees(mean[None, 1:] - truth.qpos[idx, 1:])
        assert m["truth"]["joint_error_deg"] == pytest.approx(np.sqrt(np.mean(dq_truth ** 2)))
        per = m["joint_error_deg_per_joint"]
        assert list(per) == fm.joint_names and per["elbow"] == pytest.approx(np.sqrt(np.mean(dq[..., 3] ** 2)))


def test_action_hf_power_splits_at_the_cutoff():
    from mimic_core.track.evaluate import action_hf_power

    t = np.arange(200) / 200
    slow = 0.5 + 0.3 * np.sin(2 * np.pi * 5 * t)
    fast = 0.5 + 0.3 * np.sin(2 * np.pi * 40 * t)
    x = lambda s: np.tile(s[None, :, None], (2, 1, 9))  # noqa: E731
    assert action_hf_power(x(slow), 200, 10) < 1e-3
    assert action_hf_power(x(fast), 200, 10) > 0.999
    assert abs(action_hf_power(x(slow + fast - 0.5), 200, 10) - 0.5) < 1e-3


def test_train_and_evaluate_end_to_end(fm, clips, tmp_path, monkeypatch):
    """The real CLI on tiny settings: a policy, its rollouts and tracking metrics."""
    from click.testing import CliRunner

    from bench.cli import main

    from helpers import stage_argv

    _write_clips(clips, tmp_path / "data/registered")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["track"] = {**copy.deepcopy(TINY), "ctrl_cost_weights": [0.15]}
    params["data"]["truth_dir"] = ""
    params["model"]["xml"] = str(ROOT / params["model"]["xml"])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    run = CliRunner().invoke
    for w in ("0.15",):
        r = run(main, stage_argv(f"train@{w}", params_path="params.yaml"))
        assert r.exit_code == 0, r.output
        assert (tmp_path / "data/policies" / w / "policy.json").is_file()
        rows = (tmp_path / "reports/training" / f"{w}.csv").read_text().splitlines()
        assert len(rows) == 1 + track_config(TINY).iterations and rows[0].startswith("iteration,env_steps")
    r = run(main, stage_argv("train@0.15", weight="0.3", params_path="params.yaml"))
    assert r.exit_code == 1 and "not in track.ctrl_cost_weights" in r.output
    r = run(main, stage_argv("evaluate", params_path="params.yaml"))
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "reports/metrics/tracking.json").read_text())
    assert set(report) == {"0.15", "baselines"}
    meta = json.loads((tmp_path / "data/policies/0.15/policy.json").read_text())
    held = [n for n, h in zip(clips.clip_names, held_out_split(clips.clip_names, 0.2, 0)) if h]
    assert len(held) == 1 and held[0] not in meta["settings"]["clips"]   # never trained on
    assert sorted(meta["settings"]["clips"] + held) == sorted(clips.clip_names)
    m = report["0.15"]
    assert m["data"] == "synthetic" and m["n_clips"] == len(clips.clip_names) and m["held_out_clips"] == held
    assert m["train"]["n_clips"] == 2 and m["held_out"]["n_clips"] == 1
    assert set(m["train"]) == set(m["held_out"])   # the same metrics on both
    for part in ("train", "held_out"):
        e = m[part]
        assert e["keypoint_error_mm"]["scored_keypoints"] == ["Elbow", "Wrist"]
        assert e["keypoint_error_mm"]["per_keypoint"]["Shoulder"] < 1e-3   # welded to the world
        for k in ("joint_error_deg", "joint_reward", "action_hf_power", "energy"):
            assert np.isfinite(e[k])
        assert "truth" not in e   # no truth_dir
    base = report["baselines"]
    assert set(base) == {"mean_trajectory"}   # no truth: no stored controls to replay
    assert set(base["mean_trajectory"]) == {"train", "held_out"}
    # the mean trajectory of the training clips, scored by hand on the held-out clip
    idx = clips.clip_names.index(held[0])
    train_idx = [clips.clip_names.index(n) for n in meta["settings"]["clips"]]
    dq = np.degrees(clips.qpos[train_idx].mean(0)[1:] - clips.qpos[idx, 1:])
    assert base["mean_trajectory"]["held_out"]["joint_error_deg"] == pytest.approx(np.sqrt(np.mean(dq ** 2)),
                                                                                    rel=1e-6)
    with h5py.File(tmp_path / "data/rollouts/0.15.h5") as f:
        T, C = clips.n_frames, len(clips.clip_names)
        assert f["qpos"].shape == (C, T, 4) and f["keypoints"].shape == (C, T, 3, 3)
        assert f["actions"].shape == (C, T - 1, 9) and f["forces"].shape == (C, T - 1, 9)
        assert f["activations"].shape == (C, T, 9) and f["latent"].shape == (C, T - 1, 2)
        assert [f[f"decoder_layer_{i}"].shape for i in range(2)] == [(C, T - 1, 16)] * 2
        a = f["actions"][()]
        assert a.min() >= 0 and a.max() <= 1
        # Deterministic: the keypoints are the model's at the rollout's joint angles.
        from mimic_core.model import keypoint_positions

        names = [n.decode() for n in f["kp_names"][()]]   # the params' keypoint map order
        order = [list(KMAP).index(n) for n in names]
        fm_params = load_forelimb(None, {n: KMAP[n] for n in names})
        np.testing.assert_allclose(f["keypoints"][0], keypoint_positions(fm_params, f["qpos"][0],
                                                                         clips.offsets[0][order]), atol=1e-6)


@pytest.mark.real
def test_real_registered_clips_load_as_references(fm):
    """The original tool's files (stac-mjx schema, no fps attribute) enter through the same loader."""
    real = ROOT.parent / "shared" / "real" / "mouse_arm_clips"
    files = sorted(real.glob("*.h5")) if real.is_dir() else []
    if not files:
        pytest.skip(f"real clips not found at {real}")
    with pytest.raises(DataError, match="frame rate"):
        load_registered(files[:2], fm.joint_names, kp_names=fm.keypoint_names)
    clips = load_registered(files, fm.joint_names, fps=200, label="real", kp_names=fm.keypoint_names)
    assert clips.qpos.shape == (len(files), 100, 4) and clips.label == "real"
    with h5py.File(files[0]) as f:
        np.testing.assert_allclose(clips.sites[0], f["marker_sites"][()], atol=1e-7)
    # Their stored sites are the model's keypoints at their qpos and offsets (our MJCF, our kinematics).
    from mimic_core.model import keypoint_positions

    np.testing.assert_allclose(keypoint_positions(fm, clips.qpos[0], clips.offsets[0]), clips.sites[0], atol=2e-6)


def test_policy_folders_are_found_by_number(tmp_path):
    from mimic_core.track.stage import policy_folder

    assert policy_folder(tmp_path, 0.15) == tmp_path / "0.15"          # absent: the canonical name
    (tmp_path / "0.150").mkdir()                                        # `train --ctrl-cost 0.150 --out .../0.150`
    assert policy_folder(tmp_path, 0.15) == tmp_path / "0.150"
    assert policy_folder(tmp_path, 0.1) == tmp_path / "0.1"
    (tmp_path / "1.5e-1").mkdir()
    with pytest.raises(DataError, match=r"several policy folders for weight 0.15: \['0.150', '1.5e-1'\]"):
        policy_folder(tmp_path, 0.15)
    (tmp_path / "0.15").mkdir()
    assert policy_folder(tmp_path, 0.15) == tmp_path / "0.15"          # the canonical one wins
