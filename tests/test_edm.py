"""mimic_core.edm against pyEDM 2.5.7 (a test-only oracle) and the `simplex` CLI."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from mimic_core.edm import embed, load_csv, simplex, simplex_scan, simplex_surrogates
from mimic_core.edm.simplex import shuffled_targets, surrogate_p_value
from mimic_core.errors import DataError

pyEDM = pytest.importorskip("pyEDM")

TOL = 1e-6

# (data set, columns, target, lib, pred, E, Tp, tau, exclusionRadius)
CASES = [
    ("block_3sp", "x_t", "x_t", "1 100", "101 195", 3, 1, -1, 0),            # disjoint
    ("block_3sp", "x_t y_t z_t", "x_t", "1 100", "51 150", 2, 5, -2, 5),    # multivariate, overlap
    ("block_3sp", "x_t", "y_t", "1 50 101 150", "40 120", 2, 1, -1, 0),     # disjoint library pairs
    ("Lorenz5D", "V1", "V1", "1 500", "501 800", 4, 0, -1, 0),
    ("Lorenz5D", "V1 V3", "V2", "1 500", "1 500", 3, 1, 1, 5),             # tau > 0, leave-out
    ("Lorenz5D", "V1", "V1", "1 300", "1 300", 5, 5, -2, 0),               # overlap, r = 0
    ("Lorenz5D", "V4", "V4", "201 900", "1 200", 3, -1, -1, 0),            # negative Tp
    ("TentMap", "TentMap", "TentMap", "1 500", "400 999", 3, 5, 2, 5),     # pred runs to data end
    ("circle", "x y", "x", "1 100", "101 198", 2, 5, -1, 0),
    ("sardine_anchovy_sst", "anchovy np_sst", "np_sst", "1 60", "61 78", 3, 1, -1, 0),
    ("sardine_anchovy_sst", "sardine", "sardine", "1 78", "1 78", 2, 0, -1, 5),
]


def _pyedm(name, cols, tgt, lib, pred, E, Tp, tau, xr):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pyEDM.Simplex(dataFrame=pyEDM.sampleData[name], columns=cols, target=tgt, lib=lib,
                             pred=pred, E=E, Tp=Tp, tau=tau, exclusionRadius=xr)


def _rho(o, p):
    ok = np.isfinite(o) & np.isfinite(p)
    return np.corrcoef(o[ok], p[ok])[0, 1]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)).replace(" ", "_"))
def test_simplex_matches_pyedm(case):
    name, cols, tgt, lib, pred, E, Tp, tau, xr = case
    ref = _pyedm(*case)
    df = pyEDM.sampleData[name]
    ours = simplex(df, cols, tgt, lib, pred, E=E, Tp=Tp, tau=tau, exclusion_radius=xr)
    o, p = ref["Observations"].to_numpy(), ref["Predictions"].to_numpy()
    # same output rows, same NaN padding
    assert len(ours.observations) == len(o)
    np.testing.assert_array_equal(np.isnan(ours.observations), np.isnan(o))
    np.testing.assert_array_equal(np.isnan(ours.predictions), np.isnan(p))
    np.testing.assert_allclose(ours.observations, o, atol=TOL, rtol=0)
    np.testing.assert_allclose(ours.predictions, p, atol=TOL, rtol=0)
    np.testing.assert_allclose(ours.variance, ref["Pred_Variance"].to_numpy(), atol=TOL, rtol=0)
    # output time column: rows inside the data map to the data's time
    t = df.iloc[:, 0].to_numpy()
    inside = (ours.rows >= 0) & (ours.rows < len(t))
    np.testing.assert_allclose(t[ours.rows[inside]], ref.iloc[:, 0].to_numpy()[inside])
    # statistics as ComputeError computes them (pyEDM rounds to 6 digits; its "MAE" is max(err))
    err = pyEDM.ComputeError(o, p)
    assert abs(ours.rho - _rho(o, p)) < TOL
    assert abs(ours.rho - err["rho"]) < TOL
    assert abs(ours.rmse - err["RMSE"]) < TOL
    assert abs(ours.max_error - err["MAE"]) < TOL
    ok = np.isfinite(o) & np.isfinite(p)
    assert ours.n == ok.sum()
    assert abs(ours.mae - np.mean(np.abs(o[ok] - p[ok]))) < TOL


def test_scan_matches_pyedm_grid():
    df = pyEDM.sampleData["block_3sp"]
    Es, Tps, taus = [1, 2, 4], [0, 1, 5], [-1, -2]
    scan = simplex_scan(df, "x_t y_t", ["x_t", "y_t"], "1 120", "100 190", E=Es, Tp=Tps, tau=taus,
                        exclusion_radius=5)
    assert scan["rho"].shape == (3, 2, 3, 2)
    worst = 0.0
    for i, E in enumerate(Es):
        for j, tau in enumerate(taus):
            for k, Tp in enumerate(Tps):
                for m, tgt in enumerate(["x_t", "y_t"]):
                    ref = _pyedm("block_3sp", "x_t y_t", tgt, "1 120", "100 190", E, Tp, tau, 5)
                    worst = max(worst, abs(scan["rho"][i, j, k, m]
                                           - _rho(ref.Observations.to_numpy(), ref.Predictions.to_numpy())))
    assert worst < TOL


def test_embed_matches_pyedm():
    df = pyEDM.sampleData["block_3sp"]
    for E, tau in [(3, -2), (2, 1), (1, -1)]:
        ref = pyEDM.Embed(dataFrame=df, E=E, tau=tau, columns="x_t y_t").to_numpy()
        np.testing.assert_array_equal(embed(df[["x_t", "y_t"]].to_numpy(), E, tau), ref)


def test_surrogates_equal_pyedm_on_shuffled_target():
    df = pyEDM.sampleData["Lorenz5D"].iloc[:400].copy()
    res = simplex_surrogates(df, "V1", "V1", "1 200", "201 390", E=3, Tp=1, n_surrogates=20, seed=3)
    shuf = shuffled_targets(df["V1"].to_numpy(), 20, 3)
    for s in (0, 7):
        d = df.copy()
        d["V1s"] = shuf[s]
        ref = pyEDM.Simplex(dataFrame=d, columns="V1", target="V1s", lib="1 200", pred="201 390", E=3, Tp=1)
        assert abs(res.null[s] - _rho(ref.Observations.to_numpy(), ref.Predictions.to_numpy())) < TOL
    assert res.rho > 0.9 and abs(res.null_mean) < 0.2
    assert res.p_value == pytest.approx(1 / 21)
    assert res.null_p95 == pytest.approx(np.percentile(res.null, 95))


def test_p_value_logic():
    p, mean, p95 = surrogate_p_value(0.5, [0.1, 0.5, 0.7, np.nan, -0.2])
    assert p == pytest.approx((1 + 2) / (1 + 4))
    assert mean == pytest.approx(np.mean([0.1, 0.5, 0.7, -0.2]))
    assert p95 == pytest.approx(np.percentile([0.1, 0.5, 0.7, -0.2], 95))
    assert surrogate_p_value(0.9, [0.1] * 99)[0] == pytest.approx(0.01)


# -------------------------------------------------------------------------------------- bad input
def _lorenz():
    return pyEDM.sampleData["Lorenz5D"]


@pytest.mark.parametrize("kwargs, field, text", [
    (dict(lib="0 100"), "lib", "below 1"),
    (dict(lib="1 1001"), "lib", "past the last"),
    (dict(pred="900 1200"), "pred", "past the last"),
    (dict(pred="300 200"), "pred", "start"),
    (dict(lib="1 100 200"), "lib", "pairs"),
    (dict(lib="1 10", E=8, tau=-2), "lib", "library"),
    (dict(columns="V9"), "V9", "not found"),
])
def test_bad_input(kwargs, field, text):
    args = dict(columns="V1", target="V1", lib="1 500", pred="501 900", E=3)
    args.update(kwargs)
    with pytest.raises(DataError) as ei:
        simplex(_lorenz(), **args)
    assert ei.value.field == field and text in str(ei.value)


def test_nan_rows_named():
    df = _lorenz().copy()
    df.loc[41, "V2"] = np.nan
    with pytest.raises(DataError) as ei:
        simplex(df, "V1 V2", "V1", "1 500", "501 900", E=2)
    assert ei.value.field == "V2" and "row 42" in str(ei.value)


def test_load_csv_errors(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("t,a,b\n1,1.0,2\n2,x,3\n3,4,\n")
    with pytest.raises(DataError, match="column not found") as ei:
        load_csv(p, ["c"], ["a"])
    assert ei.value.field == "c" and ei.value.path == str(p)
    with pytest.raises(DataError, match="non-numeric cell 'x' at data row 2"):
        load_csv(p, ["a"], ["a"])
    with pytest.raises(DataError, match="row 3 is empty"):
        load_csv(p, ["b"], ["b"])


# -------------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def lorenz_csv(tmp_path_factory):
    p = tmp_path_factory.mktemp("edm") / "lorenz.csv"
    _lorenz().iloc[:600].to_csv(p, index=False)
    return p


def test_cli_json_and_out(lorenz_csv, tmp_path):
    from click.testing import CliRunner
    from bench.cli.edm import simplex_cmd

    out = tmp_path / "pred.csv"
    r = CliRunner().invoke(simplex_cmd, ["--csv", str(lorenz_csv), "--columns", "V1 V3", "--target", "V1",
                                         "--E", "3", "--tau", "-1", "--Tp", "5", "--lib", "1", "300",
                                         "--pred", "301", "590", "--json", "--out", str(out)])
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    ref = pyEDM.Simplex(dataFrame=_lorenz().iloc[:600], columns="V1 V3", target="V1", lib="1 300",
                        pred="301 590", E=3, Tp=5)
    assert abs(got["rho"] - _rho(ref.Observations.to_numpy(), ref.Predictions.to_numpy())) < TOL
    assert set(got) == {"rho", "mae", "rmse", "n"}
    import pandas as pd
    written = pd.read_csv(out)
    np.testing.assert_allclose(written["Predictions"].to_numpy(), ref["Predictions"].to_numpy(), atol=TOL)


def test_cli_scan_table(lorenz_csv):
    from click.testing import CliRunner
    from bench.cli.edm import simplex_cmd

    r = CliRunner().invoke(simplex_cmd, ["--csv", str(lorenz_csv), "--columns", "V1", "--target", "V1",
                                         "--E", "1-4", "--Tp", "1", "--lib", "1", "300", "--pred", "301", "590"])
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert lines[0].split()[:2] == ["E", "rho"] and len(lines) == 5


def test_cli_errors(lorenz_csv):
    from click.testing import CliRunner
    from bench.cli.edm import simplex_cmd

    r = CliRunner().invoke(simplex_cmd, ["--csv", str(lorenz_csv), "--columns", "nope", "--target", "V1",
                                         "--lib", "1", "300", "--pred", "301", "590"])
    assert r.exit_code == 1 and "error:" in r.output and "nope" in r.output
    r = CliRunner().invoke(simplex_cmd, ["--csv", str(lorenz_csv), "--columns", "V1", "--target", "V1",
                                         "--lib", "1", "300", "--pred", "301", "5900"])
    assert r.exit_code == 1 and "past the last" in r.output


def test_cli_an_exclusion_radius_that_removes_every_neighbour_is_an_error(lorenz_csv):
    from click.testing import CliRunner
    from bench.cli.edm import simplex_cmd

    args = ["--csv", str(lorenz_csv), "--columns", "V1", "--target", "V1", "--lib", "1", "300", "--pred", "301", "590",
            "--exclusion-radius", "5000"]
    for extra in ([], ["--json"], ["--E", "1-3"]):
        r = CliRunner().invoke(simplex_cmd, [*args, *extra])
        assert r.exit_code == 1 and r.output.startswith("error: ") and "no row could be predicted" in r.output, \
            r.output


def test_cli_columns_with_spaces_and_duplicate_names(tmp_path):
    from click.testing import CliRunner
    from bench.cli.edm import simplex_cmd

    t = np.arange(200)
    p = tmp_path / "d.csv"
    p.write_text("joint angle,b\n" + "".join(f"{np.sin(0.3 * i)},{np.cos(0.2 * i)}\n" for i in t))
    base = ["--target", "b", "--lib", "1", "100", "--pred", "101", "190", "--json"]
    r = CliRunner().invoke(simplex_cmd, ["--csv", str(p), "--columns", "joint angle,b", *base])
    assert r.exit_code == 0 and json.loads(r.output)["n"] > 0, r.output
    dup = tmp_path / "dup.csv"
    dup.write_text("a,a,b\n" + "".join(f"{i},{-i},{i % 7}\n" for i in t))
    r = CliRunner().invoke(simplex_cmd, ["--csv", str(dup), "--columns", "a", *base])
    assert r.exit_code == 1 and "dup.csv" in r.output and "duplicate column names ['a']" in r.output, r.output


def test_dataframe_non_numeric_cells():
    import pandas as pd

    df = pd.DataFrame({"date": ["2020-01-%02d" % (i % 28 + 1) for i in range(60)],
                       "a": np.sin(np.arange(60) * 0.3), "b": ["1.0"] * 59 + ["oops"]})
    r = simplex(df, "a", "a", "1 30", "31 59", E=2)      # a non-numeric column not used is fine
    assert np.isfinite(r.rho)
    with pytest.raises(DataError) as ei:
        simplex(df, "a b", "a", "1 30", "31 59", E=2)
    assert ei.value.field == "b" and "row 60" in str(ei.value)


@pytest.mark.parametrize("cols, tgt, lib, pred, E, Tp, xr", [
    ("a", "a", "1 200", "201 390", 2, 1, 0),      # 16 distinct vectors: hundreds of exact ties
    ("b", "b", "1 200", "150 390", 3, 1, 5),      # periodic: zero distances (the 1e-6 rule)
])
def test_ties_and_zero_distances_match_pyedm(cols, tgt, lib, pred, E, Tp, xr):
    import pandas as pd

    rng = np.random.default_rng(1)
    n = 400
    df = pd.DataFrame({"t": np.arange(n), "a": rng.integers(0, 4, n).astype(float),
                       "b": ((np.arange(n) * 7) % 11).astype(float)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pyEDM.Simplex(dataFrame=df, columns=cols, target=tgt, lib=lib, pred=pred, E=E, Tp=Tp,
                            exclusionRadius=xr)
    ours = simplex(df, cols, tgt, lib, pred, E=E, Tp=Tp, exclusion_radius=xr)
    np.testing.assert_allclose(ours.predictions, ref["Predictions"].to_numpy(), atol=TOL, rtol=0)
    assert abs(ours.rho - _rho(ref.Observations.to_numpy(), ref.Predictions.to_numpy())) < TOL


def test_scan_random_cases_match_pyedm():
    """Random data (ties, zero distances, noise), libraries of one or two pairs, overlapping
    prediction rows, exclusion radii and Tp of both signs: every rho equals pyEDM's."""
    import pandas as pd

    rng = np.random.default_rng(7)
    for _ in range(6):
        n = int(rng.integers(80, 200))
        a = [rng.integers(0, 4, n).astype(float), np.sin(np.arange(n) * 0.3) + 0.1 * rng.standard_normal(n),
             ((np.arange(n) * 7) % 11).astype(float)][int(rng.integers(0, 3))]
        df = pd.DataFrame({"t": np.arange(n), "a": a, "b": rng.standard_normal(n)})
        cols = "a" if rng.random() < 0.6 else "a b"
        L = int(rng.integers(n // 3, n - 20))
        lib = f"1 {L // 2 - 5} {L // 2 + 5} {L}" if rng.random() < 0.4 else f"1 {L}"
        p0 = int(rng.integers(1, n - 30))
        pred = f"{p0} {int(rng.integers(p0 + 20, n))}"
        Es, Tps = [1, int(rng.integers(2, 5))], [-1, 0, int(rng.integers(1, 6))]
        tau, xr = int(rng.choice([-2, -1, 1])), int(rng.choice([0, 3]))
        scan = simplex_scan(df, cols, "a", lib, pred, E=Es, Tp=Tps, tau=tau, exclusion_radius=xr)
        for i, E in enumerate(Es):
            for k, Tp in enumerate(Tps):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ref = pyEDM.Simplex(dataFrame=df, columns=cols, target="a", lib=lib, pred=pred, E=E, Tp=Tp,
                                        tau=tau, exclusionRadius=xr)
                want = _rho(ref.Observations.to_numpy(), ref.Predictions.to_numpy())
                assert abs(scan["rho"][i, 0, k, 0] - want) < TOL, (cols, lib, pred, E, Tp, tau, xr)


def test_small_problems_take_numpy_and_agree_with_the_compiled_path(monkeypatch):
    """Below _SMALL the search is brute force and the projection numpy (no JAX): the same neighbours (the
    brute force computes cKDTree's distances bit for bit) and the same results to rounding, ties included."""
    import importlib

    S = importlib.import_module("mimic_core.edm.simplex")
    from scipy.spatial import cKDTree

    from mimic_core.edm.neighbours import distances

    rng = np.random.default_rng(3)
    for E in range(1, 10):
        X, Q = rng.standard_normal((200, E)) * 7.3, rng.standard_normal((50, E))
        d, i = cKDTree(X).query(Q, k=200)
        np.testing.assert_array_equal(np.take_along_axis(distances(Q, X), i, axis=1), d)
    data = np.column_stack([rng.integers(0, 4, 400).astype(float), np.sin(np.arange(400) / 7)])
    for cols, E, Tp, xr in (([0], 3, 1, 0), ([0, 1], 2, 2, 4), ([1], 4, -1, 0)):
        small = S.simplex(data, cols, 1, "1 200", "150 399", E=E, Tp=Tp, exclusion_radius=xr)
        scan_small = S.simplex_scan(data, cols, [0, 1], "1 200", "201 399", E=[1, 3], Tp=[1, 4])
        monkeypatch.setattr(S, "_SMALL", 0)
        big = S.simplex(data, cols, 1, "1 200", "150 399", E=E, Tp=Tp, exclusion_radius=xr)
        scan_big = S.simplex_scan(data, cols, [0, 1], "1 200", "201 399", E=[1, 3], Tp=[1, 4])
        monkeypatch.undo()
        np.testing.assert_allclose(small.predictions, big.predictions, rtol=0, atol=1e-12, equal_nan=True)
        np.testing.assert_allclose(small.variance, big.variance, rtol=0, atol=1e-12, equal_nan=True)
        assert abs(small.rho - big.rho) < 1e-12 and small.n == big.n
        for k in ("rho", "mae", "rmse"):
            np.testing.assert_allclose(scan_small[k], scan_big[k], rtol=0, atol=1e-12, equal_nan=True)
