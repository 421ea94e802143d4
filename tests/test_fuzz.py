"""Fuzz the params schema, the compare gate and the simplex CLI: a clear error or a correct result, never a
traceback. (The loaders' fuzz suite is in test_loaders.py.) MIMIC_FUZZ_EXAMPLES raises the example count."""
from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bench.cli import main
from bench.compare import RULES_FILE, _kind, compare_files, load_rules
from mimic_core.config import as_params
from mimic_core.errors import DataError, MimicError, ParamsError

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
N = int(os.environ.get("MIMIC_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=N, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _paths(obj, prefix=()):
    """Every key path of a nested mapping (lists are leaves)."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append(prefix + (k,))
            out.extend(_paths(v, prefix + (k,)))
    return out


PATHS = _paths(PARAMS)
values = st.one_of(
    st.none(), st.booleans(), st.integers(-10 ** 6, 10 ** 6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.lists(st.one_of(st.integers(-5, 5), st.floats(-5, 5)), max_size=4),
    st.dictionaries(st.text(max_size=4), st.integers(-3, 3), max_size=2))


@st.composite
def mutated_params(draw):
    p = copy.deepcopy(PARAMS)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        node = p
        try:
            for k in path[:-1]:
                node = node[k]
        except (KeyError, TypeError):
            continue
        if not isinstance(node, dict):
            continue
        how = draw(st.sampled_from(["set", "set", "delete", "unknown"]))
        if how == "set":
            node[path[-1]] = draw(values)
        elif how == "delete":
            node.pop(path[-1], None)
        else:
            node[path[-1] + draw(st.sampled_from(["_", "s", "x"]))] = draw(values)
    return p


@FUZZ
@given(p=mutated_params())
def test_fuzz_params(p):
    """Any edit of params.yaml: it validates, or a ParamsError names the key (never another exception)."""
    try:
        as_params(p)
        event("valid")
    except ParamsError as e:
        assert "'" in str(e) and "params.yaml" in str(e)
        event("ParamsError")


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-100, 100), st.floats(allow_nan=False, allow_infinity=False),
                      st.text(max_size=5), st.lists(st.integers(), max_size=2))
metrics = st.recursive(json_leaf, lambda c: st.dictionaries(st.sampled_from(["a", "b", "mean", "rho", "n_clips",
                                                                              "keypoint_error_mm"]), c, max_size=4),
                       max_leaves=12)


@FUZZ
@given(old=metrics, new=metrics)
def test_fuzz_compare(tmp_path_factory, old, new):
    """Any two JSON documents: rows with verdicts, or a DataError naming the file."""
    d = tmp_path_factory.mktemp("cmp", numbered=True)
    a, b = d / "old.json", d / "new.json"
    a.write_text(json.dumps(old))
    b.write_text(json.dumps(new))
    try:
        rows = compare_files(a, b, RULES)
    except DataError as e:
        assert e.path in (str(a), str(b))
        event("DataError")
        return
    for r in rows:   # the gate: whatever left or changed kind is a regression (no per-clip keys here)
        if r.old is not None and (r.new is None or _kind(r.old) != _kind(r.new)):
            assert r.verdict == "REGRESSION", r
    event("rows")


RULES = load_rules(RULES_FILE)


@pytest.fixture(scope="module")
def series_csv(tmp_path_factory):
    p = tmp_path_factory.mktemp("simplex") / "s.csv"
    t = np.arange(80)
    p.write_text("x,y\n" + "".join(f"{math.sin(0.3 * i)},{math.cos(0.17 * i)}\n" for i in t))
    return p


ints = st.integers(-90, 200)
num_text = st.one_of(st.integers(-3, 6).map(str), st.tuples(st.integers(-3, 6), st.integers(-3, 6)).map(
    lambda ab: f"{ab[0]}-{ab[1]}"), st.sampled_from(["", "x", "1.5", "3,4", "1-100000"]))


@settings(max_examples=max(N // 3, 10), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(columns=st.sampled_from(["x", "y", "x y", "x,y", "z", "", " "]), target=st.sampled_from(["x", "y", "q"]),
       E=st.one_of(st.sampled_from(["1", "2", "3", "1-3"]), num_text), tau=st.one_of(st.just("-1"), num_text),
       Tp=st.one_of(st.just("1"), num_text), lib=st.one_of(st.just((1, 40)), st.tuples(ints, ints)),
       pred=st.one_of(st.just((41, 75)), st.tuples(ints, ints)),
       xr=st.one_of(st.just(0), st.integers(-2, 100)), as_json=st.booleans())
def test_fuzz_simplex_cli(series_csv, columns, target, E, tau, Tp, lib, pred, xr, as_json):
    """Any arguments: a result (finite rho, or JSON that parses), or one 'error:' line with exit status 1 or 2."""
    args = ["simplex", "--csv", str(series_csv), "--columns", columns, "--target", target, "--E", E, "--tau", tau,
            "--Tp", Tp, "--lib", *map(str, lib), "--pred", *map(str, pred), "--exclusion-radius", str(xr)]
    res = CliRunner().invoke(main, args + (["--json"] if as_json else []))
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        assert isinstance(res.exception, MimicError), f"{type(res.exception).__name__}: {res.exception}\n{args}"
    if res.exit_code == 0:
        if as_json:
            json.loads(res.output.strip().splitlines()[-1])
        event("result")
    else:
        assert res.exit_code in (1, 2), (res.exit_code, res.output)
        assert "Traceback" not in res.output
        if res.exit_code == 1:
            assert res.output.startswith("error: ") and len(res.output.strip().splitlines()) == 1, res.output
        event(f"exit {res.exit_code}")
