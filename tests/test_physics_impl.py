"""The physics backend (`track.physics.impl`: jax | warp): the setting, a clear error where MuJoCo Warp is
missing, and, where it is installed (`pip install -e .[warp]`), the same trajectories from both backends."""
from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimic_core.errors import ParamsError
from mimic_core.track.config import track_config
from mimic_core.track.env import ImitationEnv, check_impl, warp_status
from tests.test_track import TINY, _clips

WARP_OK, WARP_WHY = warp_status()


def _tiny(impl: str) -> dict:
    return {**TINY, "physics": {**TINY["physics"], "impl": impl}}


def test_params_impl_defaults_to_jax_and_refuses_others():
    assert track_config(TINY).physics.impl == "jax"
    assert track_config(_tiny("warp")).physics.impl == "warp"
    with pytest.raises(ParamsError, match=r"track\.physics\.impl"):
        track_config(_tiny("cuda"))


def test_warp_missing_names_the_extra(monkeypatch, fm):
    monkeypatch.setitem(sys.modules, "mujoco_warp", None)   # as if not installed: its import raises ImportError
    ok, why = warp_status()
    assert not ok and ".[warp]" in why
    cfg = track_config(_tiny("warp"))
    with pytest.raises(ParamsError, match=r"track\.physics\.impl.*\.\[warp\]"):
        ImitationEnv(fm.model, _clips(fm), cfg.env, cfg.physics, 0.0)
    check_impl("jax")   # MJX-JAX needs nothing more


@pytest.mark.skipif(not WARP_OK, reason=f"MuJoCo Warp not usable here: {WARP_WHY}")
def test_warp_follows_jax(fm):
    """The same env, controls and start, stepped by both backends: float32 rounding apart."""
    clips = _clips(fm)
    out = {}
    for impl in ("jax", "warp"):
        cfg = track_config(_tiny(impl))
        env = ImitationEnv(fm.model, clips, cfg.env, cfg.physics, 0.1)
        st = env.reset_to(jnp.int32(1), jnp.int32(2), jax.random.PRNGKey(0))
        actions = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (6, env.action_size)), jnp.float32)
        step = jax.jit(env.step)
        qs, rs = [], []
        for a in actions:
            st = step(st, a)
            qs.append(np.asarray(st.pipeline_state.qpos))
            rs.append(float(st.reward))
        out[impl] = np.array(qs), np.array(rs)
    np.testing.assert_allclose(out["warp"][0], out["jax"][0], atol=1e-4)
    np.testing.assert_allclose(out["warp"][1], out["jax"][1], rtol=1e-3, atol=1e-3)
    assert np.abs(out["jax"][0][-1] - out["jax"][0][0]).max() > 1e-3   # the arm moved
