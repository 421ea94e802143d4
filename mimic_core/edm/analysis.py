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

CCM (``edm.ccm``, pyEDM 2.5.7 semantics, ``mimic_core.edm.ccm``) over the same reach epochs: every joint
angle (E lags each) and one muscle signal, both directions, at library sizes that are fractions of the
usable rows; rows whose lags reach into the clip before are not used (pyEDM's validLib), and with
``exclusion: clip`` a row's neighbours never come from its own reach (the radius is an epoch less one
row), so skill must come from other reaches.  The cross map of the joints onto the signal at the full
library is tested against surrogate signals (``surrogates``: clip-wise phase randomisation keeps each
reach's spectrum; a clip swap keeps everything reaches share and breaks only the pairing).  `emg` pairs
use the reference joints and the recorded envelope, so they do not depend on the policy and are computed
once; `sim` pairs use each policy's simulated joints and activation.

S-map (``edm.smap``): rho against theta of each EMG envelope predicting itself (univariate, E lags) over
the epochs' clip pairs, as ``predict_nonlinear``; rho rising above theta 0 (a global linear map) is the
mark of state-dependent, nonlinear dynamics.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from mimic_core.analysis.rollouts import Rollout, check_frames, read_rollout, sweep_keys
from mimic_core.artifacts import PreparedEmg, read_prepared_emg
from mimic_core.config import CcmSection, EdmSection, SmapSection, as_params
from mimic_core.edm.simplex import simplex_surrogates, surrogate_p_value
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


def sim_epoch_table(ro: Rollout, emg: Emg, muscle: str, start_frame: int) -> Table:
    """Simulated joint angles and the simulated activation of `muscle` over the reach epochs."""
    m = ro.muscle(muscle)
    check_frames(ro, "qpos", ["actions"])
    act = ro["activations"]
    if act.shape[:2] != ro["qpos"].shape[:2]:
        raise DataError(ro.path, "activations", f"shape {act.shape} does not match qpos {ro['qpos'].shape}")
    _, k0 = epoch_frames(emg, ro, start_frame)
    n = emg.envelope.shape[1]
    frames = k0[:, None] + np.arange(n)[None, :]
    take = lambda a: np.take_along_axis(a, frames[..., None], axis=1)            # noqa: E731
    data = np.concatenate([take(ro["qpos"]), take(act)[..., m:m + 1]], axis=-1)
    return Table(data.reshape(-1, data.shape[-1]), [f"qpos:{j}" for j in ro.joint_names], f"activations:{muscle}",
                 n, len(ro.clip_names))


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


def _inside_clips(table: Table, E: int, tau: int) -> np.ndarray:
    """(rows,) bool: rows whose E lags all lie in their own clip."""
    shift = (E - 1) * abs(tau)
    pos = np.tile(np.arange(table.L), table.n_clips)
    return pos >= shift if tau < 0 else pos < table.L - shift


def _undefined(table: Table, path, field) -> dict[str, Any] | None:
    y = table.data[:, -1]
    if np.ptp(y) == 0:
        return {"note": f"the target {table.target} is constant (e.g. a muscle the policy never activates): "
                        "no cross map", "n_valid": 0}
    return None


def cross_map(table: Table, c: CcmSection, tau: int, path=None, field: str | None = None) -> dict[str, Any]:
    """CCM of the table's joints and its signal, both directions, with the convergence test and the
    surrogate tests of the joints' cross map onto the signal at the full library -> the report entry."""
    from mimic_core.edm.ccm import ccm, convergence, cross_map_full
    from mimic_core.edm.surrogates import make_surrogates

    bad = _undefined(table, path, field)
    if bad:
        return bad
    ncol = len(table.columns)
    ok = _inside_clips(table, c.E, tau)
    M = int(ok.sum())
    sizes = sorted({max(c.E + 2, int(round(f * M))) for f in c.lib_fractions})
    excl = table.L - 1 if c.exclusion == "clip" else int(c.exclusion)
    clips = np.repeat(np.arange(table.n_clips), table.L)
    try:
        r = ccm(table.data, list(range(ncol)), [ncol], sizes, sample=c.sample, E=c.E, Tp=0, tau=tau,
                exclusion_radius=excl, seed=c.seed, valid_lib=ok)
        y = table.data[:, ncol]
        out: dict[str, Any] = {"n_valid": M, "lib_sizes": [int(v) for v in r.lib_sizes],
                               "rho_x_to_y": [float(v) for v in r.rho_x_to_y],
                               "rho_y_to_x": [float(v) for v in r.rho_y_to_x],
                               "rho_x_to_y_max_lib": float(r.rho_x_to_y[-1]),
                               "rho_y_to_x_max_lib": float(r.rho_y_to_x[-1]),
                               "convergence": convergence(r), "null": {}}
        for method in c.surrogates:
            sur = make_surrogates(y, method, c.n_surrogates, c.seed, clips)
            rho = cross_map_full(table.data, list(range(ncol)), np.concatenate([y[None], sur]), E=c.E, tau=tau,
                                 exclusion_radius=excl, valid_lib=ok)
            p, mean, p95 = surrogate_p_value(rho[0], rho[1:])
            out["rho_x_to_y_full_library"] = float(rho[0])
            out["null"][method] = {"mean": mean, "p95": p95, "p_value": p, "n": int(c.n_surrogates)}
    except DataError as e:
        if e.path is None:
            raise DataError(path, field, e.reason) from None
        raise
    return _finite_or_none(out)


def _finite_or_none(obj):
    """NaN and inf (an undefined correlation) written as null, never as NaN."""
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite_or_none(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def nonlinearity(table: Table, sm: SmapSection, s: EdmSection, path=None, field: str | None = None) -> dict[str, Any]:
    """S-map rho against theta of the table's signal predicting itself over the epochs' clip pairs."""
    from mimic_core.edm.smap import predict_nonlinear

    bad = _undefined(table, path, field)
    if bad:
        return bad
    lib, pred, _ = clip_pairs(table.n_clips, table.L, sm.E, s.tau, s.Tp, s.lib_fraction, path, field)
    y = table.data[:, -1:]
    try:
        rows = predict_nonlinear(y, [0], [0], lib, pred, E=sm.E, Tp=s.Tp, tau=s.tau, theta=sm.thetas,
                                 exclusion_radius=s.exclusion_radius)
    except DataError as e:
        if e.path is None:
            raise DataError(path, field, e.reason) from None
        raise
    rho = np.array([r["rho"] for r in rows])
    i0 = sm.thetas.index(0.0)
    best = int(np.nanargmax(rho)) if np.isfinite(rho).any() else i0
    return _finite_or_none({"theta": list(sm.thetas), "rho": [float(v) for v in rho], "n": int(rows[i0]["n"]),
                            "rho_theta0": float(rho[i0]), "theta_best": float(sm.thetas[best]),
                            "rho_best": float(rho[best]), "rho_gain": float(rho[best] - rho[i0])})


def run_edm(params: Mapping[str, Any], rollouts_dir: str | Path, emg_path: str | Path,
            weights: Sequence[str] | None = None, echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The stage: {analysis: {weight: {rho, mae, surrogate_mean, surrogate_p95, p_value, n}}, data, settings}."""
    p = as_params(params)
    s = p.edm
    keys = sweep_keys(p, weights)
    start_frame = p.prepare.clip.start_frame
    emg_muscles = p.model.emg_muscles
    needs_emg = (any(a.kind == "emg" for a in s.analyses.values()) or s.smap is not None
                 or s.ccm is not None)   # CCM and S-map run over the reach epochs the EMG file defines
    emg = load_emg(emg_path) if needs_emg else None
    need = {"sim": ["qpos", "activations"], "emg": ["qpos_reference", "actions"]}
    datasets = sorted({d for a in s.analyses.values() for d in need[a.kind]}
                      | ({"qpos_reference", "actions"} if (s.smap or s.ccm) else set())
                      | ({"qpos", "activations", "actions"} if s.ccm else set()))
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
    if s.ccm is not None:
        report["ccm"] = _run_ccm(s, rollouts_dir, keys, emg, emg_path, start_frame, echo)
    if s.smap is not None:
        report["smap_nonlinearity"] = {}
        for ch in s.smap.channels:
            emg.channel(ch)
            table = emg_table(ro, emg, ch, [], start_frame)
            v = report["smap_nonlinearity"][ch] = nonlinearity(table, s.smap, s, emg.path, f"envelope:{ch}")
            if echo and "rho" in v:
                fmt = lambda x: "n/a" if x is None else f"{x:.3f}"   # noqa: E731
                echo(f"smap {ch}: rho {fmt(v['rho_theta0'])} at theta 0, {fmt(v['rho_best'])} at theta "
                     f"{v['theta_best']:g}")
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


def _run_ccm(s: EdmSection, rollouts_dir, keys, emg: Emg, emg_path, start_frame: int, echo) -> dict[str, Any]:
    """{pair: {"reference": entry}} for emg pairs (one policy-free table), {pair: {weight: entry}} for sim."""
    c = s.ccm
    out: dict[str, Any] = {}
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"   # noqa: E731
    for key_i, key in enumerate(keys):
        ro = read_rollout(rollouts_dir, key, ["qpos", "qpos_reference", "activations", "actions"])
        for name, pair in c.pairs.items():
            if pair.kind == "emg":
                if key_i:
                    continue
                table = emg_table(ro, emg, pair.channel, [], start_frame)
                where, slot = (emg.path, f"envelope:{pair.channel}"), "reference"
            else:
                table = sim_epoch_table(ro, emg, pair.muscle, start_frame)
                where, slot = (ro.path, f"activations:{pair.muscle}"), key
            v = out.setdefault(name, {})[slot] = cross_map(table, c, s.tau, *where)
            if echo and "rho_x_to_y" in v:
                nulls = ", ".join(f"{m} p {fmt(n['p_value'])}" for m, n in v["null"].items())
                echo(f"ccm {name} {slot}: joints xmap signal rho {fmt(v['rho_x_to_y'][0])} -> "
                     f"{fmt(v['rho_x_to_y_max_lib'])} (L {v['lib_sizes'][0]} -> {v['lib_sizes'][-1]}); {nulls}")
    return out
