"""What the suite shares: JAX's persistent compilation cache (a program compiled once is reused by every
later test, and by the subprocess tests)."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Before JAX is imported anywhere: the cache folder is shared with subprocesses through the environment.
CACHE_DIR = Path(os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".pytest_jax_cache")))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# The suite's time is mostly XLA compiling MJX programs that then run for a few steps: LLVM's cheapest
# optimisation level compiles them faster (test_track's stored-intention test, measured on 2 cores: 54 -> 44 s)
# and changes no semantics. Subprocess tests inherit it. A caller's own XLA_FLAGS setting of it wins.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()


import pytest  # noqa: E402  (after the cache settings: pytest plugins may import JAX)


@pytest.fixture(scope="session")
def fm():
    """The forelimb model with the default keypoint map, loaded once for the suite. Read-only: a test that
    changes a model loads its own."""
    from mimic_core.model import DEFAULT_KEYPOINT_MAP, load_forelimb

    return load_forelimb(None, DEFAULT_KEYPOINT_MAP)


# The heaviest files first (measured: test_track ~40% of the suite's time, test_track_paper ~25%). `make test`
# hands tests to its pytest-xdist workers in collection order, so the long ones start at once instead of
# last. Stable: the order inside a file, and of the files not named, is kept.
_SLOW_FIRST = ("test_track.py", "test_track_paper.py", "test_stac.py", "test_throughput.py",
               "test_stac_temporal.py", "test_model.py", "test_plausible.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(_SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
