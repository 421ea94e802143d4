"""Multi-process training (jax.distributed) on CPU: two local processes of one device each train the same
policy as one process with two devices (the same global mesh and program), process 0 alone writes, and a
second run resumes from process 0's checkpoint, broadcast to the other."""
from __future__ import annotations

import copy
import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import yaml

from mimic_core.errors import MimicError
from mimic_core.track.distributed import initialize
from tests.test_track import ROOT, TINY, _clips, _write_clips

WALL_CLOCK = {"seconds", "steps_per_s"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int) -> dict:
    flags = os.environ.get("XLA_FLAGS", "")   # the suite's (conftest), plus the host device count
    flags = (flags + f" --xla_force_host_platform_device_count={devices}").strip()
    return {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}


def _train_argv(tmp: Path, tag: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "bench.cli", "train", "--ctrl-cost", "0.15", "--registered", str(tmp / "registered"),
            "--out", str(tmp / tag / "policy"), "--metrics-csv", str(tmp / tag / "train.csv"),
            "--checkpoints", str(tmp / tag / "ckpt"), "--params", str(tmp / "params.yaml"), *extra]


def _two_processes(tmp: Path, tag: str) -> list[subprocess.CompletedProcess]:
    port = _free_port()
    procs = []
    for pid in (0, 1):
        # process 1 is given its own output paths: it must write nothing there
        argv = _train_argv(tmp, tag if pid == 0 else f"{tag}-p1", ["--coordinator", f"127.0.0.1:{port}",
                                                                   "--num-processes", "2", "--process-id", str(pid)])
        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(1),
                                      cwd=tmp))
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=900)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def _rows(path: Path) -> list[dict]:
    with path.open() as f:
        return [{k: v for k, v in r.items() if k not in WALL_CLOCK} for r in csv.DictReader(f)]


def _params_leaves(policy: Path) -> list[np.ndarray]:
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as ckptr:
        tree = ckptr.restore((policy / "params").resolve())
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


@pytest.fixture(scope="module")
def workdir(fm, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distributed")
    _write_clips(_clips(fm), tmp / "registered")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["track"] = {**copy.deepcopy(TINY), "ctrl_cost_weights": [0.15]}
    params["model"]["xml"] = str(ROOT / params["model"]["xml"])
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp


def test_two_processes_train_as_one_process_with_two_devices(workdir, fm):
    tmp = workdir
    one = subprocess.run(_train_argv(tmp, "single", []), capture_output=True, text=True, env=_env(2), cwd=tmp)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _two_processes(tmp, "multi")
    for r in two:
        assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-4000:])
    assert "process 0 of 2" in two[0].stderr and "process 1 of 2" in two[1].stderr
    assert not (tmp / "multi-p1").exists()          # process 1 wrote nothing
    single, multi = _rows(tmp / "single" / "train.csv"), _rows(tmp / "multi" / "train.csv")
    assert len(multi) == len(single) > 1
    for a, b in zip(multi, single):                 # the same program over the same 2-device mesh
        assert set(a) == set(b)
        for k in a:
            assert float(a[k]) == pytest.approx(float(b[k]), rel=1e-5, abs=1e-6), (k, a[k], b[k])
    for a, b in zip(_params_leaves(tmp / "multi" / "policy"), _params_leaves(tmp / "single" / "policy")):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # evaluate reads it as it reads a one-process policy
    from mimic_core.track.config import track_config
    from mimic_core.track.env import ImitationEnv
    from mimic_core.track.evaluate import abstract_policy
    from mimic_core.track.networks import make_networks
    from mimic_core.track.run import load_policy

    cfg = track_config(TINY, 0.15)
    env = ImitationEnv(fm.model, _clips(fm), cfg.env, cfg.physics, 0.15)
    abstract = abstract_policy(make_networks(cfg.network, env.action_size), env)
    got = [np.asarray(x) for x in jax.tree_util.tree_leaves(load_policy(tmp / "multi" / "policy", abstract))]
    ref = [np.asarray(x) for x in jax.tree_util.tree_leaves(load_policy(tmp / "single" / "policy", abstract))]
    assert len(got) == len(ref) > 0
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    import json

    meta = json.loads((tmp / "multi" / "policy" / "policy.json").read_text())
    assert meta["settings"]["n_devices"] == 2 and meta["settings"]["processes"] == {"n_processes": 2,
                                                                                   "local_devices": 1}

    # A second run finds process 0's last checkpoint: every process resumes from it (broadcast), no iteration
    # is run again, and process 0 writes the same rows.
    before = (tmp / "multi" / "train.csv").read_text()
    again = _two_processes(tmp, "multi")
    for r in again:
        assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-4000:])
    assert (tmp / "multi" / "train.csv").read_text() == before


def test_partial_flags_are_refused():
    with pytest.raises(MimicError, match="--coordinator, --num-processes and --process-id together"):
        initialize("127.0.0.1:1234", None, 0)
    with pytest.raises(MimicError, match="--process-id 2 is not in 0..1"):
        initialize("127.0.0.1:1234", 2, 2)
    assert initialize() is False   # one process: nothing to join
