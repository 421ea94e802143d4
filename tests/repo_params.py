"""The repository's params.yaml with a few keys overridden: complete sections for tests that need them."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
_PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())

_DELETE = object()


def repo_params(overrides: dict[str, Any] | None = None) -> dict:
    """A fresh copy of params.yaml with `overrides` ({dotted key: value}; value DELETE removes the key)."""
    p = copy.deepcopy(_PARAMS)
    for dotted, value in (overrides or {}).items():
        *path, last = dotted.split(".")
        node = p
        for k in path:
            node = node[k]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = copy.deepcopy(value)
    return p


DELETE = _DELETE
