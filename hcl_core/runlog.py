"""The event log of a run (``metrics.jsonl``): bounded reading, and the one fold into a history.

:func:`iter_log` reads at most :data:`LOG_BUDGET_BYTES` of a log: the whole file when it is
smaller, else evenly spaced windows over all of it (the head and the tail in full), so the
cost of reading a log, and of a page that draws one, has a fixed bound. Every line is checked
by :func:`hcl_core.runfiles.check_event`; a bad one is counted, never raised.
:class:`RunHistory` folds the events of a live job (one by one from its worker) and of a stored
run alike, keeping at most :data:`MAX_POINTS` points per series: uniform stride, newest kept.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .runfiles import RunFileError, check_event, open_regular

__all__ = ["LOG_BUDGET_BYTES", "MAX_LINE_BYTES", "MAX_POINTS", "LogProblems", "RunHistory", "Thinned", "check_log",
           "iter_log", "read_log"]

#: Longest event line read (a real one is under 500 bytes).
MAX_LINE_BYTES = 64 * 1024
#: Bytes of metrics.jsonl read per history: a 1000-epoch CIFAR-10 run writes ~20 MB; bigger logs
#: are sampled in evenly spaced windows instead of read whole.
LOG_BUDGET_BYTES = 8 * 1024**2
#: Points per series a :class:`RunHistory` keeps (losses, epochs, evaluations).
MAX_POINTS = 2000


@dataclass
class LogProblems:
    """What reading a log found wrong: lines skipped and fields ignored (counted, the first few
    named), and a note on what was left unread."""

    bad_lines: int = 0
    bad_fields: int = 0
    first: list[str] = field(default_factory=list)
    first_fields: list[str] = field(default_factory=list)
    note: str = ""

    def add(self, problem: str) -> None:
        """A line that could not be used."""
        self.bad_lines += 1
        if len(self.first) < 3:
            self.first.append(problem)

    def add_field(self, problem: str) -> None:
        """A field of a usable line that was dropped."""
        self.bad_fields += 1
        if len(self.first_fields) < 2:
            self.first_fields.append(problem.removesuffix(" (ignored)"))

    def check(self, raw: Any, where: str) -> dict[str, Any] | None:
        """:func:`check_event`, counting what it found wrong."""
        found: list[str] = []
        event = check_event(raw, found, where)
        if event is None and found:
            self.add(found[0])
        elif found:
            self.add_field(found[0])
        return event

    def warnings(self, name: str = "metrics.jsonl") -> list[str]:
        out = [f"{name}: {self.note}"] if self.note else []
        for count, first, what in ((self.bad_lines, self.first, "line(s) skipped"),
                                   (self.bad_fields, self.first_fields, "bad field(s) ignored")):
            if count:
                more = f"; {count - len(first)} more" if count > len(first) else ""
                out.append(f"{name}: {count} {what} ({'; '.join(first)}{more})")
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
                event = problems.check(obj, where)
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
        event = self._problems.check(raw, "event")
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
        new._problems = copy.deepcopy(self._problems)
        new.baseline = dict(self.baseline)
        return new
