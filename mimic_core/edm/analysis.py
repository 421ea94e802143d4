"""The `edm` stage: the paper's four simplex-projection analyses on the rollouts of every weight.

* ``kind: sim`` -- a simulated muscle activation (``activations``) predicted from the simulated
  joint angles (``qpos``), every frame of every clip.
* ``kind: emg`` -- a prepared EMG envelope channel (``data/prepared/emg.h5``) predicted from the
  reference joint angles (``qpos_reference``) and the simulated actions of the muscle that channel
  records (``actions: channel``, via ``model.emg_muscles``) or of all muscles (``actions: all``),
  over the 300 ms reach epochs.

Series layout. The clips are laid end to end into one NaN-free table (``clips x L`` rows; L = the
clip's frames for ``sim``, the epoch's frames for ``emg``). The first ``lib_fraction`` of the clips
(rollout order) are the library, the rest are predicted: no clip is in both, so a prediction never
borrows a neighbour from its own clip. Each clip is its own lib / pred row pair, trimmed so that no
embedding vector and no Tp-ahead target crosses into another clip: pyEDM trims the (E-1)|tau|
embedding rows from every library pair but Tp rows only from the last one, so the other library
pairs lose their last Tp rows here; prediction pairs lose the embedding rows and their last Tp rows.

Alignment (``emg``). `mimic_core.data.emg.epoch` cuts epoch frame j of a clip at sample
round(onset_s * fps) + j of the record resampled to the envelope rate; the record starts at the raw
clip's frame 0, and the rollouts start at raw frame ``prepare.clip.start_frame``. So epoch frame j
is rollout frame round(onset_s * fps) - start_frame + j, exactly, when the rollouts run at the EMG
rate; ``actions[k]`` is the control the policy computed at frame k (applied over k -> k+1), so an
epoch must end before the last frame. Anything else is an error naming the clip.

Significance: ``n_surrogates`` target-shuffled surrogates (the target series permuted, the
embedding unchanged) give a null distribution of rho; p = (1 + #(null >= rho)) / (1 + n).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from mimic_core.analysis.rollouts import Rollout, check_frames, read_rollout, sweep_keys
from mimic_core.artifacts import PreparedEmg, read_prepared_emg
from mimic_core.config import EdmSection, as_params
from mimic_core.edm.simplex import simplex_surrogates
from mimic_core.errors import DataError, ParamsError


# ----------------------------------------------------------------------------------------------
# the prepared EMG
# ----------------------------------------------------------------------------------------------
Emg = PreparedEmg   # the prepared EMG file's contents (mimic_core.artifacts.prepared_emg)


def load_emg(path: str | Path) -> Emg:
    """data/prepared/emg.h5 (written by `mimic-bench prepare`), checked."""
    return read_prepared_emg(path)


def epoch_frames(emg: Emg, ro: Rollout, start_frame: int) -> tuple[np.ndarray, np.ndarray]:
    """(EMG clip index, first rollout frame of the epoch) for each rollout clip, in rollout order."""
    if sorted(emg.clip_names) != sorted(ro.clip_names):
        only_emg = sorted(set(emg.clip_names) - set(ro.clip_names))
        only_ro = sorted(set(ro.clip_names) - set(emg.clip_names))
        raise DataError(emg.path, "clip_names", f"do not match the clip_names of {ro.path}: only in the EMG "
                        f"{only_emg or '-'}; only in the rollouts {only_ro or '-'}"
                        + ("; duplicated names" if not (only_emg or only_ro) else ""))
    if not np.isclose(ro.fps, emg.fps):
        raise DataError(ro.path, "fps", f"rollouts at {ro.fps:g} Hz, EMG envelopes ({emg.path}) at {emg.fps:g} Hz: "
                        "their frames cannot be aligned one to one")
    idx = np.array([emg.clip_names.index(c) for c in ro.clip_names])
    n = emg.envelope.shape[1]
    steps = ro["actions"].shape[1]            # control steps 0..T-2
    k0 = np.round(emg.onset_s[idx] * emg.fps).astype(np.int64) - int(start_frame)
    for c, (clip, k) in enumerate(zip(ro.clip_names, k0)):
        if k < 0 or k + n > steps:
            raise DataError(emg.path, "onset_s", f"clip {clip}: the epoch (onset {emg.onset_s[idx[c]]:g} s, {n} frames) "
                            f"covers rollout frames {k}..{k + n - 1} (prepare.clip.start_frame {start_frame}), outside "
                            f"the rollout's control steps 0..{steps - 1} in {ro.path}")
    return idx, k0


# ----------------------------------------------------------------------------------------------
# tables and row pairs
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Table:
    data: np.ndarray          # (clips * L, columns + 1): embedding columns, then the target
    columns: list[str]
    target: str
    L: int                    # rows per clip
    n_clips: int


def sim_table(ro: Rollout, muscle: str) -> Table:
    """Simulated joint angles -> the simulated activation of `muscle`, every frame of every clip."""
    m = ro.muscle(muscle)
    q, act = ro["qpos"], ro["activations"]
    T = check_frames(ro, "qpos")
    if act.shape[:2] != q.shape[:2]:
        raise DataError(ro.path, "activations", f"shape {act.shape} does not match qpos {q.shape} (clips, frames)")
    if act.shape[2] != len(ro.muscle_names):
        raise DataError(ro.path, "activations", f"{act.shape[2]} muscles, muscle_names lists {len(ro.muscle_names)}")
    data = np.concatenate([q, act[..., m:m + 1]], axis=-1).reshape(-1, q.shape[2] + 1)
    return Table(data, [f"qpos:{j}" for j in ro.joint_names], f"activations:{muscle}", T, len(ro.clip_names))


def emg_table(ro: Rollout, emg: Emg, channel: str, action_muscles: Sequence[str], start_frame: int) -> Table:
    """Reference joint angles and simulated actions -> an EMG envelope channel, over the reach epochs."""
    ch = emg.channel(channel)
    cols = [ro.muscle(m) for m in action_muscles]
    check_frames(ro, "qpos_reference", ["actions"])
    if ro["actions"].shape[2] != len(ro.muscle_names):
        raise DataError(ro.path, "actions", f"{ro['actions'].shape[2]} muscles, muscle_names lists {len(ro.muscle_names)}")
    idx, k0 = epoch_frames(emg, ro, start_frame)
    n = emg.envelope.shape[1]
    frames = k0[:, None] + np.arange(n)[None, :]                                  # (clips, n) rollout frames
    take = lambda a: np.take_along_axis(a, frames[..., None], axis=1)            # noqa: E731
    data = np.concatenate([take(ro["qpos_reference"]), take(ro["actions"])[..., cols],
                           emg.envelope[idx][..., ch:ch + 1]], axis=-1)
    names = [f"qpos_reference:{j}" for j in ro.joint_names] + [f"actions:{m}" for m in action_muscles]
    return Table(data.reshape(-1, data.shape[-1]), names, f"envelope:{channel}", n, len(ro.clip_names))


def library_clips(n_clips: int, lib_fraction: float, path=None, field: str | None = None) -> int:
    """How many of the first clips form the library: round(n_clips * lib_fraction), at least one of each."""
    n_lib = int(round(n_clips * lib_fraction))
    if not 1 <= n_lib < n_clips:
        raise DataError(path, field, f"{n_clips} clips cannot be split into library and prediction clips "
                        f"with edm.lib_fraction {lib_fraction:g} (need at least one of each)")
    return n_lib


def clip_pairs(n_clips: int, L: int, E: int, tau: int, Tp: int, lib_fraction: float,
               path=None, field: str | None = None) -> tuple[list[int], list[int], int]:
    """(lib, pred, n_lib): 1-based row pairs, one per clip, for clips of L rows laid end to end.

    The first round(n_clips * lib_fraction) clips form the library, the others are predicted; rows
    are trimmed so that no embedding vector and no Tp-ahead target crosses a clip boundary."""
    if Tp < 0:
        raise ParamsError("params.yaml: 'edm.Tp' must be >= 0")
    n_lib = library_clips(n_clips, lib_fraction, path, field)
    shift = (E - 1) * abs(tau)
    if L - shift - Tp < 2:
        raise DataError(path, field, f"series too short: clips of {L} frames leave {L - shift - Tp} predictable "
                        f"rows each with E = {E}, tau = {tau}, Tp = {Tp}; each clip needs more than "
                        f"(E-1)|tau| + Tp + 1 = {shift + Tp + 1} frames")
    lo, hi = (shift, 0) if tau < 0 else (0, shift)
    lib: list[int] = []
    for i in range(n_lib):
        lib += [i * L + 1, (i + 1) * L - (Tp if i < n_lib - 1 else 0)]   # pyEDM trims Tp from the last pair
    pred: list[int] = []
    for i in range(n_lib, n_clips):
        pred += [i * L + 1 + lo, (i + 1) * L - hi - Tp]
    return lib, pred, n_lib


# ----------------------------------------------------------------------------------------------
# one analysis, the stage
# ----------------------------------------------------------------------------------------------
def project(table: Table, E: int, s: EdmSection, path=None, field: str | None = None) -> dict[str, Any]:
    """Simplex projection of the table's target with target-shuffled surrogates -> the report entry."""
    lib, pred, _ = clip_pairs(table.n_clips, table.L, E, s.tau, s.Tp, s.lib_fraction, path, field)
    ncol = len(table.columns)
    try:
        r = simplex_surrogates(table.data, list(range(ncol)), ncol, lib, pred, E=E, Tp=s.Tp, tau=s.tau,
                               exclusion_radius=s.exclusion_radius, n_surrogates=s.n_surrogates, seed=s.seed)
    except DataError as e:
        if e.path is None:
            raise DataError(path, field, e.reason) from None
        raise
    if r.n < 5:
        raise DataError(path, field, f"series too short: only {r.n} predictions could be scored (need >= 5)")
    out: dict[str, Any] = {"rho": r.rho, "mae": r.mae, "surrogate_mean": r.null_mean,
                           "surrogate_p95": r.null_p95, "p_value": r.p_value}
    undefined = [k for k, v in out.items() if not np.isfinite(v)]
    for k in undefined:          # a constant target (e.g. a muscle the policy never activates): no correlation
        out[k] = None
    if undefined:
        out["note"] = f"{', '.join(undefined)} undefined: the target or its prediction is constant"
    out["n"] = int(r.n)
    return out


def run_edm(params: Mapping[str, Any], rollouts_dir: str | Path, emg_path: str | Path,
            weights: Sequence[str] | None = None, echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The stage: {analysis: {weight: {rho, mae, surrogate_mean, surrogate_p95, p_value, n}}, data, settings}."""
    p = as_params(params)
    s = p.edm
    keys = sweep_keys(p, weights)
    start_frame = p.prepare.clip.start_frame
    emg_muscles = p.model.emg_muscles
    emg = load_emg(emg_path) if any(a.kind == "emg" for a in s.analyses.values()) else None
    need = {"sim": ["qpos", "activations"], "emg": ["qpos_reference", "actions"]}
    datasets = sorted({d for a in s.analyses.values() for d in need[a.kind]})
    report: dict[str, Any] = {name: {} for name in s.analyses}
    described: dict[str, Any] = {}
    labels = set()
    for key in keys:
        ro = read_rollout(rollouts_dir, key, datasets)
        labels.add(ro.label)
        for name, a in s.analyses.items():
            if a.kind == "sim":
                table = sim_table(ro, a.muscle)
                where = (ro.path, f"activations:{a.muscle}")
            else:
                if a.actions == "channel":   # the schema checked that model.emg_muscles maps it
                    muscles = [emg_muscles[a.channel]]
                else:
                    muscles = list(ro.muscle_names)
                table = emg_table(ro, emg, a.channel, muscles, start_frame)
                where = (emg.path, f"envelope:{a.channel}")
            report[name][key] = project(table, a.E, s, *where)
            described[name] = {"kind": a.kind, "E": a.E, "columns": table.columns, "target": table.target,
                               "rows_per_clip": table.L}
            if echo:
                v = report[name][key]
                fmt = lambda x: "n/a" if x is None else f"{x:.3f}"   # noqa: E731
                echo(f"{name} lambda_ctrl {key}: rho {fmt(v['rho'])} (surrogates mean {fmt(v['surrogate_mean'])}, "
                     f"p95 {fmt(v['surrogate_p95'])}; p {fmt(v['p_value'])}), n {v['n']}")
    n_clips = len(ro.clip_names)
    n_lib = library_clips(n_clips, s.lib_fraction)
    labels_all = labels | ({emg.label} if emg is not None else set())
    report["data"] = labels_all.pop() if len(labels_all) == 1 else "mixed"
    report["data_sources"] = {"rollouts": ", ".join(sorted(labels)), **({"emg": emg.label} if emg else {})}
    report["settings"] = {**s.model_dump(exclude={"analyses"}), "analyses": described, "lib_clips": n_lib,
                          "pred_clips": n_clips - n_lib,
                          "split": "the first lib_clips clips (rollout order) are the library, the rest are predicted",
                          "prepare_clip_start_frame": start_frame}
    if emg is not None:
        from mimic_core.edm.emg_fit import emg_epochs, emg_mae

        epochs = emg_epochs(Path(emg_path), Path(rollouts_dir), emg_muscles, start_frame, keys)
        report["emg_mae"] = emg_mae(epochs)
        report["emg_mae_muscles"] = epochs["muscles"]
    return report
