"""The deviations table of the summary: every TRACK setting of the run's profile that differs from the paper
profile (the original's setup), each with its reason from bench/deviations.yaml, and the paper profile's own
differences from the original code and the paper's text."""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, Mapping

import yaml

from mimic_core.errors import DataError

DEVIATIONS_FILE = Path(__file__).resolve().parents[1] / "deviations.yaml"
PAPER_PROFILE = "paper"
NO_REASON = "no reason recorded ✗"


def load_deviations(path: str | Path = DEVIATIONS_FILE) -> dict:
    """bench/deviations.yaml, checked: `track` {setting: reason}, `paper_profile` [{setting, ours, original, why}]."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise DataError(path, None, f"cannot read the deviations: {e}") from None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("track"), Mapping):
        raise DataError(path, "track", "expected a mapping of settings to reasons")
    for k, v in doc["track"].items():
        if not isinstance(v, str) or not v.strip():
            raise DataError(path, f"track/{k}", "expected a reason (text)")
    rows = doc.get("paper_profile") or []
    for i, r in enumerate(rows):
        for k in ("setting", "ours", "original", "why"):
            if not isinstance(r, Mapping) or not isinstance(r.get(k), str):
                raise DataError(path, f"paper_profile/{i}/{k}", "expected text")
    return {"track": dict(doc["track"]), "paper_profile": list(rows)}


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, Mapping):
        out = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: list(d) if isinstance(d, tuple) else d}


def _settings(params: Mapping[str, Any], profile: str) -> dict[str, Any]:
    """The flattened TRACK settings of one profile (weight 0: the weight is the sweep's axis)."""
    from mimic_core.config import as_params

    p = copy.deepcopy(dict(params))
    p["track"] = {**p["track"], "profile": profile}
    cfg = dataclasses.asdict(as_params(p).track.policy(0.0))
    cfg.pop("ctrl_cost_weight")
    return _flat(cfg)


def _reason(key: str, reasons: Mapping[str, str]) -> tuple[str, str]:
    """(the key of the reason, the reason) recorded for `key` or the longest prefix of it."""
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        r = reasons.get(".".join(parts[:n]))
        if r:
            return ".".join(parts[:n]), " ".join(r.split())
    return key, NO_REASON


def deviation_rows(params: Mapping[str, Any] | None, doc: Mapping) -> tuple[str | None, list[list[str]]]:
    """(the run's profile, [setting, this run, original, why]) for every TRACK setting that differs; settings that
    share a reason (a prefix such as `physics`) share a row."""
    if not isinstance(params, Mapping) or not isinstance(params.get("track"), Mapping):
        return None, []
    profile = str(params["track"].get("profile", "cpu"))
    if PAPER_PROFILE not in (params["track"].get("profiles") or {}) or profile == PAPER_PROFILE:
        return profile, []
    ours, paper = _settings(params, profile), _settings(params, PAPER_PROFILE)
    grouped: dict[str, list] = {}
    for k in ours:
        if ours[k] != paper[k]:
            rk, why = _reason(k, doc["track"])
            grouped.setdefault(rk, [[], why])[0].append(k)
    rows = []
    for rk, (keys, why) in grouped.items():
        if keys == [rk]:
            rows.append([f"track.{rk}", _show(ours[rk]), _show(paper[rk]), why])
        else:
            sub = [k[len(rk) + 1:] for k in keys]
            rows.append([f"track.{rk}", "; ".join(f"{n} {_show(ours[k])}" for n, k in zip(sub, keys)),
                         "; ".join(f"{n} {_show(paper[k])}" for n, k in zip(sub, keys)), why])
    return profile, rows


def _show(v: Any) -> str:
    return "null" if v is None else ", ".join(map(str, v)) if isinstance(v, list) else str(v)


def deviations_section(params: Mapping[str, Any] | None, md_table, path: str | Path = DEVIATIONS_FILE) -> list[str]:
    """The Markdown section."""
    doc = load_deviations(path)
    profile, rows = deviation_rows(params, doc)
    lines = ["## Deviations from the original code and the paper", ""]
    if profile is None:
        lines += ["not run: the report was given no params (track) to compare.", ""]
    elif profile == PAPER_PROFILE:
        lines += ["This run used the `paper` profile: its TRACK settings are the original's (the exceptions below).", ""]
    elif rows:
        lines += [f"This run used the `{profile}` profile. Its TRACK settings that differ from the `paper` profile "
                  f"(the original's setup, shared/reference/original_track_settings.md), read from params.yaml, with "
                  f"the reason for each from {Path(path).name}:", "",
                  *md_table(["setting", f"this run ({profile})", "original (paper profile)", "why"], rows), ""]
    else:
        lines += [f"This run used the `{profile}` profile; no TRACK setting differs from the `paper` profile.", ""]
    lines += ["Where the `paper` profile itself differs from the original code or the paper's text:", "",
              *md_table(["setting", "paper profile", "original / paper", "why"],
                        [[r["setting"], r["ours"], r["original"], " ".join(r["why"].split())]
                         for r in doc["paper_profile"]]), ""]
    return lines
