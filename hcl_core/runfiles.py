"""One validated reader for every JSON run file: config, status, summary and event-log lines.

A run folder is data that may be damaged (a crash, a full disk), hand-edited, from another
version, or hostile (an imported bundle). Every value read from one passes a declarative
schema here (type and range of each field) before any page, the command line or the job view
sees it. The rule: a bad field or line is dropped and becomes a *warning on that run*; only a
missing or corrupt ``config.json`` makes a folder "not a run". Nothing here raises for bad
data except :class:`RunFileError` (a ``ValueError``) from :func:`read_config`.

Work is bounded per read: JSON files above :data:`MAX_JSON_BYTES`, event lines above
:data:`MAX_LINE_BYTES` are refused, and :func:`read_log` reads at most :data:`LOG_BUDGET_BYTES`
of ``metrics.jsonl``, spread evenly over the whole file when it is bigger, so a page's cost
does not grow with a log's size. :class:`RunHistory` folds the event stream of a live job and of
a stored run alike, keeping at most :data:`MAX_POINTS` points per series (uniform stride, the
newest point always kept).

Files are opened with ``O_NOFOLLOW | O_NONBLOCK`` and checked to be regular files before a byte
is read: a FIFO in place of ``config.json`` cannot block a reader, a symlink is not followed.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .config import ConfigError, RunConfig

__all__ = [
    "LOG_BUDGET_BYTES",
    "MAX_JSON_BYTES",
    "MAX_LINE_BYTES",
    "MAX_MESSAGE_CHARS",
    "MAX_POINTS",
    "RUN_STATES",
    "TERMINAL_STATES",
    "EVAL_KEYS",
    "LogProblems",
    "RunFileError",
    "RunHistory",
    "Thinned",
    "check_baseline",
    "check_event",
    "check_log",
    "check_status",
    "check_summary",
    "clean_message",
    "iter_log",
    "open_regular",
    "read_config",
    "read_log",
    "read_status",
]

#: Largest config.json / status.json read (a real one is under 2 KB).
MAX_JSON_BYTES = 1024**2
#: Longest event line read (a real one is under 500 bytes).
MAX_LINE_BYTES = 64 * 1024
#: Bytes of metrics.jsonl read per history: a 1000-epoch CIFAR-10 run writes ~20 MB; bigger logs
#: are sampled in evenly spaced windows instead of read whole.
LOG_BUDGET_BYTES = 8 * 1024**2
#: Points per series a :class:`RunHistory` keeps (losses, epochs, evaluations).
MAX_POINTS = 2000
#: Longest status message kept (a failure message is one line, a stderr tail a few).
MAX_MESSAGE_CHARS = 2000
RUN_STATES = ("running", "finished", "stopped", "failed", "interrupted")
TERMINAL_STATES = RUN_STATES[1:]
#: Numbers an evaluation reports, with their ranges (``evaluate.py``; accuracies and shares are
#: fractions, alignment with alpha = 2 lies in [0, 4], uniformity with t = 2 in [-8, 0]).
EVAL_KEYS: dict[str, tuple[float, float]] = {
    "linear_probe_acc": (0.0, 1.0), "few_shot_probe_acc": (0.0, 1.0), "knn_acc": (0.0, 1.0),
    "alignment": (0.0, 4.0 + 1e-6), "uniformity": (-8.0 - 1e-6, 1e-6), "same_class_mass": (0.0, 1.0 + 1e-6),
    "effective_negatives": (0.0, math.inf), "clamp_share": (0.0, 1.0),
}
_PROBES = ("linear_probe_acc", "few_shot_probe_acc", "knn_acc")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class RunFileError(ValueError):
    """A run file is missing, unreadable, corrupt or unsafe; the message names it and says why.

    Raised by :func:`read_config` and by the array and checkpoint loaders, so a page or the
    command line can catch this one type and show its one-line message.
    """


def clean_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` without terminal escape codes or control characters, at most ``limit`` characters."""
    text = _CONTROL.sub(" ", _ANSI.sub("", text))
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------
# opening: regular files only, never following a link, never blocking
# --------------------------------------------------------------------------------------------


def open_regular(path: str | os.PathLike, *, max_bytes: int | None = None, name: str | None = None) -> IO[bytes]:
    """``path`` opened for binary reading, after checking it is a regular file of at most ``max_bytes``.

    ``O_NOFOLLOW``: a symlink is refused, not followed; ``O_NONBLOCK``: opening a FIFO returns
    at once (and is then refused), where a plain ``open`` would wait for a writer forever.
    Raises ``FileNotFoundError`` when it is missing and :class:`RunFileError` otherwise.
    """
    path = Path(path)
    name = name or f"{path.parent.name}/{path.name}"
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as e:
        if path.is_symlink():
            raise RunFileError(f"{name} is a symbolic link: not followed") from None
        raise RunFileError(f"{name} cannot be opened ({e.strerror or e})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a FIFO, socket or device)"
            raise RunFileError(f"{name} is {kind}")
        if max_bytes is not None and info.st_size > max_bytes:
            raise RunFileError(f"{name} is {info.st_size:,} bytes, more than the limit of {max_bytes:,}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read_json(path: Path, name: str) -> Any:
    """The JSON value of a small file; :class:`RunFileError` for anything but well-formed UTF-8 JSON."""
    with open_regular(path, max_bytes=MAX_JSON_BYTES, name=name) as f:
        try:
            data = f.read(MAX_JSON_BYTES + 1)
        except OSError as e:
            raise RunFileError(f"{name} cannot be read ({e.strerror or e})") from None
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise RunFileError(f"{name} is not UTF-8 text") from None
    except (ValueError, RecursionError) as e:
        raise RunFileError(f"{name} is not valid JSON ({clean_message(str(e), 200)})") from None


def read_config(path: str | os.PathLike, *, name: str | None = None) -> RunConfig:
    """The validated :class:`RunConfig` in ``path``; :class:`RunFileError` naming the bad field otherwise."""
    path = Path(path)
    name = name or f"{path.parent.name}/config.json"
    try:
        value = _read_json(path, name)
    except FileNotFoundError:
        raise RunFileError("no config.json, not a run folder") from None
    except RunFileError as e:
        if "not valid JSON" not in str(e):
            raise
        raise RunFileError(f"{name} does not validate: {str(e).removeprefix(name + ' ')}") from None
    if not isinstance(value, dict):
        raise RunFileError(f"{name} does not validate: it holds {_show(value)}, not an object")
    try:
        return RunConfig.from_dict(value)
    except ConfigError as e:
        raise RunFileError(f"{name} does not validate (field {e.field}): {clean_message(str(e), 300)}") from None
    except (ValueError, TypeError) as e:
        raise RunFileError(f"{name} does not validate: {clean_message(str(e), 300)}") from None


# --------------------------------------------------------------------------------------------
# schemas: a checker per field; a record keeps its valid fields and names the others
# --------------------------------------------------------------------------------------------


class _Bad(ValueError):
    """One field's value is of the wrong type or out of range (the message says which)."""


Checker = Callable[[Any], Any]


def _whole(low: int = 0, high: int | None = None) -> Checker:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise _Bad(f"should be a whole number, got {_show(v)}")
        if v < low or (high is not None and v > high):
            raise _Bad(f"should lie in {low}..{high if high is not None else '∞'}, got {v}")
        return v
    return check


def _number(low: float = -math.inf, high: float = math.inf) -> Checker:
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _Bad(f"should be a number, got {_show(v)}")
        try:
            v = float(v)
        except OverflowError:
            raise _Bad("should be a finite number, got a huge integer") from None
        if not math.isfinite(v):
            raise _Bad(f"should be a finite number, got {v}")
        if not low <= v <= high:
            raise _Bad(f"should lie in [{low:g}, {high:g}], got {v:g}")
        return v
    return check


def _text(limit: int = MAX_MESSAGE_CHARS) -> Checker:
    def check(v: Any) -> str:
        if not isinstance(v, str):
            raise _Bad(f"should be text, got {_show(v)}")
        return clean_message(v, limit)
    return check


def _or_none(check: Checker) -> Checker:
    return lambda v: None if v is None else check(v)


def _choice(*options: str) -> Checker:
    def check(v: Any) -> str:
        if v not in options:
            raise _Bad(f"should be one of {', '.join(options)}, got {_show(v)}")
        return v
    return check


def _show(v: Any) -> str:
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 10**30:
        return "a huge integer"
    return clean_message(json.dumps(v, default=str), 40)


@dataclass(frozen=True)
class _Schema:
    """Fields of a JSON object: name -> checker; ``required`` fields must be present and valid."""

    fields: dict[str, Checker]
    required: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()  # known fields of older versions: dropped without a warning

    def check(self, obj: Any, where: str, problems: list[str]) -> dict[str, Any]:
        """The valid fields of ``obj``; each invalid one adds a line to ``problems``.

        Raises :class:`_Bad` when ``obj`` is not an object or a required field is bad.
        """
        if not isinstance(obj, dict):
            raise _Bad(f"{where} should be an object, got {_show(obj)}")
        out: dict[str, Any] = {}
        for key, check in self.fields.items():
            if key not in obj:
                if key in self.required:
                    raise _Bad(f"{where} lacks '{key}'")
                continue
            try:
                out[key] = check(obj[key])
            except _Bad as e:
                if key in self.required:
                    raise _Bad(f"{where}: '{key}' {e}") from None
                problems.append(f"{where}: '{key}' {e} (ignored)")
        return out


_PROBE_SCHEMA = _Schema({k: _number(*EVAL_KEYS[k]) for k in _PROBES})
_SUMMARY_FIELDS: dict[str, Checker] = {
    **{k: _number(*r) for k, r in EVAL_KEYS.items()},
    "epochs": _whole(), "evaluated_epoch": _whole(), "steps": _whole(), "seconds": _number(0.0),
}


def _check_nested(schema: _Schema, nested: dict[str, _Schema], obj: Any, where: str, problems: list[str]) -> dict:
    """``schema.check`` where some fields are objects of their own schema (checked field by field)."""
    flat = _Schema({k: v for k, v in schema.fields.items() if k not in nested}, schema.required, schema.ignored)
    out = flat.check(obj, where, problems)
    for key, sub in nested.items():
        if key in obj:
            try:
                out[key] = sub.check(obj[key], f"{where}.{key}", problems)
            except _Bad as e:
                problems.append(f"{e} (ignored)")
    return out


def check_baseline(obj: Any, where: str, problems: list[str]) -> dict[str, dict[str, float]]:
    """``{"raw": {probe: acc}, "random_init": {probe: acc}}`` with the valid accuracies of ``obj``."""
    return _check_nested(_Schema({}), {"raw": _PROBE_SCHEMA, "random_init": _PROBE_SCHEMA}, obj, where, problems)


def check_summary(obj: Any, where: str, problems: list[str]) -> dict[str, Any]:
    """A run's summary: final metrics (each in its range), epochs, evaluated epoch, steps, seconds."""
    return _Schema(_SUMMARY_FIELDS, ignored=("baseline",)).check(obj, where, problems)


_STATUS_FIELDS: dict[str, Checker] = {
    "state": _choice(*RUN_STATES), "pid": _whole(1, 2**31), "pid_started": _number(0.0),
    "host": _text(255), "started": _number(0.0), "updated": _number(0.0), "ended": _number(0.0),
    "message": _text(), "total_steps": _whole(),
}
_IMPORTED_SCHEMA = _Schema({"from": _text(255), "at": _number(0.0)})


def check_status(obj: Any, problems: list[str], where: str = "status.json") -> dict[str, Any]:
    """The valid fields of a status object (unknown fields are dropped; ``summary`` checked field by field)."""
    if not isinstance(obj, dict):
        problems.append(f"{where} should hold an object, got {_show(obj)} (ignored)")
        return {}
    out = _Schema(_STATUS_FIELDS).check(obj, where, problems)
    if "summary" in obj:
        try:
            out["summary"] = check_summary(obj["summary"], f"{where} summary", problems)
        except _Bad as e:
            problems.append(f"{e} (ignored)")
    if "imported" in obj:
        try:
            out["imported"] = _IMPORTED_SCHEMA.check(obj["imported"], f"{where} imported", problems)
        except _Bad as e:
            problems.append(f"{e} (ignored)")
    return out


def read_status(path: str | os.PathLike) -> tuple[dict[str, Any], list[str]]:
    """The checked status of a run and a warning per problem; a missing file is an empty status."""
    path = Path(path)
    try:
        raw = _read_json(path, "status.json")
    except FileNotFoundError:
        return {}, []
    except RunFileError as e:
        return {}, [f"{e} (ignored)"]
    problems: list[str] = []
    return check_status(raw, problems), problems


# --------------------------------------------------------------------------------------------
# events: one schema per event type
# --------------------------------------------------------------------------------------------

_ELAPSED = _number(0.0)
_EVENT_SCHEMAS: dict[str, _Schema] = {
    "start": _Schema({"run_dir": _or_none(_text(4096)), "steps_per_epoch": _whole(), "total_steps": _whole(),
                      "epochs": _whole(), "device": _text(64), "train_size": _whole()}),
    "step": _Schema({"step": _whole(), "epoch": _whole(), "loss": _number(), "elapsed": _ELAPSED},
                    required=("step", "loss")),
    "epoch": _Schema({"epoch": _whole(), "loss": _number(), "steps_per_s": _number(0.0), "elapsed": _ELAPSED},
                     required=("epoch",)),
    "eval": _Schema({"epoch": _whole(), **{k: _number(*r) for k, r in EVAL_KEYS.items()}, "elapsed": _ELAPSED},
                    required=("epoch",)),
    "baseline": _Schema({}),
    "end": _Schema({"state": _choice(*TERMINAL_STATES), "message": _text()}, required=("state",)),
    "error": _Schema({"message": _text()}),
}
#: Event types of the worker's protocol that carry nothing for a history.
_PROTOCOL_ONLY = ("ready",)


def check_event(obj: Any, problems: list[str], where: str = "event") -> dict[str, Any] | None:
    """The checked event (its ``type`` and valid fields), or None when it cannot be used.

    Unknown event types (a newer version's) are None without a problem; a known type whose
    required fields are bad is None with a problem; a bad optional field is dropped.
    """
    if not isinstance(obj, dict):
        problems.append(f"{where} should be an object, got {_show(obj)}")
        return None
    kind = obj.get("type")
    schema = _EVENT_SCHEMAS.get(kind) if isinstance(kind, str) else None
    if schema is None:
        if kind not in _PROTOCOL_ONLY and not isinstance(kind, str):
            problems.append(f"{where} has no event type")
        return None
    where = f"{where} ({kind})"
    try:
        event = schema.check(obj, where, problems)
    except _Bad as e:
        problems.append(str(e))
        return None
    if kind == "baseline":
        event = check_baseline(obj, where, problems)
    elif kind == "end" and "summary" in obj:
        try:
            event["summary"] = check_summary(obj["summary"], f"{where} summary", problems)
        except _Bad as e:
            problems.append(f"{e} (ignored)")
    event["type"] = kind
    return event


# --------------------------------------------------------------------------------------------
# reading metrics.jsonl: bounded, line by line
# --------------------------------------------------------------------------------------------


@dataclass
class LogProblems:
    """What reading a log found wrong: bad lines (counted, the first few named), what was left unread."""

    bad_lines: int = 0
    first: list[str] = field(default_factory=list)
    note: str = ""

    def add(self, problem: str) -> None:
        self.bad_lines += 1
        if len(self.first) < 3:
            self.first.append(problem)

    def warnings(self, name: str = "metrics.jsonl") -> list[str]:
        out = [f"{name}: {self.note}"] if self.note else []
        if self.bad_lines:
            more = f"; {self.bad_lines - len(self.first)} more" if self.bad_lines > len(self.first) else ""
            out.append(f"{name}: {self.bad_lines} line(s) skipped ({'; '.join(self.first)}{more})")
        return out


def _lines_whole(f: IO[bytes]) -> Iterator[tuple[int, bytes, bool]]:
    """``(line number, line, complete)``; an over-long line is yielded as b"" (its rest is skipped)."""
    number = 0
    while True:
        line = f.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while (rest := f.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass
            yield number, b"", True
            continue
        yield number, line, line.endswith(b"\n")


def _lines_sampled(f: IO[bytes], size: int, budget: int, windows: int = 64) -> Iterator[tuple[int, bytes, bool]]:
    """Whole lines from ``windows + 2`` evenly spaced windows of ``size`` bytes, ``budget`` bytes in all.

    The head and the tail get a quarter of the budget each (a run's start, baseline and last
    evaluations); the middle windows sample the rest uniformly. Line numbers are unknown (0).
    """
    edge, middle = budget // 4, (budget // 2) // windows
    spans = [(0, edge)]
    gap = (size - 2 * edge) / windows
    spans += [(int(edge + (k + 0.5) * gap - middle / 2), middle) for k in range(windows)]
    spans.append((size - edge, edge))
    for start, length in spans:
        f.seek(start)
        data = f.read(length)
        if start > 0:  # drop the partial first line
            cut = data.find(b"\n")
            data = data[cut + 1:] if cut >= 0 else b""
        end = start + length >= size
        lines = data.split(b"\n")
        tail = lines.pop()  # after the last newline: a partial line unless the file ends there
        for line in lines:
            if len(line) <= MAX_LINE_BYTES:
                yield 0, line + b"\n", True
        if end and tail:
            yield 0, tail, False


def iter_log(path: str | os.PathLike, problems: LogProblems, *, budget: int = LOG_BUDGET_BYTES,
             kind: str | None = None) -> Iterator[dict[str, Any]]:
    """The checked events of a ``metrics.jsonl``, reading at most ``budget`` bytes of it.

    A bad line is skipped and counted in ``problems``; a last line cut short by a crash is
    skipped silently (it is what an interrupted run leaves). An unreadable file yields
    nothing and says why in ``problems.note``.
    """
    path = Path(path)
    try:
        f = open_regular(path, name="metrics.jsonl")
    except FileNotFoundError:
        return
    except RunFileError as e:
        problems.note = f"{str(e).removeprefix('metrics.jsonl ')}; no events read"
        return
    with f:
        try:
            size = os.fstat(f.fileno()).st_size
            if size > budget:
                problems.note = (f"{size / 1024**2:,.0f} MB, more than the {budget / 1024**2:.0f} MB read per view: "
                                 "read in evenly spaced parts (curves thinned, some evaluations left out)")
                lines = _lines_sampled(f, size, budget)
            else:
                lines = _lines_whole(f)
            for number, line, complete in lines:
                where = f"line {number}" if number else "a line"
                if not line.strip():
                    if line:
                        continue  # a blank line
                    problems.add(f"{where} is longer than {MAX_LINE_BYTES // 1024} KB")
                    continue
                try:
                    obj = json.loads(line)
                except (ValueError, RecursionError):
                    if complete:
                        problems.add(f"{where} is not JSON")
                    continue  # an incomplete last line: the writer died mid-line
                found: list[str] = []
                event = check_event(obj, found, where)
                for p in found[:1]:
                    problems.add(p)
                if event is not None and (kind is None or event["type"] == kind):
                    yield event
        except OSError as e:
            problems.note = f"reading stopped ({e.strerror or e})"


def check_log(path: str | os.PathLike, *, name: str = "metrics.jsonl", max_bytes: int) -> int:
    """Every line of a log checked strictly (an import): returns the number of events.

    Raises :class:`RunFileError` naming the first line that is not UTF-8, not JSON (except a
    last line cut short), or not a valid event, and for a log above ``max_bytes``.
    """
    count = 0
    with open_regular(path, max_bytes=max_bytes, name=name) as f:
        for number, line, complete in _lines_whole(f):
            if not line:
                raise RunFileError(f"{name} line {number} is longer than {MAX_LINE_BYTES // 1024} KB")
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                raise RunFileError(f"{name} line {number} is not UTF-8 text") from None
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except (ValueError, RecursionError):
                if not complete:
                    break  # the last line of an interrupted run, cut short
                raise RunFileError(f"{name} line {number} is not JSON") from None
            problems: list[str] = []
            event = check_event(obj, problems, f"line {number}")
            if problems:
                raise RunFileError(f"{name} {problems[0]}")
            count += event is not None
    return count


def read_log(path: str | os.PathLike, *, budget: int = LOG_BUDGET_BYTES,
             kind: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """All checked events (or those of type ``kind``) and the warnings about the log."""
    problems = LogProblems()
    events = list(iter_log(path, problems, budget=budget, kind=kind))
    return events, problems.warnings()


# --------------------------------------------------------------------------------------------
# the history of a run: one fold for live jobs and stored runs
# --------------------------------------------------------------------------------------------


class Thinned:
    """A series that keeps at most ``cap`` items by uniform stride, plus always the newest one.

    Every ``stride``-th item added is kept; when ``cap`` are kept, every other one is dropped
    and the stride doubles, so the kept items stay evenly spaced over everything added.
    """

    def __init__(self, cap: int = MAX_POINTS):
        self.cap = max(int(cap), 2)
        self.stride = 1
        self.count = 0
        self._kept: list[Any] = []
        self._last: Any = None

    def add(self, item: Any) -> None:
        if self.count % self.stride == 0:
            self._kept.append(item)
            if len(self._kept) >= self.cap:
                self._kept = self._kept[::2]
                self.stride *= 2
        self.count += 1
        self._last = item

    def items(self) -> list[Any]:
        """The kept items, oldest first, ending with the newest item added."""
        if not self.count:
            return []
        if (self.count - 1) % self.stride == 0:
            return list(self._kept)  # the newest is a kept one
        return [*self._kept, self._last]

    def __len__(self) -> int:
        return len(self.items())

    def copy(self) -> Thinned:
        new = Thinned(self.cap)
        new.stride, new.count, new._kept, new._last = self.stride, self.count, list(self._kept), self._last
        return new


class RunHistory:
    """A run's event stream folded into what pages draw, with every event checked first.

    Used for a live job (events from its worker, :meth:`apply` one by one) and for a stored
    run (:meth:`from_log` on its ``metrics.jsonl``). Series hold at most ``max_points`` points:
    ``steps`` / ``losses`` ``(k,)`` step numbers and losses, ``epochs`` the per-epoch events,
    ``evals`` the evaluations. ``baseline`` is the run's one baseline event (raw inputs and the
    random encoder); ``end`` the end event, if any; ``warnings`` what was wrong in the stream.
    """

    def __init__(self, max_points: int = MAX_POINTS):
        self.max_points = max_points
        self.run_dir: str | None = None
        self.total_steps = 0
        self.step = 0
        self.epoch = 0
        self.steps_per_s = 0.0
        self.baseline: dict[str, Any] = {}
        self.end: dict[str, Any] | None = None
        self.error: str | None = None
        self._losses = Thinned(max_points)
        self._epochs = Thinned(max_points)
        self._evals = Thinned(max_points)
        self._problems = LogProblems()

    # -- folding ------------------------------------------------------------------------------
    def apply(self, raw: Any) -> dict[str, Any] | None:
        """Check one event and fold it in; returns the checked event, or None if it was unusable."""
        found: list[str] = []
        event = check_event(raw, found)
        for p in found[:1]:
            self._problems.add(p)
        if event is not None:
            self._fold(event)
        return event

    def _fold(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "step":
            self.step = event["step"]
            self.epoch = event.get("epoch", self.epoch)
            self._losses.add((event["step"], event["loss"]))
        elif kind == "epoch":
            self._epochs.add(event)
            self.steps_per_s = event.get("steps_per_s", self.steps_per_s)
        elif kind == "eval":
            self._evals.add(event)
        elif kind == "start":
            self.run_dir = event.get("run_dir", self.run_dir)
            self.total_steps = event.get("total_steps", self.total_steps)
        elif kind == "baseline":
            self.baseline = {k: v for k, v in event.items() if k != "type"}
        elif kind == "end":
            self.end = event
        elif kind == "error":
            self.error = event.get("message", "unknown error")

    @classmethod
    def from_events(cls, events: Iterable[dict[str, Any]], max_points: int = MAX_POINTS) -> RunHistory:
        """A history of events that are checked already (e.g. from :func:`iter_log`)."""
        h = cls(max_points)
        for event in events:
            h._fold(event)
        return h

    @classmethod
    def from_log(cls, path: str | os.PathLike, *, max_points: int = MAX_POINTS,
                 budget: int = LOG_BUDGET_BYTES) -> RunHistory:
        """The history of a stored ``metrics.jsonl`` (bounded: see :func:`iter_log`)."""
        h = cls(max_points)
        for event in iter_log(path, h._problems, budget=budget):
            h._fold(event)
        return h

    # -- reading --------------------------------------------------------------------------------
    @property
    def steps(self) -> list[int]:
        return [s for s, _ in self._losses.items()]

    @property
    def losses(self) -> list[float]:
        return [v for _, v in self._losses.items()]

    @property
    def points(self) -> list[tuple[int, float]]:
        """``(step, loss)`` pairs, thinned."""
        return self._losses.items()

    @property
    def n_steps(self) -> int:
        """Step events seen (before thinning)."""
        return self._losses.count

    @property
    def epochs(self) -> list[dict[str, Any]]:
        return self._epochs.items()

    @property
    def evals(self) -> list[dict[str, Any]]:
        return self._evals.items()

    @property
    def last_eval(self) -> dict[str, Any]:
        evals = self._evals.items()
        return evals[-1] if evals else {}

    @property
    def warnings(self) -> list[str]:
        return self._problems.warnings()

    def copy(self) -> RunHistory:
        """A copy that later events do not change (the events themselves are never mutated)."""
        new = copy.copy(self)
        new._losses, new._epochs, new._evals = self._losses.copy(), self._epochs.copy(), self._evals.copy()
        new._problems = LogProblems(self._problems.bad_lines, list(self._problems.first), self._problems.note)
        new.baseline = dict(self.baseline)
        return new
