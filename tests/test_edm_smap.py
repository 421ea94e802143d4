"""S-map and the scans with pyEDM's names, against pyEDM 2.5.7 itself: |delta rho| < 1e-6 (here ~1e-14),
predictions and variances too, on pyEDM's sample data and on integer data full of tied distances."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bench.cli import main
from mimic_core.edm.smap import predict_nonlinear, smap
from mimic_core.errors import DataError
from helpers import edm_frame

pyEDM = pytest.importorskip("pyEDM")
TOL = 1e-6



# (data set, column, target, lib, pred, E, Tp, tau, theta, exclusionRadius)
CASES = [
    ("Lorenz5D", "V1", "V1", "1 200", "201 400", 3, 1, -1, 2.0, 0),        # disjoint
    ("Lorenz5D", "V1", "V3", "1 300", "201 450", 2, 3, -1, 0.5, 0),        # overlap: leave one out
    ("Lorenz5D", "V2", "V4", "1 300", "101 450", 4, 1, -1, 0.0, 5),        # theta 0 (global linear), radius
    ("Lorenz5D", "V1", "V1", "1 100 201 300", "150 250", 3, -2, -1, 3.0, 0),   # disjoint library, Tp < 0
    ("Lorenz5D", "V1", "V1", "1 300", "301 450", 2, 1, -3, 1.0, 20),       # radius reaching a disjoint library
    ("Lorenz5D", "V1", "V1", "1 300", "250 450", 2, 2, 2, 1.0, 3),         # tau > 0
    ("block_3sp", "x_t", "x_t", "1 100", "101 195", 3, 1, -1, 4.0, 0),
    ("circle", "x", "y", "1 100", "101 198", 2, 5, -1, 1.5, 0),
    ("ties", "b", "b", "1 150", "100 290", 3, 1, -1, 2.0, 5),              # periodic: tied and zero distances
    ("ties", "a", "a", "1 150", "151 290", 2, 1, -1, 4.0, 0),              # 16 distinct vectors
]


def _frame(name):
    return edm_frame(name)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)).replace(" ", "_"))
def test_smap_matches_pyedm(case):
    name, col, tgt, lib, pred, E, Tp, tau, theta, xr = case
    df = _frame(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pyEDM.SMap(dataFrame=df, columns=col, target=tgt, lib=lib, pred=pred, E=E, Tp=Tp, tau=tau, theta=theta,
                         exclusionRadius=xr)
    P = ref["predictions"]
    ours = smap(df, col, tgt, lib, pred, E=E, Tp=Tp, tau=tau, theta=theta, exclusion_radius=xr)
    o, p = P["Observations"].to_numpy(), P["Predictions"].to_numpy()
    ok = np.isfinite(o) & np.isfinite(p)
    assert abs(ours.rho - np.corrcoef(o[ok], p[ok])[0, 1]) < TOL
    np.testing.assert_allclose(ours.predictions, p, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(ours.observations, o, atol=0, equal_nan=True)
    np.testing.assert_allclose(ours.variance, P["Pred_Variance"].to_numpy(), atol=1e-9, equal_nan=True)
    C = ref["coefficients"].to_numpy()[:, 1:].astype(float)
    np.testing.assert_allclose(ours.coefficients, C, atol=1e-7, equal_nan=True)


def test_predict_nonlinear_matches_pyedm():
    df = pyEDM.sampleData["Lorenz5D"].iloc[:500]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pyEDM.PredictNonlinear(dataFrame=df, columns="V1", target="V1", lib="1 200", pred="201 400", E=3,
                                     showPlot=False)
    rows = predict_nonlinear(df, "V1", "V1", "1 200", "201 400", E=3)
    assert [r["theta"] for r in rows] == list(ref["theta"])
    np.testing.assert_allclose([r["rho"] for r in rows], ref["rho"], atol=1e-6)   # pyEDM rounds to 6 digits


def _cli(args, csv):
    return CliRunner().invoke(main, [args[0], "--csv", str(csv), "--columns", "V1", "--target", "V1", "--lib", "1",
                                     "200", "--pred", "201", "400", "--json", *args[1:]])


@pytest.fixture(scope="module")
def lorenz_csv(tmp_path_factory):
    p = tmp_path_factory.mktemp("smap") / "lorenz.csv"
    pyEDM.sampleData["Lorenz5D"].iloc[:500].to_csv(p, index=False)
    return p


def test_cli_scans_have_pyedms_names_and_results(lorenz_csv):
    df = pyEDM.sampleData["Lorenz5D"].iloc[:500]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ed = pyEDM.EmbedDimension(dataFrame=df, columns="V1", target="V1", lib="1 200", pred="201 400", showPlot=False)
        pi = pyEDM.PredictInterval(dataFrame=df, columns="V1", target="V1", lib="1 200", pred="201 400", E=3,
                                   showPlot=False)
    r = _cli(["embed-dimension"], lorenz_csv)
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert [x["E"] for x in rows] == list(range(1, 11))
    np.testing.assert_allclose([x["rho"] for x in rows], ed["rho"], atol=1e-6)
    r = _cli(["predict-interval", "--E", "3"], lorenz_csv)
    rows = json.loads(r.output)
    assert [x["Tp"] for x in rows] == list(range(1, 11))
    np.testing.assert_allclose([x["rho"] for x in rows], pi["rho"], atol=1e-6)
    r = _cli(["smap", "--theta", "2"], lorenz_csv)
    assert r.exit_code == 0 and set(json.loads(r.output)) == {"rho", "mae", "rmse", "n"}, r.output
    assert json.loads(r.output)["rho"] == pytest.approx(smap(df, "V1", "V1", "1 200", "201 400", theta=2.0).rho,
                                                        abs=1e-12)
    r = _cli(["predict-nonlinear", "--theta", "0,1,4"], lorenz_csv)
    assert [x["theta"] for x in json.loads(r.output)] == [0, 1, 4]


@pytest.mark.parametrize("args, match", [
    (["smap", "--theta", "-1"], "'theta': theta must be finite and >= 0"),
    (["smap", "--theta", "1,2"], "smap takes one theta"),
    (["predict-nonlinear", "--theta", "0,x"], "expected numbers"),
    (["smap", "--E", "300"], "'lib'"),
    (["smap", "--exclusion-radius", "5000"], "no row could be predicted"),
])
def test_cli_bad_input_is_one_clear_line(lorenz_csv, tmp_path, args, match):
    out = tmp_path / "t.csv"
    r = _cli([*args, "--out", str(out)], lorenz_csv)
    assert r.exit_code == 1 and r.output.startswith("error: ") and match in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1 and not out.exists()


def test_smap_refuses_several_columns_and_a_constant_library():
    df = pyEDM.sampleData["Lorenz5D"].iloc[:300]
    with pytest.raises(DataError, match="S-map embeds one column"):
        smap(df, "V1 V2", "V1", "1 100", "101 200")
    flat = pd.DataFrame({"t": np.arange(100), "x": np.ones(100)})
    r = smap(flat, "x", "x", "1 50", "51 99", E=2, theta=1.0)
    assert np.isnan(r.rho)                  # constant: no correlation to report (pyEDM gives NaN too)
