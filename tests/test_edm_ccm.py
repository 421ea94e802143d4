"""CCM against pyEDM 2.5.7 itself (the same seed: the same libraries, |delta rho| < 1e-6, here ~1e-16), on
pyEDM's sample data and on integer data whose tied distances pyEDM's KD-tree breaks; the convergence
test; the CLI and its bad input."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bench.cli import main
from mimic_core.edm.ccm import ccm, convergence, pyedm_neighbours
from mimic_core.errors import DataError
from helpers import edm_frame

pyEDM = pytest.importorskip("pyEDM")
TOL = 1e-6



def _lorenz():
    return pyEDM.sampleData["Lorenz5D"].iloc[:500]


# (data, columns, target, libSizes, sample, E, Tp, tau, exclusionRadius, seed)
CASES = [
    ("sardine_anchovy_sst", "anchovy", "np_sst", [10, 20, 40, 60, 75], 30, 3, 0, -1, 0, 7),
    ("Lorenz", "V1", "V3", [10, 60, 200, 350, 495], 20, 3, 0, -1, 0, 3),        # small and large libraries
    ("Lorenz", "V1", "V3", [10, 60, 300, 480], 20, 2, 1, -2, 5, 4),             # Tp, tau, exclusion radius
    ("Lorenz", "V1 V2", "V3", [10, 100, 490], 10, 2, 0, -1, 0, 5),              # multivariate columns
    ("Lorenz", "V2", "V4", [8, 50, 480], 10, 2, -1, 2, 0, 6),                   # tau > 0, Tp < 0
    ("ties", "a", "b", [10, 50, 150, 298], 20, 2, 0, -1, 0, 11),                # tied and zero distances
    ("ties", "b", "a", [10, 40, 120, 290], 20, 3, 1, -1, 3, 12),                # ties and a radius
]


def _frame(name):
    return edm_frame(name, {"Lorenz": _lorenz})


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)).replace(" ", "_"))
def test_ccm_matches_pyedm(case):
    name, col, tgt, sizes, sample, E, Tp, tau, xr, seed = case
    df = _frame(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pyEDM.CCM(dataFrame=df, columns=col, target=tgt, libSizes=sizes, sample=sample, E=E, Tp=Tp, tau=tau,
                        exclusionRadius=xr, seed=seed, includeData=True, parallel=False)
    ours = ccm(df, col, tgt, sizes, sample=sample, E=E, Tp=Tp, tau=tau, exclusion_radius=xr, seed=seed)
    c0, t0 = col.split()[0], tgt.split()[0]
    np.testing.assert_array_equal(ref["LibSize"], ours.lib_sizes)
    assert np.abs(ref[f"{c0}:{t0}"].to_numpy() - ours.rho_x_to_y).max() < TOL
    assert np.abs(ref[f"{t0}:{c0}"].to_numpy() - ours.rho_y_to_x).max() < TOL
    assert np.abs(ref[f"{c0}:{t0}_var"].to_numpy() - ours.var_x_to_y).max() < TOL
    assert np.abs(ref[f"{t0}:{c0}_var"].to_numpy() - ours.var_y_to_x).max() < TOL


def test_valid_lib_matches_pyedm():
    df = _lorenz()
    ok = np.ones(len(df), bool)
    ok[:50] = ok[300:380] = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pyEDM.CCM(dataFrame=df, columns="V1", target="V3", libSizes=[10, 100, 360], sample=10, E=3, seed=2,
                        validLib=ok, parallel=False)
    ours = ccm(df, "V1", "V3", [10, 100, 360], sample=10, E=3, seed=2, valid_lib=ok)
    assert np.abs(ref["V1:V3"].to_numpy() - ours.rho_x_to_y).max() < TOL
    assert np.abs(ref["V3:V1"].to_numpy() - ours.rho_y_to_x).max() < TOL
    assert ours.n_valid == (370, 370)     # as in pyEDM the mask drops rows, not the lags of the rows kept


def test_large_data_takes_pyedms_path_with_the_same_result(monkeypatch):
    import mimic_core.edm.ccm as ccm_module

    df = _lorenz().iloc[:300]
    a = ccm(df, "V1", "V3", [10, 100, 290], sample=4, seed=1)
    monkeypatch.setattr(ccm_module, "_DENSE_MAX", 10)
    b = ccm(df, "V1", "V3", [10, 100, 290], sample=4, seed=1)
    np.testing.assert_allclose(a.samples, b.samples, rtol=0, atol=1e-14)


def test_ties_are_broken_by_pyedms_tree():
    """On the integer data most rows tie for the last neighbour; the first k of an exact sort by distance
    would then pick other rows than pyEDM's KD-tree, and a different rho."""
    from scipy.spatial.distance import cdist

    df = edm_frame("ties")
    X = np.column_stack([df["a"].to_numpy()[1:], df["a"].to_numpy()[:-1]])
    t = np.arange(1, len(df))
    rng = np.random.default_rng(0)
    lib = np.sort(rng.choice(len(X), 40, replace=False))
    rows = np.arange(len(X))
    nn, d, short = pyedm_neighbours(X, t, lib, rows, 3, 0)
    D = cdist(X, X[lib])
    D[lib[None, :] == rows[:, None]] = np.inf
    by_sort = lib[np.argsort(D, axis=1, kind="stable")[:, :3]]
    assert not short.any()
    np.testing.assert_allclose(np.sort(d, axis=1), np.sort(D, axis=1)[:, :3])      # the same distances ...
    assert (np.sort(nn, axis=1) != np.sort(by_sort, axis=1)).any(axis=1).mean() > 0.2   # ... other rows


def test_same_seed_same_result_and_sequential_libraries():
    df = _lorenz()
    a = ccm(df, "V1", "V3", [20, 200], sample=5, seed=9)
    b = ccm(df, "V1", "V3", [20, 200], sample=5, seed=9)
    np.testing.assert_array_equal(a.samples, b.samples)
    seq = ccm(df, "V1", "V3", [20, 200], sample=5, random=False)
    assert seq.samples.shape == (2, 2, 1)
    # the first L valid rows: the same as a simplex of the first L rows predicting every row (leave one out)
    assert np.isfinite(seq.samples).all()


def test_convergence_on_a_coupled_pair():
    """Lorenz V1 and V3 are coupled: cross-map skill rises with the library and saturates."""
    res = ccm(_lorenz(), "V1", "V3", [10, 30, 100, 300, 495], sample=20, seed=1)
    conv = convergence(res)
    for key in ("x_to_y", "y_to_x"):
        c = conv[key]
        assert c["rho_max_lib"] > c["rho_min_lib"] + 0.1
        assert c["slope_per_1000"] > 0 and c["kendall_tau"] == pytest.approx(1.0) and c["mann_whitney_p"] < 1e-3


def test_bad_input():
    df = _lorenz()
    with pytest.raises(DataError, match="larger than the library"):
        ccm(df, "V1", "V3", [10, 499], E=3)
    with pytest.raises(DataError, match="below E"):
        ccm(df, "V1", "V3", [4], E=3)
    with pytest.raises(DataError, match="constant"):
        ccm(df.assign(C=1.0), "C", "V3", [10])
    with pytest.raises(DataError, match="sample"):
        ccm(df, "V1", "V3", [10], sample=0)
    with pytest.raises(DataError, match="not found"):
        ccm(df, "V9", "V3", [10])


def _cli(tmp_path, *args):
    csv = tmp_path / "d.csv"
    if not csv.exists():
        _lorenz().to_csv(csv, index=False)
    return CliRunner().invoke(main, ["ccm", "--csv", str(csv), "--columns", "V1", "--target", "V3", *args])


def test_cli_json_matches_the_api(tmp_path):
    r = _cli(tmp_path, "--lib-sizes", "10-210:100", "--sample", "5", "--seed", "2", "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    api = ccm(_lorenz(), "V1", "V3", [10, 110, 210], sample=5, seed=2)
    assert [x["lib_size"] for x in rows] == [10, 110, 210]
    np.testing.assert_allclose([x["rho_x_to_y"] for x in rows], api.rho_x_to_y, rtol=0, atol=1e-15)
    np.testing.assert_allclose([x["rho_y_to_x"] for x in rows], api.rho_y_to_x, rtol=0, atol=1e-15)
    r = _cli(tmp_path, "--lib-sizes", "10,100", "--sample", "3", "--seed", "2", "--out", str(tmp_path / "o.csv"))
    assert r.exit_code == 0 and "xmap" in r.output
    assert list(pd.read_csv(tmp_path / "o.csv").columns) == ["lib_size", "rho_x_to_y", "rho_y_to_x", "var_x_to_y",
                                                            "var_y_to_x"]


@pytest.mark.parametrize("args, says", [
    (["--lib-sizes", "10,900"], "'--lib-sizes': library size 900 is larger than the library"),
    (["--lib-sizes", "ten"], "'--lib-sizes': expected an integer"),
    (["--lib-sizes", "10", "--sample", "0"], "'--sample': must be >= 1"),
    (["--lib-sizes", "10", "--lib", "400", "600"], "'--lib': rows 400 600 are not within 1..500"),
    (["--lib-sizes", "10", "--tau", "0"], "tau must be non-zero"),
])
def test_cli_bad_input(tmp_path, args, says):
    out = tmp_path / "o.csv"
    r = _cli(tmp_path, *args, "--out", str(out))
    assert r.exit_code == 1 and says in r.output, r.output
    assert not out.exists()
