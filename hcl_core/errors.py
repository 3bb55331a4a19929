"""What a failure the user can cause says: one plain line naming the file and what to do.

:func:`user_message` turns the exceptions that bad input, a full or read-only disk, a missing
permission, a corrupt file or too little memory raise into one sentence, and returns None for
anything else (a bug, whose traceback must stay visible). :func:`one_line` makes any message
safe to print: no ANSI escape sequences or other control characters (a hostile file name
cannot recolour or rewrite the terminal), no line breaks, and no names of the temporary
folders a command works in (a bundle being unpacked, a run shipped back by a sweep task).

This module imports nothing heavy: the exception types of the data, store and image modules
are matched only once those modules are loaded (an exception of theirs implies they are).
"""

from __future__ import annotations

import errno
import re
import sys
import tempfile
from dataclasses import dataclass

__all__ = ["UsageError", "Where", "describe_os_error", "one_line", "user_message"]

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: Temporary folders of this package (bundle import, a run landing, a shipped-back task) and
#: Python's own ``mkdtemp`` names under the system temp folder: shown as the path inside them.
_TEMP_DIRS = re.compile(
    r"(?:[^\s'\"]*/)?(?:\.import-|\.landing-|hcl-sweep-)[A-Za-z0-9_]+/"
    + "|" + re.escape(tempfile.gettempdir().rstrip("/")) + r"/tmp[a-z0-9_]{8}/"
)

#: The temporary name of a file being written atomically (``.name.x8k2m1qz.tmp``): shown as ``name``.
_ATOMIC_TMP = re.compile(r"(^|/|\s)\.([^/\s]+?)\.[A-Za-z0-9_]{8}\.tmp\b")
_TORCH_OOM = re.compile(r"can't allocate memory|not enough memory|out of memory", re.IGNORECASE)
# errno -> (what happened, what to do); the advice about --out is added where a flag is known
_OS_REASONS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on the disk", "free some space and try again"),
    errno.EDQUOT: ("the disk quota is used up", "free some space and try again"),
    errno.EACCES: ("permission denied", "check its permissions"),
    errno.EPERM: ("operation not permitted", "check its permissions"),
    errno.EROFS: ("the file system is read-only", "use a folder on a writable disk"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "give a path made of folders"),
    errno.EISDIR: ("it is a folder, not a file", "give the path of a file"),
    errno.EEXIST: ("it already exists", "choose another name"),
    errno.ENOENT: ("it does not exist", "check the path"),
    errno.ENAMETOOLONG: ("the name is too long", "use a shorter path"),
    errno.ELOOP: ("too many symbolic links in the path", "check the path"),
    errno.EIO: ("input/output error (the disk or a network mount failed)", "check the disk and try again"),
    errno.EMFILE: ("too many open files", "close other programs or raise the limit (ulimit -n)"),
    errno.ENFILE: ("too many open files on this machine", "close other programs and try again"),
    errno.ENOMEM: ("not enough memory", "close other programs or use less data"),
    errno.EFBIG: ("a file grew past the size this system allows (a quota or ulimit -f)",
                  "free space or raise the limit"),
    errno.ENXIO: ("it is not a regular file (a device or a pipe without a reader)", "give a regular file"),
}
#: Errors of writing, where choosing another output folder is a fix.
_WRITE_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR,
                 errno.EEXIST)


@dataclass(frozen=True)
class Where:
    """What a command works on, to name in a message when an exception names no file.

    Attributes:
        path: the file or folder the command reads or writes (e.g. the runs folder).
        flag: the option that named it (``--out``), so the advice can say which to change.
        doing: what the command was doing, for messages without a file (``training``).
        data_root: the data folder of the run, named for image errors.
        memory_advice: what to do when memory runs out.
    """

    path: str | None = None
    flag: str | None = None
    doing: str = "running"
    data_root: str | None = None
    memory_advice: str = "close other programs and try again"


def one_line(text: object) -> str:
    """``text`` as one printable line: no ANSI codes, control characters, line breaks or temp folders."""
    s = _ANSI.sub("", str(text))
    s = _CONTROL.sub(" ", s.replace("\r", " ").replace("\n", " ").replace("\t", " "))
    s = _ATOMIC_TMP.sub(r"\1\2", _TEMP_DIRS.sub("", s))
    return re.sub(r" {2,}", " ", s).strip()


def describe_os_error(e: OSError, where: Where = Where()) -> str:
    """One sentence for an OSError: the file (or what ``where`` names), what happened, what to do."""
    reason, advice = _OS_REASONS.get(e.errno, (e.strerror or type(e).__name__, "check the path and try again"))
    if where.flag and e.errno in _WRITE_ERRNOS:
        advice = f"{advice}, or choose another {where.flag}"
    if e.filename not in (None, ""):
        path = str(e.filename) + (f" -> {e.filename2}" if e.filename2 not in (None, "") else "")
        if e.errno in (errno.EEXIST, errno.ENOTDIR) and where.path and where.path.startswith(path.rstrip("/") + "/"):
            reason, advice = "it is a file, not a folder", f"give a path made of folders for {where.path}"
        subject = f"{where.flag} {path}" if where.flag and path == where.path else path
    elif where.path:  # a read or write on an open file: the error names none
        subject = f"while {where.doing} ({f'{where.flag} ' if where.flag else ''}{where.path})"
    else:
        subject = f"while {where.doing}"
    return f"{subject}: {reason}; {advice}"


def _out_of_memory(e: BaseException) -> bool:
    """MemoryError, or torch's out-of-memory errors (CUDA's own type; the CPU allocator's RuntimeError)."""
    if isinstance(e, MemoryError) or _is(e, "torch", "OutOfMemoryError"):
        return True
    return "torch" in sys.modules and isinstance(e, RuntimeError) and bool(_TORCH_OOM.search(str(e)))


def _is(e: BaseException, module: str, name: str) -> bool:
    """Whether ``e`` is an instance of ``module.name``, without importing ``module``."""
    cls = getattr(sys.modules.get(module), name, None)
    return isinstance(cls, type) and isinstance(e, cls)


class UsageError(ValueError):
    """A command's argument is wrong; the message names it and the fix (one line, exit code 2)."""


#: Errors whose messages already name the file or field and the fix: shown as they are.
_STATED = (("hcl_core.errors", "UsageError"), ("hcl_core.sweep", "SweepError"), ("hcl_core.store", "RunFileError"),
           ("hcl_core.data", "DataNotFoundError"), ("hcl_core.data", "DataFormatError"),
           ("hcl_core.export._common", "ExportError"), ("hcl_core.tracking", "TrackingError"))


def user_message(e: BaseException, where: Where = Where()) -> str | None:
    """The one-line message for an exception a user can cause, or None for anything else (a bug)."""
    from .config import ConfigError

    if isinstance(e, ConfigError):
        return one_line(e)
    if any(_is(e, module, name) for module, name in _STATED):
        return one_line(e)  # their messages already name the file and the fix
    if _is(e, "PIL.Image", "DecompressionBombError"):
        folder = f" in {where.data_root}" if where.data_root else ""
        return one_line(f"an image{folder} is too large to open safely ({e}): remove or shrink it")
    if _out_of_memory(e):
        return one_line(f"out of memory while {where.doing}: {where.memory_advice}")
    if isinstance(e, OSError):
        return one_line(describe_os_error(e, where))
    return None
