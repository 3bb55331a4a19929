"""Run files on disk: one folder per run, written atomically, read back tolerantly.

Layout of ``<root>/<run_id>/``::

    config.json             the RunConfig
    status.json             state (running/finished/stopped/failed), pid, host, message, summary
    metrics.jsonl           one JSON event per line, appended (step, epoch, eval, ...)
    eval_inputs.npz         the fixed evaluation subset: inputs (for thumbnails), labels, indices
    snapshots/epoch_XXXX.npz  backbone features of the subset, projected views of a fixed batch
    checkpoint.pt           model state_dict at the last snapshot (loaded with weights_only=True)

A run whose status says ``running`` but whose process is gone is reported as ``interrupted``;
everything it wrote up to its last snapshot stays readable. Nothing here unpickles: arrays
are ``.npz`` read with ``allow_pickle=False``, checkpoints use ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .config import ConfigError, RunConfig

DEFAULT_ROOT = Path(os.environ.get("HCL_MODELS_DIR", "models"))
HEARTBEAT_STALE_S = 120.0
_SNAPSHOT_RE = re.compile(r"^epoch_(\d{4,})\.npz$")
TERMINAL_STATES = ("finished", "stopped", "failed", "interrupted")


class RunFileError(ValueError):
    """A run folder is missing its config or holds a corrupt one, or one of its files is unreadable.

    Raised by :func:`load_run`, :func:`load_npz` and :meth:`Run.load_checkpoint` for missing,
    corrupt or unsafe files, so a page can catch this one type and show its message.
    """


# --------------------------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------------------------


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
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default).encode())


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def _pid_alive(pid: int) -> bool:
    if pid <= 0:  # Reliability (issue 6): kill(0 or -1, 0) signals a group and "succeeds"
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists" for kill(0); read its state where /proc allows.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


# --------------------------------------------------------------------------------------------
# writing a run
# --------------------------------------------------------------------------------------------


def new_run_id(config: RunConfig) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", config.name)[:40] if config.name else config.short_name()
    return f"{stamp}-{config.dataset}-{label}"


class RunWriter:
    """Creates a run folder and writes its files. Used by the training loop only."""

    def __init__(self, root: str | os.PathLike, config: RunConfig, run_id: str | None = None):
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        base = run_id or new_run_id(config)
        path = root / base
        k = 1
        while True:
            try:
                path.mkdir()
                break
            except FileExistsError:
                k += 1
                path = root / f"{base}-{k}"
        self.path = path
        self.config = config
        (path / "snapshots").mkdir()
        atomic_write_bytes(path / "config.json", config.to_json().encode())
        self._status: dict[str, Any] = {
            "state": "running",
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.time(),
            "message": "",
        }
        self.write_status()
        self._metrics = open(path / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self._pending: list[str] = []
        self._last_flush = 0.0

    @property
    def run_id(self) -> str:
        return self.path.name

    def write_status(self, **changes: Any) -> None:
        self._status.update(changes)
        self._status["updated"] = time.time()
        atomic_write_json(self.path / "status.json", self._status)

    def append_event(self, event: dict[str, Any], *, flush: bool = False) -> None:
        """Queue one metrics line; lines reach the disk at most 0.5 s later (or now with ``flush``).

        Whole lines are written in one call, so a crash can leave at most one partial last line,
        which the reader skips.
        """
        self._pending.append(json.dumps(event, default=_json_default))
        now = time.monotonic()
        if flush or now - self._last_flush > 0.5:
            self.flush()
            self._last_flush = now

    def flush(self) -> None:
        if self._pending and not self._metrics.closed:
            self._metrics.write("\n".join(self._pending) + "\n")
            self._metrics.flush()
            self._pending.clear()

    def save_eval_inputs(self, inputs: np.ndarray, labels: np.ndarray, indices: np.ndarray) -> None:
        atomic_save_npz(self.path / "eval_inputs.npz", {"inputs": inputs, "labels": labels, "indices": indices})

    def save_snapshot(self, epoch: int, arrays: dict[str, np.ndarray]) -> None:
        atomic_save_npz(self.path / "snapshots" / f"epoch_{epoch:04d}.npz", arrays)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        import io

        import torch

        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.path / "checkpoint.pt", buf.getvalue())

    def close(self, state: str, message: str = "", summary: dict[str, Any] | None = None) -> None:
        self.flush()
        self._metrics.close()
        self.write_status(state=state, message=message, summary=summary or {}, ended=time.time())


# --------------------------------------------------------------------------------------------
# reading runs
# --------------------------------------------------------------------------------------------


@dataclass
class Run:
    """A run folder as read from disk (a cheap handle: metrics and snapshots load on demand)."""

    path: Path
    config: RunConfig
    status: dict[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def state(self) -> str:
        """running / finished / stopped / failed, or interrupted if its process died."""
        state = self.status.get("state", "interrupted")
        if state != "running":
            return state if state in TERMINAL_STATES else "interrupted"
        pid, host = self.status.get("pid"), self.status.get("host")
        if host == socket.gethostname() and isinstance(pid, int):
            return "running" if _pid_alive(pid) else "interrupted"
        updated = self.status.get("updated", 0)
        return "running" if time.time() - float(updated) < HEARTBEAT_STALE_S else "interrupted"

    @property
    def summary(self) -> dict[str, Any]:
        return self.status.get("summary") or {}

    @property
    def label(self) -> str:
        return self.config.name or self.config.short_name()

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """All metric events (optionally of one ``type``); malformed lines are skipped."""
        return list(iter_events(self.path / "metrics.jsonl", kind))

    def snapshot_epochs(self) -> list[int]:
        snap = self.path / "snapshots"
        if not snap.is_dir():
            return []
        return sorted(int(m.group(1)) for p in snap.iterdir() if (m := _SNAPSHOT_RE.match(p.name)))

    def load_snapshot(self, epoch: int) -> dict[str, np.ndarray]:
        return load_npz(self.path / "snapshots" / f"epoch_{epoch:04d}.npz")

    def load_eval_inputs(self) -> dict[str, np.ndarray]:
        return load_npz(self.path / "eval_inputs.npz")

    def load_checkpoint(self) -> dict[str, Any]:
        return load_checkpoint(self.path / "checkpoint.pt")


def iter_events(path: Path, kind: str | None = None) -> Iterator[dict[str, Any]]:
    # Reliability (issue 6): a metrics file that is unreadable (a folder, no permission) gives no
    # events, bytes that are not UTF-8 and absurdly nested lines are skipped like a cut-off line;
    # before, each of these raised out of list/show pages.
    try:
        f = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
    except OSError:
        return
    with f:
        try:
            for line in f:
                try:
                    event = json.loads(line)
                except (ValueError, RecursionError):
                    continue  # a line cut short by a crash, or garbage
                if isinstance(event, dict) and (kind is None or event.get("type") == kind):
                    yield event
        except OSError:
            return


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` file (never unpickled); :class:`RunFileError` if missing or corrupt."""
    # Reliability (issue 6): numpy raises half a dozen types for a truncated or foreign file
    # (BadZipFile, EOFError, zlib.error, ValueError for object arrays, OSError, ...); pages catch
    # one clear RunFileError (a ValueError, as before) instead.
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise RunFileError(f"{path.parent.name}/{path.name} is missing") from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise RunFileError(
            f"{path.parent.name}/{path.name} could not be read ({type(e).__name__}: {e}); "
            "the file is corrupt or not an array file written by this program"
        ) from e


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint read with ``torch.load(weights_only=True)``: tensors and plain data, never code.

    Raises :class:`RunFileError` when the file is missing, corrupt, or holds anything
    ``weights_only`` refuses (e.g. a pickled object that would run code on load).
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise RunFileError(f"{path.parent.name}/{path.name} is missing")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise RunFileError(f"{path.parent.name}/{path.name} was refused by the safe loader "
                           f"(weights_only=True): {str(e).splitlines()[0]}") from e
    # torch reports a damaged archive as RuntimeError, a truncated one as EOFError/ValueError ...
    except (RuntimeError, OSError, EOFError, ValueError, KeyError, IndexError, TypeError, AttributeError,
            zipfile.BadZipFile) as e:
        raise RunFileError(f"{path.parent.name}/{path.name} could not be read ({type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''}): the file is corrupt") from e
    if not isinstance(state, dict):
        raise RunFileError(f"{path.parent.name}/{path.name} holds a {type(state).__name__}, not a checkpoint dict")
    return state


# Reliability (issue 6): status.json is advisory; a field of the wrong type (hand-edited, foreign,
# or from another version) is dropped instead of crashing Run.state / list_runs' sort / pages.
_STATUS_TYPES: dict[str, tuple[type, ...]] = {
    "state": (str,), "pid": (int,), "host": (str,), "started": (int, float), "updated": (int, float),
    "ended": (int, float), "message": (str,), "summary": (dict,), "baseline": (dict,), "total_steps": (int,),
}


def _clean_status(status: Any) -> dict[str, Any]:
    if not isinstance(status, dict):
        return {}
    return {k: v for k, v in status.items()
            if k not in _STATUS_TYPES or (isinstance(v, _STATUS_TYPES[k]) and not isinstance(v, bool))}


def load_run(path: str | os.PathLike) -> Run:
    """Read one run folder; raises :class:`RunFileError` if its config is missing or corrupt."""
    path = Path(path)
    try:
        config = RunConfig.from_json((path / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFileError(f"{path.name}: no config.json, not a run folder") from None
    # Reliability (issue 6): also a config.json that is a folder or unreadable (OSError), a JSON
    # list dict() refuses (ValueError) and absurd nesting (RecursionError) mean "corrupt".
    except (OSError, ValueError, ConfigError, TypeError, RecursionError) as e:
        raise RunFileError(f"{path.name}: corrupt config.json ({type(e).__name__}: {e})") from None
    try:
        status = _clean_status(json.loads((path / "status.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, RecursionError):
        status = {}
    return Run(path, config, status)


def list_runs(root: str | os.PathLike = DEFAULT_ROOT) -> tuple[list[Run], list[str]]:
    """All runs under ``root`` (newest first) and a warning for each folder that is not one.

    Hidden folders and plain files are ignored silently; ``demo/`` holds the bundled demo runs
    and is listed too.
    """
    root = Path(root)
    runs: list[Run] = []
    warnings: list[str] = []
    if not root.is_dir():
        return runs, warnings
    candidates = []
    for p in root.iterdir():
        if not p.is_dir() or p.name.startswith("."):
            continue
        # Reliability (issue 6): a folder that cannot be listed is skipped with a warning.
        try:
            if (p / "config.json").exists() or not any(c.is_dir() for c in p.iterdir()):
                candidates.append(p)
            else:  # a folder of runs, like models/demo
                candidates.extend(c for c in p.iterdir() if c.is_dir() and not c.name.startswith("."))
        except OSError as e:
            warnings.append(f"skipped {p.name}: cannot be read ({e.strerror or e})")
    for p in candidates:
        try:
            runs.append(load_run(p))
        except RunFileError as e:
            warnings.append(f"skipped {e}")
    runs.sort(key=lambda r: r.status.get("started", 0), reverse=True)  # a number: see _clean_status
    return runs, warnings


def find_run(run_id_or_path: str, root: str | os.PathLike = DEFAULT_ROOT) -> Run:
    """A run by folder path or by id (a unique prefix of the id is enough)."""
    p = Path(run_id_or_path)
    if p.is_dir():
        return load_run(p)
    runs, _ = list_runs(root)
    matches = [r for r in runs if r.run_id == run_id_or_path] or [
        r for r in runs if r.run_id.startswith(run_id_or_path)
    ]
    if len(matches) != 1:
        found = "no run" if not matches else f"{len(matches)} runs"
        raise RunFileError(f"{found} matching {run_id_or_path!r} under {root}")
    return matches[0]
