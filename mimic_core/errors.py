"""Errors that name what went wrong and where: the file and the field."""
from __future__ import annotations

import os


class MimicError(Exception):
    """Base class for errors that the CLI reports as a clear message and a non-zero exit."""


class DataError(MimicError, ValueError):
    """Bad input data: names the file and the field at fault."""

    def __init__(self, path: str | os.PathLike | None, field: str | None, message: str):
        self.path = None if path is None else os.fspath(path)
        self.field = field
        self.reason = message
        where = ": ".join(str(p) for p in (self.path, field and f"field '{field}'") if p)
        super().__init__(f"{where}: {message}" if where else message)


class ModelError(MimicError, ValueError):
    """A model (MJCF) or a name in it that does not fit what the pipeline needs."""


class ParamsError(MimicError, ValueError):
    """A missing or invalid entry in params.yaml."""
