"""EDM on one's own CSV, with pyEDM 2.x semantics: simplex, S-map, their scans (pyEDM's names) and CCM.

Every command takes the same `--csv --columns --target --E --tau --Tp --lib --pred --exclusion-radius`
(CCM: no --pred, it predicts every usable row) and prints a line of text, or JSON with `--json`:
`{"rho", "mae", "rmse", "n"}` for one prediction, a list of rows (`{"E"|"Tp"|"theta", "rho", ...}`) for a
scan, rows of `{"lib_size", "rho_x_to_y", "rho_y_to_x"}` for CCM. `--out` writes the table as CSV.
"""
from __future__ import annotations

import json
import re

import click

from bench.cli.common import clear_errors
from mimic_core.errors import DataError

_NOTHING_PREDICTED = ("no row could be predicted: the library leaves no neighbours for any prediction row "
                      "(exclusion radius {r}); lower --exclusion-radius or widen --lib")


def parse_int_range(text: str, name: str) -> list[int]:
    """'3' -> [3]; '1-10' -> [1..10]; '10-50:20' -> [10, 30, 50]; '-2--1' -> [-2, -1]; '0,1,5' -> [0, 1, 5]."""
    out: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        m = re.fullmatch(r"(-?\d+)(?:-(-?\d+)(?::(\d+))?)?", part)
        if not m:
            raise DataError(None, name, f"expected an integer, a range like 1-10 (or 10-100:10) or a list like "
                                        f"0,1,5; got {text!r}")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        step = int(m.group(3)) if m.group(3) is not None else 1
        if b < a:
            raise DataError(None, name, f"range {part} runs backwards")
        if step < 1:
            raise DataError(None, name, f"range {part}: the step must be >= 1")
        out.extend(range(a, b + 1, step))
    return out


def parse_floats(text: str, name: str) -> list[float]:
    """'0,0.5,2' -> [0.0, 0.5, 2.0]; every value finite."""
    out = []
    for part in str(text).replace(" ", "").split(","):
        try:
            v = float(part)
        except ValueError:
            raise DataError(None, name, f"expected numbers separated by commas, got {text!r}") from None
        if v != v or v in (float("inf"), float("-inf")):
            raise DataError(None, name, f"{part} is not a finite number")
        out.append(v)
    return out


def _pairs(values) -> list[int]:
    return [int(v) for pair in values for v in pair]


def _columns(columns: str, csv_path: str) -> list[str]:
    cols = [c.strip() for c in columns.split(",")] if "," in columns else columns.split()
    cols = [c for c in cols if c]
    if not cols:
        raise DataError(csv_path, "columns", "no columns given")
    return cols


def edm_options(E_help: str = "Embedding dimension, or a range 1-10 to scan.",
                Tp_help: str = "Prediction horizon, or a range 1-10 to scan.", E_default: str = "3",
                Tp_default: str = "1"):
    """The options every EDM command shares (pyEDM's lib/pred/E/tau/Tp conventions)."""
    opts = [
        click.option("--csv", "csv_path", required=True, type=click.Path(dir_okay=False), help="Input CSV (header row)."),
        click.option("--columns", required=True,
                     help='Embedding columns, space separated ("a b"), or comma separated for names with spaces '
                          '("a b,c").'),
        click.option("--target", required=True, help="Target column."),
        click.option("--E", "E", default=E_default, show_default=True, help=E_help),
        click.option("--tau", default="-1", show_default=True, help="Delay (non-zero; negative = past lags)."),
        click.option("--Tp", "Tp", default=Tp_default, show_default=True, help=Tp_help),
        click.option("--lib", nargs=2, type=int, multiple=True, required=True,
                     help="Library rows START STOP (1-based, inclusive); repeat for a disjoint library."),
        click.option("--pred", nargs=2, type=int, multiple=True, required=True,
                     help="Prediction rows START STOP (1-based, inclusive); repeatable."),
        click.option("--exclusion-radius", default=0, show_default=True, type=int,
                     help="Exclude library neighbours within this many rows of the predicted row."),
        click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text."),
        click.option("--out", "out_path", default=None, type=click.Path(dir_okay=False),
                     help="Write the predictions table (or the scan table) as CSV."),
    ]

    def apply(fn):
        for o in reversed(opts):
            fn = o(fn)
        return fn
    return apply


def _finite(v):
    import numpy as np

    return None if isinstance(v, float) and not np.isfinite(v) else v


def _write_csv(out_path, table) -> None:
    from mimic_core.io import atomic_path

    with atomic_path(out_path) as tmp:
        table.to_csv(tmp, index=False)


def _echo_one(res, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({k: _finite(v) for k, v in res.as_dict().items()}))
    else:
        click.echo(f"rho {res.rho:.6f}  mae {res.mae:.6f}  rmse {res.rmse:.6f}  n {res.n}")


def _echo_rows(rows: list[dict], keys: list[str], csv_path, exclusion_radius, as_json: bool, out_path) -> None:
    import pandas as pd

    empty = [r for r in rows if r["n"] == 0]
    if len(empty) == len(rows):
        raise DataError(csv_path, "--exclusion-radius", _NOTHING_PREDICTED.format(r=exclusion_radius))
    for r in empty:
        where = " ".join(f"{k}={r[k]}" for k in keys)
        click.echo(f"warning: {where}: no row could be predicted (rho is null)", err=True)
    table = pd.DataFrame(rows)[keys + ["rho", "mae", "rmse", "n"]]
    if out_path:
        _write_csv(out_path, table)
    if as_json:
        click.echo(json.dumps([{k: _finite(v) for k, v in r.items()} for r in table.to_dict("records")]))
    else:
        click.echo(table.to_string(index=False, float_format=lambda v: f"{v:.6f}"))


_OPTION = {"lib_sizes": "--lib-sizes", "sample": "--sample", "valid_lib": "--lib",
           "n_surrogates": "--n-surrogates", "clips": "--clip-column"}


def _named_file(csv_path, fn, *a, **kw):
    """Run an EDM call; an error that names no file names the CSV (and an argument its option)."""
    try:
        return fn(*a, **kw)
    except DataError as e:
        if e.path is None:
            raise DataError(csv_path, _OPTION.get(e.field, e.field), e.reason) from None
        raise


def _scan(csv_path, columns, target, Es, taus, Tps, lib, pred, exclusion_radius, as_json, out_path, keys):
    from mimic_core.edm import load_csv, simplex_scan

    cols = _columns(columns, csv_path)
    data, names = load_csv(csv_path, cols, [target])
    scan = _named_file(csv_path, simplex_scan, data, cols, target, _pairs(lib), _pairs(pred), E=Es, Tp=Tps,
                       tau=taus, exclusion_radius=exclusion_radius, names=names)
    rows = []
    for i, e_ in enumerate(Es):
        for j, ta in enumerate(taus):
            for k, tp in enumerate(Tps):
                rows.append({"E": e_, "tau": ta, "Tp": tp, "rho": float(scan["rho"][i, j, k, 0]),
                             "mae": float(scan["mae"][i, j, k, 0]), "rmse": float(scan["rmse"][i, j, k, 0]),
                             "n": int(scan["n"][i, j, k, 0])})
    _echo_rows(rows, keys, csv_path, exclusion_radius, as_json, out_path)


@click.command("simplex")
@edm_options()
@clear_errors
def simplex_cmd(csv_path, columns, target, E, tau, Tp, lib, pred, exclusion_radius, as_json, out_path):
    """Simplex projection of TARGET from a delay embedding of COLUMNS (pyEDM 2.x semantics)."""
    from mimic_core.edm import load_csv, simplex

    cols = _columns(columns, csv_path)
    Es, Tps, taus = parse_int_range(E, "E"), parse_int_range(Tp, "Tp"), parse_int_range(tau, "tau")
    if len(Es) == 1 and len(Tps) == 1 and len(taus) == 1:
        data, names = load_csv(csv_path, cols, [target])
        res = _named_file(csv_path, simplex, data, cols, target, _pairs(lib), _pairs(pred), E=Es[0], Tp=Tps[0],
                          tau=taus[0], exclusion_radius=exclusion_radius, names=names)
        if res.n == 0:
            raise DataError(csv_path, "--exclusion-radius", _NOTHING_PREDICTED.format(r=exclusion_radius))
        if out_path:
            import pandas as pd     # here only: a one-off prediction starts without pandas

            _write_csv(out_path, pd.DataFrame({"Row": res.rows + 1, "Observations": res.observations,
                                               "Predictions": res.predictions, "Pred_Variance": res.variance}))
        _echo_one(res, as_json)
        return
    keys = [k for k, vals in (("E", Es), ("tau", taus), ("Tp", Tps)) if len(vals) > 1]
    _scan(csv_path, columns, target, Es, taus, Tps, lib, pred, exclusion_radius, as_json, out_path, keys)


@click.command("embed-dimension")
@edm_options(E_help="Embedding dimensions to scan (pyEDM EmbedDimension's).", E_default="1-10")
@clear_errors
def embed_dimension_cmd(csv_path, columns, target, E, tau, Tp, lib, pred, exclusion_radius, as_json, out_path):
    """Simplex rho against E (pyEDM EmbedDimension)."""
    Es = parse_int_range(E, "E")
    _scan(csv_path, columns, target, Es, parse_int_range(tau, "tau")[:1], parse_int_range(Tp, "Tp")[:1], lib, pred,
          exclusion_radius, as_json, out_path, ["E"])


@click.command("predict-interval")
@edm_options(Tp_help="Prediction horizons to scan (pyEDM PredictInterval's).", Tp_default="1-10")
@clear_errors
def predict_interval_cmd(csv_path, columns, target, E, tau, Tp, lib, pred, exclusion_radius, as_json, out_path):
    """Simplex rho against Tp (pyEDM PredictInterval)."""
    Tps = parse_int_range(Tp, "Tp")
    _scan(csv_path, columns, target, parse_int_range(E, "E")[:1], parse_int_range(tau, "tau")[:1], Tps, lib, pred,
          exclusion_radius, as_json, out_path, ["Tp"])


def _one_int(text: str, name: str) -> int:
    v = parse_int_range(text, name)
    if len(v) != 1:
        raise DataError(None, name, f"expected one integer here, got {text!r}")
    return v[0]


@click.command("smap")
@edm_options(E_help="Embedding dimension.", Tp_help="Prediction horizon.")
@click.option("--theta", default="0", show_default=True, help="Localisation (>= 0; 0 is a global linear map).")
@clear_errors
def smap_cmd(csv_path, columns, target, E, tau, Tp, lib, pred, exclusion_radius, as_json, out_path, theta):
    """S-map of TARGET from a delay embedding of one column (pyEDM 2.x SMap semantics)."""
    import numpy as np
    import pandas as pd

    from mimic_core.edm import load_csv
    from mimic_core.edm.smap import smap

    th = parse_floats(theta, "--theta")
    if len(th) != 1:
        raise DataError(None, "--theta", f"smap takes one theta (predict-nonlinear scans them), got {theta!r}")
    cols = _columns(columns, csv_path)
    data, names = load_csv(csv_path, cols, [target])
    res = _named_file(csv_path, smap, data, cols, target, _pairs(lib), _pairs(pred), E=_one_int(E, "E"),
                      Tp=_one_int(Tp, "Tp"), tau=_one_int(tau, "tau"), theta=th[0],
                      exclusion_radius=exclusion_radius, names=names)
    if res.n == 0:
        raise DataError(csv_path, "--exclusion-radius", _NOTHING_PREDICTED.format(r=exclusion_radius))
    if out_path:
        table = pd.DataFrame({"Row": res.rows + 1, "Observations": res.observations, "Predictions": res.predictions,
                              "Pred_Variance": res.variance})
        for j in range(res.coefficients.shape[1]):
            table[f"C{j}"] = np.asarray(res.coefficients[:, j])
        _write_csv(out_path, table)
    _echo_one(res, as_json)


@click.command("predict-nonlinear")
@edm_options(E_help="Embedding dimension.", Tp_help="Prediction horizon.")
@click.option("--theta", default="0.01,0.1,0.3,0.5,0.75,1,1.5,2,3,4,5,6,7,8,9", show_default=True,
              help="Thetas to scan (pyEDM PredictNonlinear's).")
@clear_errors
def predict_nonlinear_cmd(csv_path, columns, target, E, tau, Tp, lib, pred, exclusion_radius, as_json, out_path,
                          theta):
    """S-map rho against theta (pyEDM PredictNonlinear): rising rho with theta is a sign of nonlinear dynamics."""
    from mimic_core.edm import load_csv
    from mimic_core.edm.smap import predict_nonlinear

    cols = _columns(columns, csv_path)
    data, names = load_csv(csv_path, cols, [target])
    rows = _named_file(csv_path, predict_nonlinear, data, cols, target, _pairs(lib), _pairs(pred),
                       E=_one_int(E, "E"), Tp=_one_int(Tp, "Tp"), tau=_one_int(tau, "tau"),
                       theta=parse_floats(theta, "--theta"), exclusion_radius=exclusion_radius, names=names)
    _echo_rows(rows, ["theta"], csv_path, exclusion_radius, as_json, out_path)


def _valid_rows(lib, n: int, csv_path):
    """--lib START STOP pairs (1-based, inclusive) as a row mask, pyEDM CCM's validLib; None: every row."""
    import numpy as np

    if not lib:
        return None
    mask = np.zeros(n, bool)
    for a, b in lib:
        if not 1 <= a <= b <= n:
            raise DataError(csv_path, "--lib", f"rows {a} {b} are not within 1..{n} (start <= stop)")
        mask[a - 1:b] = True
    return mask


@click.command("ccm")
@click.option("--csv", "csv_path", required=True, type=click.Path(dir_okay=False), help="Input CSV (header row).")
@click.option("--columns", required=True, help="Library variable(s) x, space or comma separated (several: a mixed "
                                               "multivariate embedding, E lags each).")
@click.option("--target", required=True, help="Target variable y (several: the reverse map's embedding).")
@click.option("--lib-sizes", required=True, help="Library sizes: a list 20,50,100 or a range 20-200:20.")
@click.option("--sample", default=30, show_default=True, type=int, help="Random libraries per size.")
@click.option("--seed", default=None, type=int, help="Seed of the library draws (pyEDM's); unset: fresh entropy.")
@click.option("--sequential", is_flag=True, help="One library per size, the first L valid rows, not random ones.")
@click.option("--E", "E", default="3", show_default=True, help="Embedding dimension.")
@click.option("--tau", default="-1", show_default=True, help="Delay (non-zero; negative = past lags).")
@click.option("--Tp", "Tp", default="0", show_default=True, help="Prediction horizon (pyEDM CCM's default 0).")
@click.option("--knn", default=0, show_default=True, type=int, help="Neighbours (0: E + 1).")
@click.option("--lib", nargs=2, type=int, multiple=True,
              help="Rows that may be used, START STOP (1-based, inclusive; repeatable): pyEDM's validLib. "
                   "Default: all. CCM predicts every usable row, so there is no --pred.")
@click.option("--exclusion-radius", default=0, show_default=True, type=int,
              help="Exclude library neighbours within this many rows of the predicted row.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--out", "out_path", default=None, type=click.Path(dir_okay=False), help="Write the table as CSV.")
@clear_errors
def ccm_cmd(csv_path, columns, target, lib_sizes, sample, seed, sequential, E, tau, Tp, knn, lib, exclusion_radius,
            as_json, out_path):
    """Convergent cross mapping of COLUMNS (x) and TARGET (y), both directions (pyEDM 2.5.7 CCM semantics).

    rho_x_to_y: x's embedding predicting y (high when y drives x). Rows: lib_size, rho_x_to_y, rho_y_to_x and
    the variances over the samples; the text output ends with the convergence test."""
    import pandas as pd

    from mimic_core.edm import load_csv
    from mimic_core.edm.ccm import ccm, convergence

    cols = _columns(columns, csv_path)
    tgts = _columns(target, csv_path)
    sizes = parse_int_range(lib_sizes, "--lib-sizes")
    data, names = load_csv(csv_path, cols, tgts)
    res = _named_file(csv_path, ccm, data, cols, tgts, sizes, sample=sample, E=_one_int(E, "E"),
                      Tp=_one_int(Tp, "Tp"), tau=_one_int(tau, "tau"), knn=knn, exclusion_radius=exclusion_radius,
                      seed=seed, random=not sequential, valid_lib=_valid_rows(lib, data.shape[0], csv_path),
                      names=names)
    rows = [{**r, "var_x_to_y": float(a), "var_y_to_x": float(b)}
            for r, a, b in zip(res.rows(), res.var_x_to_y, res.var_y_to_x)]
    table = pd.DataFrame(rows)
    if out_path:
        _write_csv(out_path, table)
    if as_json:
        click.echo(json.dumps([{k: _finite(v) for k, v in r.items()} for r in rows]))
        return
    click.echo(table.to_string(index=False, float_format=lambda v: f"{v:.6f}"))
    if len(rows) > 1:
        conv = convergence(res)
        for key, label in (("x_to_y", f"{cols[0]} xmap {tgts[0]}"), ("y_to_x", f"{tgts[0]} xmap {cols[0]}")):
            c = conv[key]
            click.echo(f"{label}: rho {c['rho_min_lib']:.4f} at L={rows[0]['lib_size']} -> {c['rho_max_lib']:.4f} "
                       f"at L={rows[-1]['lib_size']}, slope {c['slope_per_1000']:+.4f} per 1000 rows, "
                       f"Kendall tau {c['kendall_tau']:+.2f}, Mann-Whitney p {c['mann_whitney_p']:.3g}")


def _clip_labels(csv_path, column, n):
    import pandas as pd

    try:
        df = pd.read_csv(csv_path, usecols=[column])
    except ValueError:
        raise DataError(csv_path, column, "clip column not found in CSV") from None
    lab = df[column]
    if lab.isna().any():
        raise DataError(csv_path, column, f"row {int(lab.isna().to_numpy().argmax()) + 1} has no clip label")
    if len(lab) != n:
        raise DataError(csv_path, column, f"{len(lab)} labels for {n} rows")
    return lab.astype(str).to_numpy()


@click.command("surrogates")
@edm_options(E_help="Embedding dimension.", Tp_help="Prediction horizon.")
@click.option("--method", default="ebisuzaki", show_default=True,
              type=click.Choice(["random_shuffle", "ebisuzaki", "clip_ebisuzaki", "clip_swap"]),
              help="Surrogate targets: a shuffle, phase randomisation (Ebisuzaki 1997), or per clip: phase "
                   "randomisation within each clip, or each clip's target taken from another clip.")
@click.option("--n-surrogates", default=100, show_default=True, type=int, help="How many surrogates.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the surrogate draws.")
@click.option("--clip-column", default=None, help="Column of clip labels (contiguous runs): the clip methods' trials.")
@clear_errors
def surrogates_cmd(csv_path, columns, target, E, tau, Tp, lib, pred, exclusion_radius, as_json, out_path, method,
                   n_surrogates, seed, clip_column):
    """Simplex rho of TARGET against surrogate targets: the p value is (1 + #null >= rho) / (1 + n)."""
    import pandas as pd

    from mimic_core.edm import load_csv, simplex_surrogates

    cols = _columns(columns, csv_path)
    data, names = load_csv(csv_path, cols, [target])
    if method.startswith("clip_") and not clip_column:
        raise DataError(csv_path, "--clip-column", f"--method {method} needs --clip-column (the clip of each row)")
    clips = _clip_labels(csv_path, clip_column, data.shape[0]) if clip_column else None
    res = _named_file(csv_path, simplex_surrogates, data, cols, target, _pairs(lib), _pairs(pred), E=_one_int(E, "E"),
                      Tp=_one_int(Tp, "Tp"), tau=_one_int(tau, "tau"), exclusion_radius=exclusion_radius,
                      n_surrogates=n_surrogates, seed=seed, names=names, method=method, clips=clips)
    if res.n == 0:
        raise DataError(csv_path, "--exclusion-radius", _NOTHING_PREDICTED.format(r=exclusion_radius))
    if out_path:
        _write_csv(out_path, pd.DataFrame({"surrogate": range(1, res.n_surrogates + 1), "rho": res.null}))
    out = {"rho": res.rho, "mae": res.mae, "rmse": res.rmse, "n": res.n, "method": method,
           "n_surrogates": res.n_surrogates, "p_value": res.p_value, "null_mean": res.null_mean,
           "null_p95": res.null_p95}
    if as_json:
        click.echo(json.dumps({k: _finite(v) for k, v in out.items()}))
    else:
        click.echo(f"rho {res.rho:.6f}  n {res.n}  {method} null: mean {res.null_mean:.6f}  95% {res.null_p95:.6f}  "
                   f"p {res.p_value:.4g} ({res.n_surrogates} surrogates)")


COMMANDS = [simplex_cmd, embed_dimension_cmd, predict_interval_cmd, smap_cmd, predict_nonlinear_cmd, ccm_cmd,
            surrogates_cmd]
