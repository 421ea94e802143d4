"""The params schema: the repository's params validate, and every kind of mistake is named by its key."""
from __future__ import annotations

import dataclasses
import json

import pytest

from mimic_core.config import Params, as_params, load_config
from mimic_core.errors import ParamsError
from mimic_core.params import params_hash
from repo_params import DELETE, ROOT, repo_params


def test_the_repository_params_validate_with_both_profiles():
    for profile in ("cpu", "paper"):
        p = as_params(repo_params({"track.profile": profile}))
        assert isinstance(p, Params) and p.track.profile == profile
    assert load_config(ROOT / "params.yaml").stac.n_iters == 3
    paper = as_params(repo_params({"track.profile": "paper"})).track
    assert paper.ppo.num_envs == 4096 and paper.physics.solver == "cg"
    assert paper.ppo.num_minibatches == 8 and paper.env.init_activation == 0.0   # base values kept


# The hash of dataclasses.asdict(TrackConfig) that the train stage keys its checkpoints by, as of the held-out
# clips and the cpu profile's PPO health settings (issue 14), then track.physics.impl (issue 17). It changes
# only when a setting is added or its value changes; a refactor must leave it alone.
OLD_HASHES = {("cpu", 0): "fe5c9008c6e2", ("cpu", 0.1): "381a7fdd6a58", ("cpu", 0.15): "39608ca8fd36",
              ("paper", 0): "907cf4ad14e6", ("paper", 0.1): "49ba50cd620f", ("paper", 0.15): "117d39ffd4d9"}
BEFORE_IMPL = {("cpu", 0): "204bb8fdec13", ("cpu", 0.1): "98c5a19a15dc", ("cpu", 0.15): "2ae37fe2dc7c",
               ("paper", 0): "6ae6ebbd06c5", ("paper", 0.1): "46ad6cf919d2", ("paper", 0.15): "e3d376442ab7"}


@pytest.mark.parametrize("profile,weight", sorted(OLD_HASHES))
def test_the_settings_hash_is_the_one_of_the_old_validators(profile, weight):
    cfg = as_params(repo_params({"track.profile": profile})).track.policy(weight)
    d = dataclasses.asdict(cfg)
    assert params_hash({"track": d}) == OLD_HASHES[(profile, weight)]
    d["physics"].pop("impl")   # the one setting added since: the rest is as it was
    assert params_hash({"track": d}) == BEFORE_IMPL[(profile, weight)]


def test_ints_stay_ints_and_floats_floats():
    d = dataclasses.asdict(as_params(repo_params()).track.policy(0))
    assert json.dumps(d["ppo"]["num_envs"]) == "512" and json.dumps(d["env"]["joint_weight"]) == "5.0"
    assert d["network"]["hidden"] == (512, 512, 512) and isinstance(d["ctrl_cost_weight"], float)


def _error(overrides) -> str:
    with pytest.raises(ParamsError) as e:
        as_params(repo_params(overrides))
    return str(e.value)


@pytest.mark.parametrize("key,close", [
    ("model.keypoint_mapp", "model.keypoint_map"),
    ("data.keypoints.unitz", "data.keypoints.units"),
    ("data.emg.formatt", "data.emg.format"),
    ("twin.n_trial", "twin.n_trials"),
    ("twin.emg.gain_u", "twin.emg.gain_uv"),
    ("prepare.clip.n_frame", "prepare.clip.n_frames"),
    ("prepare.emg.epoch", "prepare.emg.epoch_s"),
    ("stac.lm_max_iter", "stac.lm_max_iters"),
    ("track.ppo.num_env", "track.ppo.num_envs"),
    ("track.physics.solvr", "track.physics.solver"),
    ("track.ctrl_cost_weight", "track.ctrl_cost_weights"),
    ("edm.Tpp", "edm.Tp"),
    ("edm.analyses.sim_biceps_from_joints.muscl", "edm.analyses.sim_biceps_from_joints.muscle"),
    ("latents.n_component", "latents.n_components"),
])
def test_an_unknown_key_is_named_with_the_closest_known_one(key, close):
    msg = _error({key: 1})
    assert f"'{key}': unknown key; did you mean '{close}'?" in msg and msg.startswith("params.yaml: ")


@pytest.mark.parametrize("key,value,says", [
    ("prepare.emg.epoch_s", -0.3, "greater than 0"),
    ("stac.lm_damping", -1, "greater than 0"),
    ("stac.n_iters", -1, "greater than or equal to 0"),
    ("prepare.clip.n_frames", 99.7, "valid integer"),
    ("track.ppo.total_env_steps", float("inf"), "valid integer"),
    ("track.network.kl_weight", float("inf"), "finite number"),
    ("stac.lm_tol", "1e-6", "valid number"),
    ("track.ppo.num_envs", "many", "valid integer"),
    ("stac.n_init", True, "valid integer"),
    ("track.ppo.normalize_observations", 1, "valid boolean"),
    ("track.ppo.discount", 1.5, "less than or equal to 1"),
    ("track.physics.integrator", "leapfrog", "'euler', 'implicitfast' or 'rk4'"),
    ("data.keypoints.format", "c3d", "'stac_h5', 'sleap_anipose_h5' or 'anipose_csv'"),
    ("data.keypoints.units", "in", "'m', 'mm' or 'cm'"),
    ("data.emg.format", "csv", "'twin_emg_h5'"),
    ("prepare.emg.bandpass_hz", [1000.0, 20.0], "low must be below high"),
    ("edm.lib_fraction", 1.0, "less than 1"),
    ("edm.tau", 0, "non-zero"),
    ("edm.analyses.sim_biceps_from_joints.kind", "nope", "'sim' or 'emg'"),
    ("track.ctrl_cost_weights", [], "at least 1 item"),
])
def test_wrong_types_and_values_are_refused_with_their_key(key, value, says):
    msg = _error({key: value})
    assert f"'{key}'" in msg and says in msg, msg


@pytest.mark.parametrize("key,value,named", [
    ("stac.initial_offsets_mm", [[1.7, 0.7, 1.5], [-0.4, 0.1]], "stac.initial_offsets_mm[1]"),
    ("stac.initial_offsets_mm", [[1.7, 0.7, 1.5]], "stac.initial_offsets_mm"),
    ("twin.offsets_mm.mean", [[1.7, 0.7, 1.5], [1, 2, 3], [1, 2, 3], [1, 2, 3]], "twin.offsets_mm.mean"),
    ("track.ppo.num_minibatches", 3, "track.ppo.batch_size"),
    ("track.network.init_std", 0.0005, "track.network.init_std"),
    ("twin.emg.channels", ["biceps", "deltoid"], "twin.emg.channels"),
    ("edm.analyses.emg_biceps_from_joints_actions.channel", "deltoid",
     "edm.analyses.emg_biceps_from_joints_actions.channel"),
    ("edm.analyses.sim_biceps_from_joints.channel", "biceps", "edm.analyses.sim_biceps_from_joints.channel"),
])
def test_cross_field_checks_name_the_key(key, value, named):
    assert f"'{named}'" in _error({key: value})


@pytest.mark.parametrize("key", ["track.ppo", "twin", "stac.lm_tol", "data.emg.format", "latents"])
def test_a_missing_section_or_key_is_an_error_not_a_default(key):
    assert f"'{key}': missing" in _error({key: DELETE})


def test_several_problems_are_listed_together():
    msg = _error({"stac.lm_tol": -1, "edm.Tpp": 3})
    assert "2 problems" in msg and "'stac.lm_tol'" in msg and "'edm.Tpp'" in msg


def test_profiles_are_checked_merged_over_the_base_even_when_not_selected():
    assert _error({"track.profile": "gpu"}).endswith(
        "'track.profile': 'gpu' is not defined; defined profiles: cpu (the base values), paper")
    msg = _error({"track.profiles.paper.ppo.num_env": 8})   # a typo while profile: cpu
    assert "'track.profiles.paper.ppo.num_env': unknown key; did you mean 'track.profiles.paper.ppo.num_envs'?" in msg
    assert "'track.profiles.paper.physics.solver'" in _error({"track.profiles.paper.physics.solver": "lu"})
    # A merge that breaks a cross-field check: 8 minibatches of 1,024 sequences do not fill unrolls of 4098 envs.
    bad = repo_params()
    bad["track"]["profiles"]["paper"]["ppo"].update(num_envs=4098)
    with pytest.raises(ParamsError, match=r"track\.profiles\.paper\.ppo\.batch_size"):
        as_params(bad)


def test_a_profile_overrides_only_what_it_sets():
    p = repo_params({"track.profile": "fast", "track.profiles": {"fast": {"ppo": {"num_envs": 1024, "batch_size": 256}}}})
    t = as_params(p).track
    assert t.ppo.num_envs == 1024 and t.ppo.unroll_length == p["track"]["ppo"]["unroll_length"]
    assert t.physics == as_params(repo_params()).track.physics


def test_the_offsets_are_written_once():
    p = repo_params()
    assert p["stac"]["initial_offsets_mm"] == p["twin"]["offsets_mm"]["mean"]
    assert "initial_offsets_mm: *typical_offsets" in (ROOT / "params.yaml").read_text()


def test_a_twin_made_with_other_settings_is_named(tmp_path):
    from mimic_core.data.prepare import check_twin

    manifest = json.loads((ROOT / "data/raw/twin/manifest.json").read_text()) if (
        ROOT / "data/raw/twin/manifest.json").is_file() else None
    p = repo_params({"data.keypoints.glob": str(tmp_path / "pose-3d" / "*.csv")})
    recorded = {**p["twin"], "n_trials": 6}
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"generator": "mimic-bench make-twin", "seed": 0, "params": recorded}))
    with pytest.raises(ParamsError, match=r"manifest\.json: the twin on disk was made with other settings.*"
                                          r"twin\.n_trials.*mimic-bench make-twin"):
        check_twin(as_params(p))
    check_twin(as_params(repo_params({"data.keypoints.glob": str(tmp_path / "pose-3d" / "*.csv"),
                                      "twin.n_trials": 6})))   # the same settings: no error
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"generator": "mimic-bench make-twin", "seed": 3, "params": p["twin"]}))
    with pytest.raises(ParamsError, match=r"twin\.seed"):    # made with --seed 3
        check_twin(as_params(p))
    check_twin(as_params({**p, "data": {**p["data"], "label": "real"}}))   # real data: not checked
    if manifest is not None:   # the twin tracked by data.dvc was made with the repository's params
        check_twin(as_params(repo_params()))
