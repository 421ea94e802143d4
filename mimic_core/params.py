"""params.yaml: the single home of every number a stage uses."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml

from mimic_core.errors import ParamsError

DEFAULT_PARAMS = Path("params.yaml")


def load_params(path: str | os.PathLike = DEFAULT_PARAMS) -> dict[str, Any]:
    """Read params.yaml; a missing file or bad YAML is a ParamsError naming the file."""
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: params file not found (run from the repository root or pass --params)") from None
    except (OSError, yaml.YAMLError) as e:
        raise ParamsError(f"{path}: cannot read params: {e}") from e
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    return params


def section(params: dict[str, Any], dotted: str) -> Any:
    """params['a']['b'] for 'a.b', with an error naming the missing key."""
    node: Any = params
    for i, key in enumerate(dotted.split(".")):
        if not isinstance(node, dict) or key not in node:
            raise ParamsError(f"params.yaml: missing '{'.'.join(dotted.split('.')[: i + 1])}'")
        node = node[key]
    return node


def params_hash(params: dict[str, Any]) -> str:
    """A short, stable hash of the params (for reports)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
