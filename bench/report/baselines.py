"""Tracking per joint against the truth (the twin) or the reference (real clips), beside trivial baselines:
the clip-agnostic mean trajectory, the twin's own controls replayed open loop, and the registered reference
itself. One table of errors and one of each policy's gain over the baselines (positive: the policy is better)."""
from __future__ import annotations

from typing import Mapping, Sequence

from bench.report.inputs import _is_number, label, weight_order
from bench.report.rows import fmt

BASELINE_NAMES = {"mean_trajectory": "mean trajectory (baseline)", "open_loop": "open loop, stored controls (baseline)",
                  "reference": "registered reference"}
GAINS_OVER = ("mean_trajectory", "open_loop")


def _scored(m: Mapping, against_truth: bool) -> Mapping | None:
    """The errors of one entry against the truth or the reference (None when it has none)."""
    e = m.get("truth") if against_truth else m
    return e if isinstance(e, Mapping) and _is_number(e.get("joint_error_deg")) else None


def _errors(e: Mapping | None, joints: Sequence[str]) -> list[float | None]:
    if e is None:
        return [None] * (len(joints) + 2)
    per = e.get("joint_error_deg_per_joint") or {}
    kp = (e.get("keypoint_error_mm") or {}).get("mean")
    return [per.get(j) for j in joints] + [e.get("joint_error_deg"), kp]


def tracking_tables(policies: Mapping[str, Mapping], baselines: Mapping[str, Mapping], part: str
                    ) -> tuple[str, list[str], list[list[str]], list[str], list[list[str]]] | None:
    """(what the errors are against, error table head, rows, gain table head, rows) on one part of the clips
    ("held_out" or "train"); None when no policy has that part."""
    entries = {w: m["parts"][part] for w, m in sorted(policies.items(), key=lambda kv: weight_order(kv[0]))
               if part in m.get("parts", {})}
    if not entries:
        return None
    first = next(iter(entries.values()))
    truth = isinstance(first.get("truth"), Mapping)
    joints = list((first.get("joint_error_deg_per_joint") or {}))
    against = "the twin's truth (true joint angles, noise-free keypoints)" if truth else "the registered reference"
    head = ["", *[f"{j} deg" for j in joints], "all joints deg", "keypoints mm"]
    rows, errs = [], {}
    for w, m in entries.items():
        errs[w] = _errors(_scored(m, truth), joints)
        rows.append([f"policy lambda_ctrl {w}", *(fmt(v, ".2f") for v in errs[w])])
    base = {}
    for name, title in BASELINE_NAMES.items():
        e = _scored((baselines.get(name) or {}).get(part) or {}, truth)
        if e is None:
            continue
        base[name] = _errors(e, joints)
        rows.append([title, *(fmt(v, ".2f") for v in base[name])])
    gain_head = ["policy", *[f"{j} over {g.replace('_', ' ')}" for g in GAINS_OVER if g in base for j in joints]]
    gain_rows = []
    for w, e in errs.items():
        cells = []
        for g in (g for g in GAINS_OVER if g in base):
            for i in range(len(joints)):
                if e[i] is None or base[g][i] is None:
                    cells.append("n/a")
                else:
                    d = base[g][i] - e[i]
                    cells.append(fmt(d, "+.2f") + ("" if d > 0 else " ✗"))
        gain_rows.append([f"lambda_ctrl {w}", *cells])
    return against, head, rows, gain_head, gain_rows


def tracking_section(sets: Sequence[tuple[Mapping[str, Mapping], Mapping[str, Mapping]]], md_table) -> list[str]:
    """The Markdown section: for each data set and part of the clips, the errors and the gains."""
    lines = ["## Tracking against the truth and baselines, per joint", "",
             "Deterministic rollouts from each clip's first frame, frames 1.. scored. The gain is the baseline's error "
             "minus the policy's, in degrees (✗: the policy is no better than the baseline). The mean trajectory is "
             "the frame-by-frame mean of the training clips' reference, output for every clip; the open-loop "
             "baseline replays the twin's stored controls (those that made the motion) in the policies' physics from "
             "the reference's first pose.", ""]
    shown = False
    for policies, baselines in sets:
        if not policies:
            continue
        data = label(next(iter(policies.values()))["data"])
        for part in ("held_out", "train"):
            t = tracking_tables(policies, baselines, part)
            if t is None:
                continue
            against, head, rows, gain_head, gain_rows = t
            n = next(iter(policies.values()))["parts"][part].get("n_clips", "?")
            lines += [f"### {data}, {part.replace('_', '-')} clips ({n}): error against {against}", "",
                      *md_table(head, rows), ""]
            if len(gain_head) > 1:
                lines += ["Gain over the baselines, deg:", "", *md_table(gain_head, gain_rows), ""]
            shown = True
    if not shown:
        lines += ["not run: no tracking metrics.", ""]
    return lines
