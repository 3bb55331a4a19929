"""Atomic file writes: a file appears whole or not at all, never half written.

Every run file, sweep summary and export goes through :func:`atomic_file`: written to a
temporary file in the same folder, fsynced, then renamed over the target, so a reader (or a
process killed at any moment) sees the old file or the new one. :func:`rewrite_in_place` is the
last resort on a full disk, where the temporary file gets no space.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = ["atomic_file", "atomic_save_npz", "atomic_write_bytes", "atomic_write_json", "json_default",
           "rewrite_in_place"]


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file that appears at ``path`` only once the block has finished without error.

    Written to a temporary file in the same folder, fsynced, then renamed over ``path``:
    readers see the old file or the new one, never half of it. On an error the temporary
    file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); a run file gets the mode any new file would get.
        os.chmod(tmp, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file and a rename: readers see old or new, never half."""
    with atomic_file(path) as f:
        f.write(data)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=json_default).encode())


def json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def rewrite_in_place(path: Path, data: bytes) -> None:
    """Overwrite ``path`` where it lies: the last resort on a full disk, where the temporary file of
    an atomic write gets no space. A small file reuses its own block, so this still fits."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.truncate(len(data))
        f.flush()
        os.fsync(f.fileno())
