"""What the report reads: the metrics files, the training CSVs and the throughput reports, each checked
(a file that is absent is None: its rows say "not run"; one with the wrong shape is a DataError naming
the file and the field)."""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd

from bench.report.sources import Sources  # noqa: F401  (re-exported)
from mimic_core.errors import DataError

if TYPE_CHECKING:
    from bench.report.figures import ReportSettings

LABELS = {"synthetic": "synthetic twin", "real": "real clips"}


LAST_DECODER = "last_decoder_layer"      # paper_figures.yaml alias: the highest-numbered decoder_layer_<n> in latents.json




def load_json(path: Path) -> Any | None:
    """The parsed file, or None when it is absent."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(path, None, f"not a readable JSON file: {e}") from None


def _kind(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def at(doc: Any, path: Path, keys: Sequence[str], want: str = "number", optional: bool = False) -> Any:
    """doc[k0][k1]..., checked: want is number | number_or_null | mapping | str | list.

    A missing key (unless `optional`: then None) or a value of the wrong kind is a DataError naming
    the file and the field (keys joined by '/')."""
    node = doc
    for i, k in enumerate(keys):
        if not isinstance(node, Mapping):
            raise DataError(path, "/".join(keys[:i]) or None, f"expected a mapping (with key {k!r}), got {_kind(node)}")
        if k not in node:
            if optional:
                return None
            have = ", ".join(sorted(map(str, node))) or "nothing"
            raise DataError(path, "/".join(keys[:i + 1]), f"missing (has: {have})")
        node = node[k]
    ok = {"number": _is_number(node), "number_or_null": node is None or _is_number(node),
          "mapping": isinstance(node, Mapping), "str": isinstance(node, str), "list": isinstance(node, list)}[want]
    if not ok:
        raise DataError(path, "/".join(keys) or None,
                        f"expected {want.replace('_', ' ')}, got {_kind(node)} {json.dumps(node)[:60]}")
    return node


def weight_order(key: str) -> tuple[float, str]:
    try:
        return float(key), key
    except ValueError:
        return math.inf, key


def label(value: Any) -> str:
    """'synthetic' -> 'synthetic twin', 'real' -> 'real clips'; other labels as written."""
    return LABELS.get(str(value), str(value))


BASELINES = "baselines"           # tracking.json: the baselines, beside the weights
TRACKING_PARTS = ("held_out", "train")   # the part of a weight's metrics the report shows first


def tracking_entries(doc: Any, path: Path) -> dict[str, Mapping]:
    """{weight: metrics}, each checked for the fields the report uses. A weight's metrics are those of its
    held-out clips (of its training clips where none are held out), with the weight's own fields ("data",
    "trained_on") and every part under "parts"; "part" says which is shown."""
    if doc is None:
        return {}
    if not isinstance(doc, Mapping) or not doc:
        raise DataError(path, None, f"expected a mapping of control-cost weights to their metrics, got {_kind(doc)}")
    out = {}
    for w in sorted((k for k in doc if k != BASELINES), key=weight_order):
        at(doc, path, [w, "data"], "str")
        parts = [p for p in TRACKING_PARTS if at(doc, path, [w, p], "mapping", optional=True) is not None]
        if not parts:
            raise DataError(path, f"{w}/held_out", "missing, and no train part either (metrics from before held-out "
                            "clips: re-run the evaluate stage)")
        for p in parts:
            at(doc, path, [w, p, "keypoint_error_mm", "mean"])
            for k in ("joint_error_deg", "action_hf_power", "energy", "activation_mae"):
                at(doc, path, [w, p, k], optional=True)
        entry = doc[w]
        out[w] = {**entry[parts[0]], "data": entry["data"], "part": parts[0],
                  **({"trained_on": entry["trained_on"]} if "trained_on" in entry else {}),
                  "parts": {p: entry[p] for p in parts}}
    return out


def tracking_baselines(doc: Any, path: Path) -> dict[str, Mapping]:
    """tracking.json's baselines, {name: {part: metrics}}, checked; {} when there are none."""
    if not isinstance(doc, Mapping) or BASELINES not in doc:
        return {}
    out = {}
    for name in at(doc, path, [BASELINES], "mapping"):
        for part in at(doc, path, [BASELINES, name], "mapping"):
            at(doc, path, [BASELINES, name, part, "n_clips"])
            if name != "reference":
                at(doc, path, [BASELINES, name, part, "joint_error_deg"])
        out[name] = doc[BASELINES][name]
    return out


def edm_entry(doc: Any, path: Path, analysis: str, weight: str) -> Mapping | None:
    """edm.json[analysis][weight], checked; None when either is not in the file."""
    entry = at(doc, path, [analysis, weight], "mapping", optional=True)
    if entry is not None:
        for k in ("rho", "surrogate_mean", "surrogate_p95"):
            at(doc, path, [analysis, weight, k], "number_or_null")
    return entry


def latent_layer(entry: Mapping, name: str) -> str | None:
    """A layer of latents.json; `last_decoder_layer` -> the highest-numbered decoder_layer_<n>."""
    if name != LAST_DECODER:
        return name if name in entry else None
    dec = [k for k in entry if re.fullmatch(r"decoder_layer_\d+", str(k))]
    return max(dec, key=lambda k: int(k.rsplit("_", 1)[1])) if dec else None


def newest_throughput(folder: Path) -> tuple[Path, Mapping] | None:
    """The throughput report with the latest created_utc in `folder`, checked; None when there is none."""
    found = []
    for p in sorted(Path(folder).glob("*.json")) if Path(folder).is_dir() else []:
        doc = load_json(p)
        found.append((at(doc, p, ["created_utc"], "str"), p, doc))
    if not found:
        return None
    _, path, doc = max(found, key=lambda t: (t[0], t[1].name))
    for i, r in enumerate(at(doc, path, ["results"], "list")):
        at(r, path, ["envs"])
        if "train" in r:
            at(r, path, ["train", "env_steps_per_s"])
    at(doc, path, ["hardware", "device_kind"], "str")
    at(doc, path, ["hardware", "device_count"])
    return path, doc


def read_training_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(env_steps, joint_error_deg) of a training CSV, checked."""
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(path, None, "no training iterations in the file") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise DataError(path, None, f"not a readable CSV file: {e}") from None
    for c in ("env_steps", "joint_error_deg"):
        if c not in df.columns:
            raise DataError(path, c, f"column missing (has: {', '.join(map(str, df.columns)) or 'nothing'})")
    if df.empty:
        raise DataError(path, None, "no training iterations in the file")
    out = []
    for c in ("env_steps", "joint_error_deg"):
        a = pd.to_numeric(df[c], errors="coerce")
        if (a.isna() & df[c].notna()).any():
            raise DataError(path, c, "holds a value that is not a number")
        a = a.to_numpy(np.float64)
        if not np.isfinite(a).all():
            raise DataError(path, c, "holds NaN or infinite values")
        out.append(a)
    return out[0], out[1]


def smooth(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (the first values average what there is)."""
    return pd.Series(np.asarray(x, np.float64)).rolling(window, min_periods=1).mean().to_numpy()


def convergence(env_steps: np.ndarray, err: np.ndarray, window: int, tol: float) -> tuple[int, float, np.ndarray]:
    """(env steps at convergence, final smoothed error, the smoothed curve): the first env step from which the
    smoothed error stays within `tol` of its final value."""
    sm = smooth(err, window)
    off = np.flatnonzero(np.abs(sm - sm[-1]) > tol)
    i = int(off[-1]) + 1 if off.size else 0
    return int(env_steps[i]), float(sm[-1]), sm


def training_curves(folder: Path, s: ReportSettings) -> dict[str, dict]:
    """{weight: {env_steps, err, smooth, converged_at, final}} from <folder>/<weight>.csv."""
    folder = Path(folder)
    out = {}
    files = sorted(folder.glob("*.csv"), key=lambda p: weight_order(p.stem)) if folder.is_dir() else []
    for p in files:
        steps, err = read_training_csv(p)
        at_step, final, sm = convergence(steps, err, s.smooth_iterations, s.tolerance_deg)
        out[p.stem] = {"env_steps": steps, "err": err, "smooth": sm, "converged_at": at_step, "final": final,
                       "path": p}
    return out


@dataclass
class Collected:
    sources: Sources
    registration: Any
    registration_real: Any
    tracking: dict[str, Mapping]
    tracking_real: dict[str, Mapping]
    edm: Any
    latents: Any
    throughput: tuple[Path, Mapping] | None
    curves: dict[str, dict]
    maes: dict[str, dict[str, float]]        # edm.json `emg_mae`: {weight: {channel: MAE}}
    baselines: dict[str, Mapping] = field(default_factory=dict)        # tracking.json "baselines"
    baselines_real: dict[str, Mapping] = field(default_factory=dict)
    track: Mapping | None = None             # params `track` (the run's settings, for the deviations table)


def emg_maes(edm: Any, path: Path) -> dict[str, dict[str, float]]:
    """edm.json `emg_mae`, checked; {} when the file or the entry is absent."""
    if edm is None or "emg_mae" not in edm:
        return {}
    maes = at(edm, path, ["emg_mae"], "mapping")
    for w, per in maes.items():
        for ch in at(edm, path, ["emg_mae", w], "mapping"):
            at(edm, path, ["emg_mae", w, ch])
    return {w: dict(per) for w, per in maes.items()}


def collect(sources: Sources, s: ReportSettings, track: Mapping | None = None) -> Collected:
    """Read (and check) every input that is there."""
    edm = load_json(sources.edm)
    if edm is not None:
        at(edm, sources.edm, ["data"], "str")
    latents = load_json(sources.latents)
    if latents is not None:
        at(latents, sources.latents, ["data"], "str")
        for w in (k for k in latents if k not in ("data",)):
            for layer in at(latents, sources.latents, [w], "mapping"):
                at(latents, sources.latents, [w, layer], "mapping")
    tracking, tracking_real = load_json(sources.tracking), load_json(sources.tracking_real)
    return Collected(sources, load_json(sources.registration), load_json(sources.registration_real),
                     tracking_entries(tracking, sources.tracking),
                     tracking_entries(tracking_real, sources.tracking_real),
                     edm, latents, newest_throughput(sources.throughput_dir),
                     training_curves(sources.training_dir, s), emg_maes(edm, sources.edm),
                     tracking_baselines(tracking, sources.tracking),
                     tracking_baselines(tracking_real, sources.tracking_real), track)
