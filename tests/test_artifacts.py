"""Tests for mimic_core.artifacts: round trips, named errors, the name helper, and that the writers
write the same bytes as the code they replaced (the pipeline's artifacts must not change)."""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from mimic_core import artifacts
from mimic_core.errors import DataError

KMAP = {"Shoulder": "scapula", "Elbow": "elbow", "Wrist": "wrist_body"}

# sha256 of what the writers wrote at 726a2b2, before mimic_core.artifacts, for the inputs below
# (h5py 3.16, HDF5 2.0.0). Another HDF5 library may lay the same file out differently.
OLD_DIGESTS = {
    "keypoints.h5": "5c5ef2d3565f2c6ed513627a84158674d49145dafa8a93b29769d491dddda086",
    "emg.h5": "2de739a2cd495ca74d933dc590e2bf66d91ad44b5480a37c1b14ad4e2fd764d6",
    "registered.h5": "4434a4f15b3a6ff4cf247c69a38c7a7d2b230f914ce93cd701e27624027c85a7",
    "rollout.h5": "24c0a0aeab9c6441186f021f160fca8f5513c710ff51347a5d5f1aeccb797e26",
    "truth.h5": "70f34ae43c6275a324de13443c4fef2504c811b3002835ae8015799e8113430e",
    "twin_emg.h5": "65e0d734dfb9ce3b0699e146b033bf56cd30fd9fc85c7f3e07e33816f42af536",
}
OLD_HDF5 = "2.0.0"


# --------------------------------------------------------------------------- inputs


def prepared_inputs() -> dict:
    rng = np.random.default_rng(1)
    kp = rng.normal(0, 3e-3, (2, 5, 3, 3))
    kp[0, 1, 2] = np.nan
    return dict(kp=kp, valid=np.isfinite(kp).all(-1), clips=["trial01", "trial02"], kp_names=tuple(KMAP),
                fps=200.0, label="synthetic", env=rng.random((2, 4, 2)), channels=["biceps", "triceps"],
                onsets=[0.1, 0.2], scale=np.array([2.0, 3.0]), emg_fps=200.0, epoch_s=0.02)


def prepared_keypoints() -> artifacts.PreparedKeypoints:
    p = prepared_inputs()
    return artifacts.PreparedKeypoints(p["clips"], p["kp_names"], p["kp"], p["valid"], p["fps"], p["label"])


def prepared_emg() -> artifacts.PreparedEmg:
    p = prepared_inputs()
    return artifacts.PreparedEmg(p["env"], p["channels"], p["clips"], np.array(p["onsets"]), p["scale"],
                                 p["emg_fps"], p["epoch_s"], p["label"])


def registration(fm):
    from mimic_core.stac.register import Registration

    rng = np.random.default_rng(2)
    C, T, K = 2, 6, 3
    kp = rng.normal(0, 3e-3, (C, T, K, 3))
    kp[1, 2, 0] = np.nan
    qpos = np.zeros((C, T, len(fm.joint_names)))     # zero angles: the kinematics are exact on any CPU
    return Registration(["a", "b"], tuple(KMAP), kp, qpos, rng.normal(0, 1e-3, (C, K, 3)),
                        rng.normal(0, 1e-3, (C, T, K, 3)), 200.0, np.gradient(qpos, 1 / 200.0, axis=1),
                        {"mode": "per_frame"})


def rollout_inputs(fm):
    from mimic_core.track.reference import ReferenceClips

    rng = np.random.default_rng(3)
    C, T, nq, nu, K = 2, 5, len(fm.joint_names), len(fm.muscle_names), 3
    clips = ReferenceClips(["a", "b"], fm.joint_names, rng.random((C, T, nq)), rng.random((C, T, nq)),
                           rng.random((C, K, 3)), rng.random((C, T, K, 3)), 200.0, "synthetic")
    rec = {"qpos": rng.random((C, T, nq)), "ctrl": rng.random((C, T - 1, nu)), "act": rng.random((C, T, nu)),
           "force": rng.random((C, T - 1, nu)), "velocity": rng.random((C, T - 1, nu)),
           "latent": rng.random((C, T - 1, 4)).astype(np.float32), "reward_joint": rng.random((C, T - 1)),
           "decoder_layer_0": rng.random((C, T - 1, 6)).astype(np.float32),
           "decoder_layer_1": rng.random((C, T - 1, 6)).astype(np.float32)}
    return rec, rng.random((C, T, K, 3)), clips


def trial(fm):
    from mimic_core.data.twin import Trial

    rng = np.random.default_rng(4)
    F, nq, K, nu = 6, len(fm.joint_names), 3, len(fm.muscle_names)
    return Trial("trial01", rng.random((F, nq)), rng.random((F, nq)), rng.random((F, nq)), rng.random((F, nq)), 2,
                 rng.random((K, 3)), rng.random((F, K, 3)), rng.random((F, K, 3)), rng.random((F, nu)),
                 rng.random((F, nu)), rng.random(F), rng.normal(0, 10, (60, 2)))


def write_all(fm, out: Path) -> None:
    """Every format, through the entry points the pipeline calls."""
    from mimic_core.data.twin import write_truth_h5
    from mimic_core.stac.register import write_registered_h5
    from mimic_core.track.evaluate import write_rollout

    artifacts.write_prepared_keypoints(out / "keypoints.h5", prepared_keypoints())
    artifacts.write_prepared_emg(out / "emg.h5", prepared_emg())
    write_registered_h5(out / "registered.h5", registration(fm), 1, fm, {"model": "m.xml", "stac": {"a": 1}},
                        "synthetic")
    rec, kp, clips = rollout_inputs(fm)
    write_rollout(out / "rollout.h5", rec, kp, clips, fm, "0.15", "synthetic")
    tr = trial(fm)
    write_truth_h5(out / "truth.h5", tr, fm, 200.0)
    artifacts.write_twin_emg(out / "twin_emg.h5", tr.emg.astype(np.float32), ["biceps", "triceps"], 3000.0,
                             onset_s=0.01, label="synthetic")


@pytest.fixture(scope="module")
def written(fm, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("artifacts")
    write_all(fm, out)
    return out


# --------------------------------------------------------------------------- byte identity


@pytest.mark.parametrize("name", sorted(OLD_DIGESTS))
def test_writers_write_the_old_bytes(written, name):
    if h5py.version.hdf5_version != OLD_HDF5:
        pytest.skip(f"digests recorded with HDF5 {OLD_HDF5}, this is {h5py.version.hdf5_version}")
    assert hashlib.sha256((written / name).read_bytes()).hexdigest() == OLD_DIGESTS[name], name


def test_writers_are_deterministic(fm, written, tmp_path):
    write_all(fm, tmp_path)
    for name in OLD_DIGESTS:
        assert (tmp_path / name).read_bytes() == (written / name).read_bytes(), name


def test_read_then_write_gives_the_same_bytes(written, tmp_path):
    """What a reader returns carries everything its writer needs to write the file again."""
    again = {
        "keypoints.h5": lambda p: artifacts.write_prepared_keypoints(p, artifacts.read_prepared_keypoints(
            written / "keypoints.h5")),
        "emg.h5": lambda p: artifacts.write_prepared_emg(p, artifacts.read_prepared_emg(written / "emg.h5")),
        "registered.h5": lambda p: artifacts.write_registered(p, artifacts.read_registered(written / "registered.h5")),
        "rollout.h5": lambda p: artifacts.write_rollout(p, artifacts.read_rollout(written / "rollout.h5")),
        "truth.h5": lambda p: artifacts.write_truth(p, artifacts.read_truth(written / "truth.h5")),
    }
    for name, write in again.items():
        write(tmp_path / name)
        assert (tmp_path / name).read_bytes() == (written / name).read_bytes(), name


# --------------------------------------------------------------------------- round trips


def test_prepared_keypoints_round_trip(written):
    kp, back = prepared_keypoints(), artifacts.read_prepared_keypoints(written / "keypoints.h5")
    assert back.clip_names == kp.clip_names and back.kp_names == kp.kp_names
    assert back.fps == kp.fps and back.label == "synthetic" and back.keypoints.dtype == np.float64
    np.testing.assert_array_equal(back.valid, kp.valid)
    np.testing.assert_allclose(back.keypoints, kp.keypoints, rtol=1e-6)   # float32 on disk, NaN where missing


def test_prepared_emg_round_trip(written):
    emg, back = prepared_emg(), artifacts.read_prepared_emg(written / "emg.h5")
    assert (back.channels, back.clip_names, back.fps, back.epoch_s, back.label) == \
        (emg.channels, emg.clip_names, emg.fps, emg.epoch_s, emg.label)
    np.testing.assert_allclose(back.envelope, emg.envelope, rtol=1e-6)
    np.testing.assert_array_equal(back.onset_s, emg.onset_s)
    np.testing.assert_array_equal(back.scale_uv, emg.scale_uv)
    assert back.channel("triceps") == 1 and back.path == written / "emg.h5"
    with pytest.raises(DataError, match="emg.h5: field 'channels'.*deltoid"):
        back.channel("deltoid")


def test_registered_round_trip(fm, written):
    reg, back = registration(fm), artifacts.read_registered(written / "registered.h5")
    assert back.names_qpos == fm.joint_names and back.kp_names == list(KMAP) and back.fps == 200.0
    assert back.label == "synthetic" and "stac" in back.config
    np.testing.assert_allclose(back.offsets, reg.offsets[1], rtol=1e-6)
    np.testing.assert_allclose(back.kp_data, reg.keypoints[1].reshape(6, -1), rtol=1e-6)
    assert np.isnan(back.kp_data).sum() == 3 and back.xpos.shape == (6, fm.model.nbody, 3)


def test_real_clips_read_in_the_same_schema():
    real = sorted((Path(__file__).resolve().parents[2] / "shared/real/mouse_arm_clips").glob("*.h5"))
    if not real:
        pytest.skip("the real clips are not here")
    clip = artifacts.read_registered(real[0])
    assert clip.fps is None and clip.label is None        # stac-mjx stores no attributes
    assert clip.kp_names == list(KMAP) and clip.qpos.shape[1] == len(clip.names_qpos)


def test_rollout_round_trip(fm, written):
    rec, kp, clips = rollout_inputs(fm)
    ro = artifacts.read_rollout(written / "rollout.h5")
    assert (ro.clip_names, ro.joint_names, ro.muscle_names, ro.kp_names) == \
        (clips.clip_names, fm.joint_names, fm.muscle_names, list(KMAP))
    assert (ro.fps, ro.label, ro.weight) == (200.0, "synthetic", "0.15")
    np.testing.assert_allclose(ro["actions"], rec["ctrl"], rtol=1e-6)
    np.testing.assert_allclose(ro["keypoints"], kp, rtol=1e-6)
    assert list(ro.arrays)[-1] == "decoder_layer_1" and ro.muscle(fm.muscle_names[2]) == 2
    only = artifacts.read_rollout(written / "rollout.h5", ["latent"])
    assert list(only.arrays) == ["latent"]


def test_truth_round_trip(fm, written):
    tr, back = trial(fm), artifacts.read_truth(written / "truth.h5")
    for f in ("qpos", "qvel", "qacc", "qpos_intended", "offsets", "keypoints_clean", "activation", "excitation",
              "torque_residual"):
        np.testing.assert_array_equal(getattr(back, f), getattr(tr, f), err_msg=f)
    assert (back.names_qpos, back.kp_names, back.muscle_names) == (fm.joint_names, list(KMAP), fm.muscle_names)
    assert (back.fps, back.onset_frame, back.label) == (200.0, 2, "synthetic")


def test_twin_emg_round_trip(fm, written):
    back = artifacts.read_twin_emg(written / "twin_emg.h5")
    np.testing.assert_array_equal(back.signals, trial(fm).emg.astype(np.float32))
    assert (back.channels, back.fs, back.onset_s) == (("biceps", "triceps"), 3000.0, 0.01)


# --------------------------------------------------------------------------- named errors


READERS = {
    "keypoints.h5": (artifacts.read_prepared_keypoints, "valid"),
    "emg.h5": (artifacts.read_prepared_emg, "scale_uv"),
    "registered.h5": (artifacts.read_registered, "marker_sites"),
    "rollout.h5": (artifacts.read_rollout, "muscle_names"),
    "truth.h5": (artifacts.read_truth, "activation"),
    "twin_emg.h5": (artifacts.read_twin_emg, "channels"),
}


@pytest.mark.parametrize("name", sorted(READERS))
def test_a_missing_field_is_named(written, tmp_path, name):
    read, field = READERS[name]
    path = tmp_path / name
    path.write_bytes((written / name).read_bytes())
    with h5py.File(path, "a") as f:
        del f[field]
    with pytest.raises(DataError, match=rf"{name}: field '{field}': missing dataset") as e:
        read(path)
    assert e.value.path == str(path) and e.value.field == field


@pytest.mark.parametrize("name", sorted(READERS))
def test_a_missing_or_foreign_file_is_named(tmp_path, name):
    read, _ = READERS[name]
    with pytest.raises(DataError, match="not found") as e:
        read(tmp_path / name)
    assert e.value.path == str(tmp_path / name)
    (tmp_path / name).write_text("not hdf5\n")
    with pytest.raises(DataError, match="not an HDF5 file"):
        read(tmp_path / name)


def test_readers_check_what_they_read(written, tmp_path):
    path = tmp_path / "truth.h5"
    path.write_bytes((written / "truth.h5").read_bytes())
    with h5py.File(path, "a") as f:
        f["qvel"][0, 0] = np.nan
    with pytest.raises(DataError, match="field 'qvel'.*NaN"):
        artifacts.read_truth(path)
    path = tmp_path / "rollout.h5"
    path.write_bytes((written / "rollout.h5").read_bytes())
    with h5py.File(path, "a") as f:
        del f["clip_names"]
        f["clip_names"] = np.array([b"a"])
    with pytest.raises(DataError, match="field 'qpos'.*1 clips"):
        artifacts.read_rollout(path)
    path = tmp_path / "emg.h5"
    path.write_bytes((written / "emg.h5").read_bytes())
    with h5py.File(path, "a") as f:
        f.attrs["epoch_s"] = 1.0
    with pytest.raises(DataError, match="field 'envelope'.*epoch_s"):
        artifacts.read_prepared_emg(path)


def test_writers_refuse_nan_and_incomplete_clips(tmp_path):
    kp = prepared_keypoints()
    with pytest.raises(ValueError, match="non-finite.*envelope"):
        artifacts.write_prepared_emg(tmp_path / "e.h5", dataclasses.replace(prepared_emg(),
                                                                            envelope=np.full((2, 4, 2), np.nan)))
    artifacts.write_prepared_keypoints(tmp_path / "k.h5", kp)     # NaN means missing there
    clip = artifacts.RegisteredClip(np.zeros((2, 1)), np.zeros((2, 1)), np.zeros((1, 3)), np.zeros((2, 1, 3)), ["j"])
    with pytest.raises(DataError, match="kp_data"):
        artifacts.write_registered(tmp_path / "r.h5", clip)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.h5"]


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("raw", [
    [b"a", b"b"], ["a", "b"], np.array([b"a", b"b"]), np.array(["a", "b"]), np.array(["a", "b"], dtype=object),
    np.array([b"a", "b"], dtype=object), ("a", b"b"),
])
def test_names_decodes_bytes_and_str(raw):
    assert artifacts.names(raw) == ["a", "b"]


def test_names_from_hdf5(tmp_path):
    with h5py.File(tmp_path / "n.h5", "w") as f:
        f["fixed"] = np.array([x.encode() for x in ("é", "b")])
        f.create_dataset("vlen", data=["é", "b"], dtype=h5py.string_dtype())
    with h5py.File(tmp_path / "n.h5") as f:
        assert artifacts.names(f["fixed"][()]) == artifacts.names(f["vlen"][()]) == ["é", "b"]
    assert artifacts.names([]) == []


def test_names_refuses_what_is_not_a_name_list():
    with pytest.raises(DataError, match="f.h5: field 'kp_names': expected a 1-D"):
        artifacts.names(np.array([[b"a"]]), "f.h5", "kp_names")
    with pytest.raises(DataError, match="dtype"):
        artifacts.names(np.arange(3), "f.h5", "kp_names")
    with pytest.raises(DataError, match="UTF-8"):
        artifacts.names([b"\xff"], "f.h5", "kp_names")
    with pytest.raises(DataError, match="expected strings"):
        artifacts.names(np.array([1, "a"], dtype=object), "f.h5", "kp_names")


def test_text_decodes_attributes():
    assert artifacts.text(None, "data", b"real") == artifacts.text(None, "data", np.array([b"real"])) == "real"
    with pytest.raises(DataError, match="field 'data'"):
        artifacts.text("f.h5", "data", 3.0)


# --------------------------------------------------------------------------- clip names become file names


@pytest.mark.parametrize("name", ["../../x", "/tmp/x", "a/b", "a\\b", "..", ".", ".hidden", "a..b", "", " x",
                                  "x y", "trial\x00", "é", "x" * 129])
def test_a_clip_name_that_is_not_a_file_name_is_refused(tmp_path, name):
    with pytest.raises(DataError, match="clip"):
        artifacts.check_clip_names("k.h5", "clip_names", ["trial01", name])
    with pytest.raises(DataError, match="clip"):
        artifacts.clip_file(tmp_path, name)
    kp = dataclasses.replace(prepared_keypoints(), clip_names=["trial01", name])
    with pytest.raises(DataError, match="clip"):
        artifacts.write_prepared_keypoints(tmp_path / "k.h5", kp)
    assert list(tmp_path.iterdir()) == []


def test_clip_names_are_unique_even_where_case_is_not(tmp_path):
    with pytest.raises(DataError, match="duplicate clip names 'Trial01' and 'trial01'"):
        artifacts.check_clip_names("k.h5", "clip_names", ["Trial01", "trial01"])
    assert artifacts.check_clip_names("k.h5", "clip_names", ["A36-1_2023-07-18_trial01_ik", "b.2"]) == \
        ["A36-1_2023-07-18_trial01_ik", "b.2"]
    assert artifacts.clip_file(tmp_path, "trial01") == tmp_path / "trial01.h5"


def test_a_prepared_file_with_an_escaping_clip_name_is_refused_on_read(written, tmp_path):
    path = tmp_path / "keypoints.h5"
    path.write_bytes((written / "keypoints.h5").read_bytes())
    with h5py.File(path, "r+") as f:
        names = f["clip_names"][()]
        names[0] = b"../../x"
        del f["clip_names"]
        f["clip_names"] = names
    with pytest.raises(DataError, match=r"keypoints.h5.*'clip_names'.*'\.\./\.\./x' cannot be a file name"):
        artifacts.read_prepared_keypoints(path)
