"""Surrogates: Ebisuzaki phase randomisation keeps the periodogram (exactly, up to the rescale), the clip
methods respect trial boundaries, and on two unrelated smooth series the shuffled-target null calls a
spurious prediction significant where the phase-randomised null does not."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bench.cli import main
from mimic_core.edm import simplex_surrogates
from mimic_core.edm.simplex import shuffled_targets
from mimic_core.edm.surrogates import clip_runs, ebisuzaki, make_surrogates
from mimic_core.errors import DataError


def _smooth(n, seed, width=15):
    rng = np.random.default_rng(seed)
    k = np.exp(-0.5 * (np.arange(-3 * width, 3 * width + 1) / width) ** 2)
    return np.convolve(rng.standard_normal(n + 6 * width), k / k.sum(), mode="valid")[:n]


@pytest.mark.parametrize("n", [200, 201])
def test_ebisuzaki_keeps_the_spectrum_mean_and_sd(n):
    y = _smooth(n, 0) + 2.0
    S = ebisuzaki(y, 5, np.random.default_rng(1))
    a = np.abs(np.fft.rfft(y - y.mean()))
    K = a.size - (1 if n % 2 == 0 else 0)          # the Nyquist term is redrawn (even n)
    for s in S:
        b = np.abs(np.fft.rfft(s - s.mean()))
        ratio = b[1:K] / a[1:K]
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-9)      # one scale for every frequency
        assert abs(s.mean() - y.mean()) < 1e-12 and abs(s.std() - y.std()) < 1e-12
    assert np.corrcoef(S[0], y)[0, 1] < 0.9 and not np.allclose(S[0], S[1])


def test_same_seed_same_surrogates_and_shuffle_is_the_old_one():
    y = _smooth(100, 3)
    np.testing.assert_array_equal(make_surrogates(y, "ebisuzaki", 4, 7), make_surrogates(y, "ebisuzaki", 4, 7))
    assert not np.array_equal(make_surrogates(y, "ebisuzaki", 4, 7), make_surrogates(y, "ebisuzaki", 4, 8))
    np.testing.assert_array_equal(make_surrogates(y, "random_shuffle", 4, 7), shuffled_targets(y, 4, 7))


def test_clip_methods_stay_inside_their_clips():
    lens = [60, 60, 80, 50]
    clips = np.repeat(np.arange(4), lens)
    y = np.concatenate([_smooth(m, 10 + i) + 5 * i for i, m in enumerate(lens)])
    runs = clip_runs(clips)
    E = make_surrogates(y, "clip_ebisuzaki", 3, 0, clips)
    for r in runs:      # each clip keeps its own mean and sd
        np.testing.assert_allclose(E[:, r].mean(axis=1), y[r].mean(), atol=1e-12)
        np.testing.assert_allclose(E[:, r].std(axis=1), y[r].std(), atol=1e-12)
    W = make_surrogates(y, "clip_swap", 20, 0, clips)
    for s in W:
        # clips 0 and 1 have one length: a swap between them copies the donor exactly; no clip keeps its own
        for i, r in enumerate(runs):
            assert not np.allclose(s[r], y[r])
        donor0 = [j for j, q in enumerate(runs) if np.allclose(np.interp(np.linspace(0, 1, 60),
                                                                          np.linspace(0, 1, q.stop - q.start),
                                                                          y[q]), s[runs[0]])]
        assert len(donor0) == 1 and donor0[0] != 0


def test_clip_errors():
    y = np.arange(10.0)
    with pytest.raises(DataError, match="contiguous"):
        make_surrogates(y, "clip_swap", 2, 0, [0, 0, 1, 1, 0, 0, 2, 2, 2, 2])
    with pytest.raises(DataError, match="at least 2 clips"):
        make_surrogates(y, "clip_swap", 2, 0, [0] * 10)
    with pytest.raises(DataError, match="needs a clip label"):
        make_surrogates(y, "clip_ebisuzaki", 2, 0)
    with pytest.raises(DataError, match="unknown surrogate method"):
        make_surrogates(y, "twaddle", 2, 0)


def test_phase_randomised_null_is_not_fooled_by_autocorrelation():
    """x and y are independent smooth noise: predicting y from x's embedding over one library (leave one
    out, no exclusion radius) borrows y from temporally adjacent rows, so rho is high.  Shuffled targets have no serial structure, so
    they call it significant; Ebisuzaki surrogates keep y's autocorrelation and do not."""
    n = 600
    df = pd.DataFrame({"x": _smooth(n, 1), "y": _smooth(n, 2)})
    kw = dict(E=3, Tp=1, n_surrogates=99, seed=0)
    shuf = simplex_surrogates(df, "x", "y", "1 600", "1 600", method="random_shuffle", **kw)
    ebi = simplex_surrogates(df, "x", "y", "1 600", "1 600", method="ebisuzaki", **kw)
    assert shuf.rho == ebi.rho and shuf.rho > 0.5
    assert shuf.p_value == pytest.approx(0.01) and shuf.null_p95 < shuf.rho
    assert ebi.p_value > 0.05 and ebi.null_mean > shuf.null_mean + 0.2


def test_surrogates_cli(tmp_path):
    n = 300
    csv = tmp_path / "d.csv"
    pd.DataFrame({"clip": np.repeat(["a", "b", "c"], 100), "x": _smooth(n, 1), "y": _smooth(n, 2)}).to_csv(csv,
                                                                                                             index=False)
    base = ["surrogates", "--csv", str(csv), "--columns", "x", "--target", "y", "--lib", "1", "150", "--pred", "151",
            "300", "--n-surrogates", "19"]
    r = CliRunner().invoke(main, base + ["--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    api = simplex_surrogates(pd.read_csv(csv), "x", "y", "1 150", "151 300", n_surrogates=19, method="ebisuzaki")
    assert out["method"] == "ebisuzaki" and out["p_value"] == api.p_value and out["rho"] == api.rho
    r = CliRunner().invoke(main, base + ["--method", "clip_swap", "--clip-column", "clip", "--out",
                                         str(tmp_path / "null.csv")])
    assert r.exit_code == 0 and "clip_swap null" in r.output, r.output
    assert len(pd.read_csv(tmp_path / "null.csv")) == 19
    r = CliRunner().invoke(main, base + ["--method", "clip_ebisuzaki"])
    assert r.exit_code == 1 and "'--clip-column': --method clip_ebisuzaki needs --clip-column" in r.output
    r = CliRunner().invoke(main, base + ["--method", "clip_swap", "--clip-column", "nope"])
    assert r.exit_code == 1 and "'nope': clip column not found" in r.output
