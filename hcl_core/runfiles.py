"""One validated reader for every JSON run file: config, status, summary and event-log lines.

A run folder is data that may be damaged (a crash, a full disk), hand-edited, from another
version, or hostile (an imported bundle). Every value read from one passes a declarative
schema here (type and range of each field) before any page, the command line or the job view
sees it. The rule: a bad field or line is dropped and becomes a *warning on that run*; only a
missing or corrupt ``config.json`` makes a folder "not a run". Nothing here raises for bad
data except :class:`RunFileError` (a ``ValueError``) from :func:`read_config`. JSON files
above :data:`MAX_JSON_BYTES` are refused unread. (The event log's bounded reading and its fold
into a history live in :mod:`hcl_core.runlog`; arrays and checkpoints in :mod:`hcl_core.safeload`.)

Files are opened with ``O_NOFOLLOW | O_NONBLOCK`` and checked to be regular files before a byte
is read: a FIFO in place of ``config.json`` cannot block a reader, a symlink is not followed.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .config import ConfigError, RunConfig

__all__ = [
    "EVAL_KEYS",
    "MAX_JSON_BYTES",
    "MAX_MESSAGE_CHARS",
    "RUN_STATES",
    "TERMINAL_STATES",
    "RunFileError",
    "check_baseline",
    "check_event",
    "check_status",
    "check_summary",
    "clean_message",
    "open_regular",
    "read_config",
    "read_status",
]

#: Largest config.json / status.json read (a real one is under 2 KB).
MAX_JSON_BYTES = 1024**2
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


def _whole(low: int = 0, high: int = 2**53) -> Checker:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise _Bad(f"should be a whole number, got {_show(v)}")
        if not low <= v <= high:
            raise _Bad(f"should lie in {low}..{high}, got {_show(v)}")
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
                      "epochs": _whole(), "device": _text(64), "threads": _whole(), "train_size": _whole()}),
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
