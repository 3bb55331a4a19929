"""What every export needs: the run a user named, its class names, and a destination that is free."""

from __future__ import annotations

import os
from pathlib import Path

from ..store import DEFAULT_ROOT, Run, find_run

__all__ = ["ExportError", "RunLike", "class_names", "free_destination", "resolve_run"]

#: A run as the export functions accept it: a ``store.Run``, a run folder, or a run id (a unique
#: prefix is enough) under ``root``.
RunLike = Run | str | os.PathLike


class ExportError(ValueError):
    """An export or a load cannot be done: the message says why and what to do instead."""


def resolve_run(run: RunLike, root: str | os.PathLike = DEFAULT_ROOT) -> Run:
    """The :class:`~hcl_core.store.Run` named by ``run``; :class:`RunFileError` if there is none."""
    if isinstance(run, Run):
        return run
    if not isinstance(run, str | os.PathLike):
        raise TypeError(f"run must be a store.Run, a run folder or a run id, got {type(run).__name__}")
    return find_run(str(run), root)


def class_names(run: Run, n_classes: int) -> tuple[str, ...]:
    """The names of classes ``0 .. n_classes - 1``: as the run saved them with its evaluation
    inputs, else the data set's registry record, else the class index (the store decides)."""
    return run.class_names(n_classes)


def free_destination(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a Path, or an :class:`ExportError` if something is there already (never overwritten)."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise ExportError(f"{path} already exists: choose another {what} (exports never overwrite a file)")
    return path
