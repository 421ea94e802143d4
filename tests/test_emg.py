"""EMG processing: the band-pass removes what it must, the envelope follows activity, epochs are exact."""
import numpy as np
import pytest

from mimic_core.config import PrepareEmg, validate
from mimic_core.data.emg import check_rate, envelope, epoch, prepare_emg
from mimic_core.artifacts import EmgData
from mimic_core.errors import DataError

CFG = validate(PrepareEmg, {"bandpass_hz": [20.0, 1000.0], "bandpass_order": 4, "envelope_lowpass_hz": 50.0,
                            "envelope_order": 4, "scale_percentile": 98.0, "epoch_s": 0.3, "fps": 200})
FS = 30000.0


def _emg(x, fs=FS, onset=0.1, source="rec.h5"):
    x = np.asarray(x, float)
    return EmgData(x.reshape(len(x), -1), ("biceps",), fs, onset, source)


def test_band_pass_removes_artefact_and_high_frequency_noise():
    t = np.arange(int(0.5 * FS)) / FS
    out_of_band = 100 * np.sin(2 * np.pi * 3 * t) + 40 * np.sin(2 * np.pi * 4000 * t)
    in_band = 10 * np.sin(2 * np.pi * 200 * t)
    env_out = envelope(_emg(out_of_band), CFG)
    env_in = envelope(_emg(in_band), CFG)
    core = slice(3000, -3000)  # away from the record's edges
    assert env_out[core].max() < 0.05 * env_in[core].mean()
    # A rectified sine's mean is 2/pi of its amplitude.
    assert env_in[core].mean() == pytest.approx(10 * 2 / np.pi, rel=0.02)


def test_envelope_is_zero_phase():
    rng = np.random.default_rng(0)
    t = np.arange(int(0.5 * FS)) / FS
    burst = np.exp(-0.5 * ((t - 0.25) / 0.02) ** 2)
    env = envelope(_emg(burst * rng.standard_normal(len(t))), CFG)[:, 0]
    assert abs(t[np.argmax(env)] - 0.25) < 0.005


def test_rate_below_twice_the_band_pass_top_is_an_error():
    with pytest.raises(DataError, match=r"slow\.h5.*'fs'"):
        check_rate(_emg(np.zeros(100), fs=1500.0, source="slow.h5"), CFG)


def test_epoch_length_and_bounds():
    env = np.ones((int(0.5 * FS), 2))
    assert epoch(env, FS, 0.1, CFG).shape == (60, 2)
    with pytest.raises(DataError, match=r"late\.h5.*onset_s"):
        epoch(env, FS, 0.3, CFG, "late.h5")


def test_scaled_to_the_percentile_per_channel():
    rng = np.random.default_rng(1)
    n = int(0.5 * FS)
    trials = [EmgData(rng.standard_normal((n, 2)) * [1.0, 5.0], ("a", "b"), FS, 0.1, f"t{i}.h5") for i in range(3)]
    ep, scale = prepare_emg(trials, CFG)
    assert ep.shape == (3, 60, 2)
    np.testing.assert_allclose(np.percentile(ep.reshape(-1, 2), 98, axis=0), 1.0)
    assert scale[1] == pytest.approx(5 * scale[0], rel=0.1)


def test_silent_channel_and_missing_onset_are_errors():
    n = int(0.5 * FS)
    with pytest.raises(DataError, match="no signal"):
        prepare_emg([EmgData(np.zeros((n, 1)), ("a",), FS, 0.1, "zero.h5")], CFG)
    with pytest.raises(DataError, match=r"x\.h5.*onset_s"):
        prepare_emg([EmgData(np.ones((n, 1)), ("a",), FS, None, "x.h5")], CFG)
