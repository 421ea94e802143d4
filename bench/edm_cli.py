"""`mimic-bench simplex`: simplex projection (pyEDM semantics, JAX) on a CSV."""
from __future__ import annotations

import json
import re

import click

from bench.common import clear_errors
from mimic_core.errors import DataError


def parse_int_range(text: str, name: str) -> list[int]:
    """'3' -> [3]; '1-10' -> [1..10]; '-2--1' -> [-2, -1]; '0,1,5' -> [0, 1, 5]."""
    out: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        m = re.fullmatch(r"(-?\d+)(?:-(-?\d+))?", part)
        if not m:
            raise DataError(None, name, f"expected an integer, a range like 1-10 or a list like 0,1,5; got {text!r}")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if b < a:
            raise DataError(None, name, f"range {part} runs backwards")
        out.extend(range(a, b + 1))
    return out


def _pairs(values) -> list[int]:
    return [int(v) for pair in values for v in pair]


@click.command("simplex")
@click.option("--csv", "csv_path", required=True, type=click.Path(dir_okay=False), help="Input CSV (header row).")
@click.option("--columns", required=True, help='Embedding columns, space separated: "a b".')
@click.option("--target", required=True, help="Target column.")
@click.option("--E", "E", default="3", show_default=True, help="Embedding dimension, or a range 1-10 to scan.")
@click.option("--tau", default="-1", show_default=True, help="Delay (non-zero; negative = past lags).")
@click.option("--Tp", "Tp", default="1", show_default=True, help="Prediction horizon, or a range 1-10 to scan.")
@click.option("--lib", nargs=2, type=int, multiple=True, required=True,
              help="Library rows START STOP (1-based, inclusive); repeat for a disjoint library.")
@click.option("--pred", nargs=2, type=int, multiple=True, required=True,
              help="Prediction rows START STOP (1-based, inclusive); repeatable.")
@click.option("--exclusion-radius", default=0, show_default=True, type=int,
              help="Exclude library neighbours within this many rows of the predicted row.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--out", "out_path", default=None, type=click.Path(dir_okay=False),
              help="Write the predictions table (or the scan table) as CSV.")
@clear_errors
def simplex_cmd(csv_path, columns, target, E, tau, Tp, lib, pred, exclusion_radius, as_json, out_path):
    """Simplex projection of TARGET from a delay embedding of COLUMNS (pyEDM 2.x semantics)."""
    import numpy as np
    import pandas as pd

    from mimic_core.edm import load_csv, simplex, simplex_scan

    cols = columns.replace(",", " ").split()
    if not cols:
        raise DataError(csv_path, "columns", "no columns given")
    Es = parse_int_range(E, "E")
    Tps = parse_int_range(Tp, "Tp")
    taus = parse_int_range(tau, "tau")
    data, names = load_csv(csv_path, cols, [target])
    libp, predp = _pairs(lib), _pairs(pred)
    try:
        if len(Es) == 1 and len(Tps) == 1 and len(taus) == 1:
            res = simplex(data, cols, target, libp, predp, E=Es[0], Tp=Tps[0], tau=taus[0],
                          exclusion_radius=exclusion_radius, names=names)
            if out_path:
                from mimic_core.io import atomic_path
                with atomic_path(out_path) as tmp:
                    pd.DataFrame({"Row": res.rows + 1, "Observations": res.observations,
                                  "Predictions": res.predictions,
                                  "Pred_Variance": res.variance}).to_csv(tmp, index=False)
            d = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in res.as_dict().items()}
            if as_json:
                click.echo(json.dumps(d))
            else:
                click.echo(f"rho {res.rho:.6f}  mae {res.mae:.6f}  rmse {res.rmse:.6f}  n {res.n}")
            return
        scan = simplex_scan(data, cols, target, libp, predp, E=Es, Tp=Tps, tau=taus,
                            exclusion_radius=exclusion_radius, names=names)
    except DataError as e:
        if e.path is None:     # name the file too
            raise DataError(csv_path, e.field, e.reason) from None
        raise
    rows = []
    for i, e_ in enumerate(Es):
        for j, ta in enumerate(taus):
            for k, tp in enumerate(Tps):
                rows.append({"E": e_, "tau": ta, "Tp": tp, "rho": float(scan["rho"][i, j, k, 0]),
                             "mae": float(scan["mae"][i, j, k, 0]), "rmse": float(scan["rmse"][i, j, k, 0]),
                             "n": int(scan["n"][i, j, k, 0])})
    keys = [k for k, vals in (("E", Es), ("tau", taus), ("Tp", Tps)) if len(vals) > 1]
    table = pd.DataFrame(rows)[keys + ["rho", "mae", "rmse", "n"]]
    if out_path:
        from mimic_core.io import atomic_path
        with atomic_path(out_path) as tmp:
            table.to_csv(tmp, index=False)
    if as_json:
        click.echo(json.dumps([{k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                                for k, v in r.items()} for r in table.to_dict("records")]))
    else:
        click.echo(table.to_string(index=False, float_format=lambda v: f"{v:.6f}"))
