"""Reading data files that a user, a disk or another program can spoil: one clear line per failure.

A loader runs its reads inside :func:`file_errors`, which turns the ``OSError`` of a file that
cannot be read (no permission, a folder or a device where a file should be, a file that vanished
since the folder was listed, a disk error) into a :class:`DataFileError` or a
:class:`DataNotFoundError` whose one-line message names the file and the fix.
:func:`require_regular` refuses pipes and devices before they are opened (opening a FIFO blocks
until some other program writes to it).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .base import DataFormatError, DataNotFoundError

__all__ = ["DataFileError", "file_errors", "require_regular"]


class DataFileError(DataFormatError):
    """A data file exists but cannot be read (permissions, a folder or a device in its place, a disk error)."""


_REASONS = {
    errno.EACCES: "permission denied; check its permissions (it must be readable by this user) or remove it",
    errno.EPERM: "operation not permitted; check its permissions or remove it",
    errno.EISDIR: "it is a folder where a file should be; remove or rename it",
    errno.ENOTDIR: "a part of its path is a file, not a folder; check the path",
    errno.ELOOP: "it is a symbolic link that points to itself; remove it",
    errno.EIO: "input/output error (a failing disk or network mount); check the disk and try again",
}


@contextmanager
def file_errors(root: str | os.PathLike[str] | None = None) -> Iterator[None]:
    """Turn an ``OSError`` naming a file into one line naming that file; others pass unchanged.

    ``root`` is the data folder, named in the message of a file that vanished while it was read.
    """
    try:
        yield
    except (DataFormatError, DataNotFoundError):
        raise
    except OSError as e:
        if e.filename in (None, ""):
            raise
        path = os.fsdecode(e.filename) if isinstance(e.filename, (str, bytes, os.PathLike)) else str(e.filename)
        if e.errno == errno.ENOENT:
            where = f" in {root}" if root is not None else ""
            raise DataNotFoundError(f"{path} vanished while the data{where} was being read (it was listed a moment "
                                    f"earlier): the folder is changing, or a symbolic link is broken; point the data "
                                    f"root at a folder that holds only the data set") from e
        reason = _REASONS.get(e.errno or 0, f"{e.strerror or type(e).__name__}; check the file and try again")
        raise DataFileError(f"{path} cannot be read: {reason}") from e


def require_regular(path: Path) -> os.stat_result:
    """The ``stat`` of ``path`` (links followed), refusing anything but a regular file in one line."""
    st = path.stat()
    if stat.S_ISDIR(st.st_mode):
        raise DataFileError(f"{path} cannot be read: {_REASONS[errno.EISDIR]}")
    if not stat.S_ISREG(st.st_mode):
        raise DataFileError(f"{path} is not a regular file (a pipe, socket or device, which would block or never "
                            f"end): remove it from the data folder")
    return st
