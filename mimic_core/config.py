"""The params schema: one pydantic model per section, every key known, types and ranges declared.

`Section` is the base of every model: unknown keys are refused (and named with the closest known
key), values are not coerced (``"3"`` is not a number, ``true`` is not an integer, ``99.7`` is not a
frame count), and non-finite numbers are refused. `validate(model, data, where, file)` turns
pydantic's errors into one `ParamsError` that names the file and each offending key.
"""
from __future__ import annotations

import difflib
from typing import Any, Mapping, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from mimic_core.errors import ParamsError

M = TypeVar("M", bound=BaseModel)


class Section(BaseModel):
    """A params section: strict types, no unknown keys, finite numbers, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


def _known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names of the (nested) model that `loc` (up to its last part) points into."""
    node: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or not (isinstance(node, type) and issubclass(node, BaseModel)):
            continue
        f = node.model_fields.get(part)
        if f is None:
            return []
        node = _model_of(f.annotation)
    if isinstance(node, type) and issubclass(node, BaseModel):
        return list(node.model_fields)
    return []


def _model_of(annotation: Any) -> Any:
    """The BaseModel inside an annotation (X, X | None, dict[str, X], list[X]), else the annotation."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if isinstance(found, type) and issubclass(found, BaseModel):
            return found
    return annotation


def _dotted(where: str, loc: tuple) -> str:
    parts = [where] if where else []
    for p in loc:
        if isinstance(p, int):
            parts[-1:] = [f"{parts[-1]}[{p}]" if parts else f"[{p}]"]
        else:
            parts.append(str(p))
    return ".".join(parts)


def describe(e: ValidationError, model: type[BaseModel], where: str) -> list[str]:
    """One line per error: the dotted key, what is wrong, and for an unknown key the closest known one."""
    lines = []
    for err in e.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        key = _dotted(where, loc)
        if err["type"] == "extra_forbidden":
            known = _known_keys(model, loc)
            close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            hint = f"; did you mean '{_dotted(where, loc[:-1] + (close[0],))}'?" if close else ""
            lines.append(f"'{key}': unknown key{hint} (known: {', '.join(known) or 'none'})")
        elif err["type"] == "missing":
            lines.append(f"'{key}': missing")
        else:
            value = err.get("input")
            shown = "" if isinstance(value, Mapping) else f" (got {value!r})"
            lines.append(f"'{key}': {err['msg']}{shown}")
    return lines


def validate(model: type[M], data: Any, where: str = "", file: str = "params.yaml") -> M:
    """`model` built from `data`, or a ParamsError naming the file and every bad key."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        lines = describe(e, model, where)
        head = f"{file}: " + (lines[0] if len(lines) == 1 else f"{len(lines)} problems in '{where or 'params'}':")
        body = "" if len(lines) == 1 else "".join(f"\n  {line}" for line in lines)
        raise ParamsError(head + body) from None
