"""Run files on disk: one folder per run, written atomically, read back through validated readers.

Layout of ``<root>/<run_id>/`` (the only module that spells these names; pages ask a :class:`Run`)::

    config.json               the RunConfig
    status.json               state (running/finished/stopped/failed), pid and its start time, host,
                              message, summary
    metrics.jsonl             the event log: one JSON event per line, appended (step, epoch, eval,
                              baseline, end); the baseline is recorded here once
    eval_inputs.npz           the fixed evaluation subset: inputs (for thumbnails), labels, indices,
                              class_names
    snapshots/epoch_XXXX.npz  a snapshot: backbone features of the subset, projected views of a
                              fixed batch, at one epoch
    checkpoint.pt             model state_dict at the last snapshot (loaded with weights_only=True)

A run whose status says ``running`` but whose process is gone (or whose pid now belongs to a
process started later) is reported as ``interrupted``; everything it wrote up to its last
snapshot stays readable. Every read goes through :mod:`hcl_core.runfiles` (JSON files, the
event log) or :mod:`hcl_core.safeload` (arrays, checkpoints): a bad field or line is a warning on
the run (``Run.warnings``, ``RunHistory.warnings``), never an exception in a page or the CLI.
Nothing here unpickles.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import socket
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_file, atomic_save_npz, atomic_write_bytes, atomic_write_json, json_default, rewrite_in_place
from .config import RunConfig
from .registry import DATASETS
from .runfiles import TERMINAL_STATES, RunFileError, read_config, read_status
from .runlog import RunHistory, read_log
from .safeload import check_snapshot, load_checkpoint, load_npz

__all__ = [
    "DEFAULT_ROOT",
    "TERMINAL_STATES",
    "Run",
    "RunFileError",
    "RunHistory",
    "RunWriter",
    "atomic_file",
    "atomic_save_npz",
    "atomic_write_bytes",
    "atomic_write_json",
    "class_names_for",
    "file_stamp",
    "find_run",
    "list_runs",
    "load_checkpoint",
    "load_eval_inputs",
    "load_npz",
    "load_run",
    "load_snapshot",
    "read_history",
    "mark_ended",
    "process_start_time",
]

DEFAULT_ROOT = Path(os.environ.get("HCL_MODELS_DIR", "models"))
HEARTBEAT_STALE_S = 120.0
CONFIG, STATUS, METRICS = "config.json", "status.json", "metrics.jsonl"
EVAL_INPUTS, SNAPSHOTS, CHECKPOINT = "eval_inputs.npz", "snapshots", "checkpoint.pt"
#: The files of a run folder besides its snapshots (what a bundle carries).
RUN_FILES = (CONFIG, STATUS, METRICS, EVAL_INPUTS, CHECKPOINT)
#: ``epoch_0007.npz``; more than four digits only without leading zeros, so a name maps to one epoch.
SNAPSHOT_RE = re.compile(r"^epoch_(\d{4}|[1-9]\d{4,})\.npz$")
#: A process whose start time differs from the one recorded by more than this is another process.
_START_TOLERANCE_S = 1.0


def snapshot_name(epoch: int) -> str:
    """The path of epoch ``epoch``'s snapshot inside a run folder."""
    return f"{SNAPSHOTS}/epoch_{epoch:04d}.npz"


def file_stamp(path: str | os.PathLike) -> tuple[int, int]:
    """``(mtime_ns, size)`` of a file, a cache key that changes when the file is rewritten or grows;
    ``(-1, -1)`` when it cannot be read."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return (-1, -1)
    return (info.st_mtime_ns, info.st_size)


# --------------------------------------------------------------------------------------------
# liveness: a pid and the start time of its process
# --------------------------------------------------------------------------------------------


def process_start_time(pid: int | None = None) -> float | None:
    """When process ``pid`` (this one by default) started, seconds since the epoch; None if gone."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError, ValueError):
        return None


def _process_is(pid: int, started: float | None, run_started: float | None) -> bool:
    """Whether ``pid`` is alive and is the process that wrote the run.

    With the recorded start time of the process (``started``) it must match; older runs record
    none, and then a process started after the run itself cannot be its writer.
    """
    import psutil

    if pid <= 0:  # kill(0 or -1, 0) signals a process group and "succeeds"
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        created = proc.create_time()
    except psutil.AccessDenied:
        return True
    except (psutil.Error, OSError):
        return False
    if started is not None:
        return abs(created - started) <= _START_TOLERANCE_S
    return run_started is None or created <= run_started + _START_TOLERANCE_S


# --------------------------------------------------------------------------------------------
# writing a run
# --------------------------------------------------------------------------------------------


def new_run_id(config: RunConfig) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", config.name)[:40] if config.name else config.short_name()
    return f"{stamp}-{config.dataset}-{label}"


class RunWriter:
    """Creates a run folder and writes its files. Used by the training loop only.

    A folder that cannot even receive its config and status is removed again, so every run
    folder that exists has a status that says what happened.
    """

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
        self._status: dict[str, Any] = {
            "state": "running",
            "pid": os.getpid(),
            "pid_started": process_start_time(),
            "host": socket.gethostname(),
            "started": time.time(),
            "message": "",
        }
        self._pending: list[str] = []
        self._last_flush = 0.0
        try:
            (path / SNAPSHOTS).mkdir()
            atomic_write_bytes(path / CONFIG, config.to_json().encode())
            self.write_status()
            self._metrics = open(path / METRICS, "a", encoding="utf-8")  # noqa: SIM115
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise

    @property
    def run_id(self) -> str:
        return self.path.name

    def write_status(self, **changes: Any) -> None:
        self._status.update(changes)
        self._status["updated"] = time.time()
        atomic_write_json(self.path / STATUS, self._status)

    def append_event(self, event: dict[str, Any], *, flush: bool = False) -> None:
        """Queue one metrics line; lines reach the disk at most 0.5 s later (or now with ``flush``).

        Whole lines are written in one call, so a crash can leave at most one partial last line,
        which the reader skips.
        """
        self._pending.append(json.dumps(event, default=json_default))
        now = time.monotonic()
        if flush or now - self._last_flush > 0.5:
            self.flush()
            self._last_flush = now

    def flush(self) -> None:
        if self._pending and not self._metrics.closed:
            self._metrics.write("\n".join(self._pending) + "\n")
            self._metrics.flush()
            self._pending.clear()

    def save_eval_inputs(self, inputs: np.ndarray, labels: np.ndarray, indices: np.ndarray,
                         class_names: tuple[str, ...] | None = None) -> None:
        arrays = {"inputs": inputs, "labels": labels, "indices": indices}
        if class_names is not None:
            arrays["class_names"] = np.asarray(class_names, dtype=str)
        atomic_save_npz(self.path / EVAL_INPUTS, arrays)

    def save_snapshot(self, epoch: int, arrays: dict[str, np.ndarray]) -> None:
        atomic_save_npz(self.path / snapshot_name(epoch), arrays)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        import torch

        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.path / CHECKPOINT, buf.getvalue())

    def close(self, state: str, message: str = "", summary: dict[str, Any] | None = None) -> None:
        self.flush()
        self._metrics.close()
        self.write_status(state=state, message=message, summary=summary or {}, ended=time.time())

    def abandon(self, state: str, message: str, summary: dict[str, Any] | None = None) -> None:
        """Record how the run ended after an error, as far as the disk still allows; never raises.

        The pending metrics lines are written if they can be; the status is written atomically,
        else in place (a full disk has no room for the temporary file, but the status's own
        block is there).
        """
        with contextlib.suppress(OSError, ValueError):
            self.flush()
        with contextlib.suppress(OSError, ValueError):
            self._metrics.close()
        self._status.update(state=state, message=message, summary=summary or {}, ended=time.time(),
                            updated=time.time())
        try:
            atomic_write_json(self.path / STATUS, self._status)
        except OSError:
            with contextlib.suppress(OSError):
                rewrite_in_place(self.path / STATUS, json.dumps(self._status, default=json_default).encode())


# --------------------------------------------------------------------------------------------
# reading runs
# --------------------------------------------------------------------------------------------


def class_names_for(dataset: str, saved: Any, n_classes: int) -> tuple[str, ...]:
    """Names of classes ``0 .. n_classes - 1``: those saved with the run, else the registry's, else indices."""
    if isinstance(saved, np.ndarray) and saved.ndim == 1 and saved.dtype.kind == "U" and len(saved) >= n_classes:
        return tuple(str(s) for s in saved)
    spec = DATASETS.get(dataset)
    if spec is not None and spec.class_names is not None and len(spec.class_names) >= n_classes:
        return spec.class_names
    return tuple(str(i) for i in range(n_classes))


@dataclass
class Run:
    """A run folder as read from disk (a cheap handle: the log and the arrays load on demand).

    ``status`` holds only fields that passed validation; ``warnings`` names what was wrong with
    the run's files (one line each), for the pages and the command line to show.
    """

    path: Path
    config: RunConfig
    status: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def state(self) -> str:
        """running / finished / stopped / failed, or interrupted if its process is gone."""
        state = self.status.get("state", "interrupted")
        if state != "running":
            return state
        pid, host = self.status.get("pid"), self.status.get("host")
        if host == socket.gethostname() and pid is not None:
            alive = _process_is(pid, self.status.get("pid_started"), self.status.get("started"))
            return "running" if alive else "interrupted"
        updated = self.status.get("updated", 0.0)
        return "running" if time.time() - updated < HEARTBEAT_STALE_S else "interrupted"

    @property
    def summary(self) -> dict[str, Any]:
        return self.status.get("summary") or {}

    @property
    def message(self) -> str:
        return self.status.get("message", "")

    @property
    def label(self) -> str:
        return self.config.name or self.config.short_name()

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    # -- the event log ------------------------------------------------------------------------
    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The checked events of the log (optionally of one ``type``), read within the log budget."""
        events, warnings = read_log(self.path / METRICS, kind=kind)
        for w in warnings:
            self._warn(w)
        return events

    def history(self) -> RunHistory:
        """The run's :class:`RunHistory` (thinned series, baseline, end), read within the log budget."""
        return read_history(self.path)

    @property
    def baseline(self) -> dict[str, Any]:
        """The baseline the run recorded once (raw inputs and the random encoder), or ``{}``."""
        return self.history().baseline

    def metrics_stamp(self) -> tuple[int, int]:
        return file_stamp(self.path / METRICS)

    # -- snapshots and other arrays ------------------------------------------------------------
    def pick_epoch(self, epoch: int | None = None) -> int:
        """``epoch`` if the run has a snapshot there, its last snapshot's epoch when None.

        Raises :class:`RunFileError` naming the run and the epochs it has.
        """
        epochs = self.snapshot_epochs()
        if not epochs:
            raise RunFileError(f"{self.run_id} has no snapshot yet: train it for at least one snapshot interval")
        if epoch is None:
            return epochs[-1]
        if epoch not in epochs:
            raise RunFileError(f"{self.run_id} has no snapshot at epoch {epoch}; it has epochs "
                               f"{', '.join(map(str, epochs))}")
        return epoch

    def snapshot_epochs(self) -> list[int]:
        """Epochs with a snapshot file, ascending; an unreadable snapshots folder is a warning and none."""
        folder = self.path / SNAPSHOTS
        try:
            mode = os.lstat(folder).st_mode
            if stat.S_ISLNK(mode):
                raise RunFileError(f"{SNAPSHOTS}/ is a symbolic link: not followed")
            if not stat.S_ISDIR(mode):
                raise RunFileError(f"{SNAPSHOTS} is not a folder")
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        except RunFileError as e:
            self._warn(f"{e}; no snapshots shown")
            return []
        except OSError as e:
            self._warn(f"{SNAPSHOTS}/ cannot be read ({e.strerror or e}); no snapshots shown")
            return []
        return sorted(int(m.group(1)) for n in names if (m := SNAPSHOT_RE.match(n)))

    def snapshot_stamp(self, epoch: int) -> tuple[int, int]:
        return file_stamp(self.path / snapshot_name(epoch))

    def load_snapshot(self, epoch: int) -> dict[str, np.ndarray]:
        """Snapshot arrays of ``epoch``; :class:`RunFileError` if unreadable, corrupt or inconsistent."""
        return load_snapshot(self.path, epoch)

    def eval_inputs_stamp(self) -> tuple[int, int]:
        return file_stamp(self.path / EVAL_INPUTS)

    def load_eval_inputs(self) -> dict[str, np.ndarray]:
        return load_eval_inputs(self.path)

    def class_names(self, n_classes: int, saved: Any = None) -> tuple[str, ...]:
        """Names of classes ``0 .. n_classes - 1``: as the run saved them with its evaluation inputs
        (``saved``, if read already), else the data set's, else the indices (older runs)."""
        if saved is None:
            try:
                saved = load_npz(self.path / EVAL_INPUTS, name=EVAL_INPUTS, keys=("class_names",)).get("class_names")
            except RunFileError:
                saved = None
        return class_names_for(self.config.dataset, saved, n_classes)

    def load_checkpoint(self) -> dict[str, Any]:
        return load_checkpoint(self.path / CHECKPOINT, name=f"{self.run_id}/{CHECKPOINT}")


def read_history(run_dir: str | os.PathLike) -> RunHistory:
    """The :class:`RunHistory` of the event log of the run in ``run_dir`` (bounded work; see runfiles)."""
    return RunHistory.from_log(Path(run_dir) / METRICS)


def load_snapshot(run_dir: str | os.PathLike, epoch: int) -> dict[str, np.ndarray]:
    """The arrays of one snapshot of the run in ``run_dir`` (checked; :class:`RunFileError` if not)."""
    name = snapshot_name(epoch)
    return check_snapshot(load_npz(Path(run_dir) / name, name=name), name)


def load_eval_inputs(run_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """The evaluation subset of the run in ``run_dir``: inputs, labels, indices, class_names if saved."""
    return load_npz(Path(run_dir) / EVAL_INPUTS, name=EVAL_INPUTS)


def mark_ended(run_dir: str | os.PathLike, state: str, message: str) -> bool:
    """Record ``state`` and ``message`` in a run whose status still says ``running`` (its process was
    ended from outside); returns whether it did. :class:`RunFileError` if it is not a run."""
    run = load_run(run_dir)
    if run.status.get("state") != "running":
        return False
    now = time.time()
    atomic_write_json(run.path / STATUS, dict(run.status, state=state, message=message, updated=now, ended=now))
    return True


def load_run(path: str | os.PathLike) -> Run:
    """Read one run folder; :class:`RunFileError` (naming the folder) if its config is missing or corrupt."""
    path = Path(path)
    try:
        config = read_config(path / CONFIG, name=CONFIG)
    except RunFileError as e:
        raise RunFileError(f"{path.name}: {e}") from None
    status, warnings = read_status(path / STATUS)
    return Run(path, config, status, warnings)


def _kind(path: Path) -> str:
    """'dir', 'file', 'link', 'other' (FIFO, socket, device) or 'gone', without following links."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return "gone"
    if stat.S_ISLNK(mode):
        return "link"
    return "dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"


def _entries(folder: Path, where: str, warnings: list[str]) -> list[Path]:
    """The non-hidden sub-folders of ``folder``; symlinks and special files are skipped with a warning,
    plain files silently (notes, a sweep's summary)."""
    out = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        kind = _kind(p)
        if kind == "dir":
            out.append(p)
        elif kind == "link":
            warnings.append(f"skipped {where}{p.name}: a symbolic link (links in the models folder are not followed)")
        elif kind == "other":
            warnings.append(f"skipped {where}{p.name}: not a folder or a plain file (a FIFO, socket or device)")
    return out


def list_runs(root: str | os.PathLike = DEFAULT_ROOT) -> tuple[list[Run], list[str]]:
    """All runs under ``root`` (newest first) and the warnings: a line per entry that is not a run
    and per problem found in a run's files (``<run id>: ...``).

    Hidden entries and plain files are ignored silently; ``demo/`` holds the bundled demo runs
    and is listed too (a folder without a config.json whose sub-folders are runs).
    """
    root = Path(root)
    runs: list[Run] = []
    warnings: list[str] = []
    if not root.is_dir():
        return runs, warnings
    candidates = []
    try:
        tops = _entries(root, "", warnings)
    except OSError as e:
        return runs, [f"{root} cannot be read ({e.strerror or e})"]
    for p in tops:
        try:
            if _kind(p / CONFIG) != "gone" or not any(_kind(c) == "dir" for c in p.iterdir()):
                candidates.append(p)
            else:  # a folder of runs, like models/demo
                candidates.extend(_entries(p, f"{p.name}/", warnings))
        except OSError as e:
            warnings.append(f"skipped {p.name}: cannot be read ({e.strerror or e})")
    for p in candidates:
        try:
            run = load_run(p)
        except RunFileError as e:
            warnings.append(f"skipped {e}")
            continue
        runs.append(run)
        warnings.extend(f"{run.run_id}: {w}" for w in run.warnings)
    runs.sort(key=lambda r: r.status.get("started", 0.0), reverse=True)
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
