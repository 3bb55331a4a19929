"""Progress of the long data steps (download, checksum, extraction, first read) for any front end.

A step reports :class:`Progress` values to a plain callback, ``progress(p)``. The command line
passes :func:`tqdm_progress` (one tqdm bar per step on stderr); the app passes a function that
moves a progress bar. A loader called through ``load_dataset`` has no progress argument of its
own: it reports to the callback installed around the call with :func:`reporting_to`, so
``with reporting_to(tqdm_progress()): train(config)`` shows the first read of a large data set.

Reports are throttled (at most one per ``interval`` seconds, plus the first and the last), so a
callback that redraws a page is cheap; the last report of a step has ``finished=True``.
"""

from __future__ import annotations

import contextvars
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

__all__ = ["Progress", "ProgressFn", "Tracker", "current_progress", "reporting_to", "tqdm_progress"]


@dataclass(frozen=True)
class Progress:
    """Where one long step stands.

    Attributes:
        step: what is being done: ``"download"``, ``"verify"`` (checksum), ``"extract"`` or ``"read"``.
        item: what it is done to (a file name or a data set).
        done: units done so far.
        total: units in all, or None where unknown (a server that sends no length).
        unit: ``"B"`` (bytes) or a countable noun (``"image"``).
        finished: the last report of this step.
    """

    step: str
    item: str
    done: int
    total: int | None
    unit: str = "B"
    finished: bool = False

    @property
    def fraction(self) -> float | None:
        """``done / total`` in [0, 1], or None where the total is unknown."""
        if not self.total:
            return 1.0 if self.finished else None
        return min(max(self.done / self.total, 0.0), 1.0)

    def describe(self) -> str:
        """One line, e.g. ``download train-images-idx3-ubyte.gz: 4.2 of 9.9 MB (42 %)``."""
        def amount(n: int) -> str:
            return f"{n / 1e6:.1f}" if self.unit == "B" else f"{n:,}"

        unit = "MB" if self.unit == "B" else self.unit + ("s" if (self.total or self.done) != 1 else "")
        of = f" of {amount(self.total)}" if self.total else ""
        share = f" ({100 * self.fraction:.0f} %)" if self.fraction is not None and self.total else ""
        return f"{self.step} {self.item}: {amount(self.done)}{of} {unit}{share}" + (" - done" if self.finished else "")


ProgressFn = Callable[[Progress], None]

_CURRENT: contextvars.ContextVar[ProgressFn | None] = contextvars.ContextVar("hcl_data_progress", default=None)


def current_progress() -> ProgressFn | None:
    """The callback installed by the innermost :func:`reporting_to`, if any."""
    return _CURRENT.get()


@contextmanager
def reporting_to(progress: ProgressFn | None) -> Iterator[None]:
    """Send the progress of data steps started inside the block (in this thread) to ``progress``."""
    token = _CURRENT.set(progress)
    try:
        yield
    finally:
        _CURRENT.reset(token)


class Tracker:
    """Throttled reports of one step: ``advance(n)`` as work is done, ``finish()`` at the end.

    Used as a context manager it finishes on leaving, also when the step fails, so a front
    end always closes its bar. ``progress=None`` falls back to :func:`current_progress`; with
    neither, every call is a no-op.
    """

    def __init__(self, step: str, item: str, total: int | None, *, unit: str = "B",
                 progress: ProgressFn | None = None, interval: float = 0.1):
        self.fn = progress if progress is not None else current_progress()
        self.step, self.item, self.total, self.unit, self.interval = step, item, total, unit, interval
        self.done = 0
        self._last = -1.0
        self._finished = False
        self._report(False)

    def advance(self, n: int) -> None:
        self.done += n
        if self.fn is not None and time.monotonic() - self._last >= self.interval:
            self._report(False)

    def finish(self) -> None:
        if not self._finished:
            self._finished = True
            self._report(True)

    def _report(self, finished: bool) -> None:
        if self.fn is not None:
            self._last = time.monotonic()
            self.fn(Progress(self.step, self.item, self.done, self.total, self.unit, finished))

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()


def tqdm_progress(stream: IO[str] | None = None) -> ProgressFn:
    """A callback drawing one tqdm bar per step on ``stream`` (stderr), closed when the step finishes.

    On a terminal the bars redraw ten times a second; into a log file (not a terminal) they are
    ASCII and redrawn at most every 2 s, so a log holds a few lines per step, not thousands.
    """
    from tqdm import tqdm

    out = stream or sys.stderr
    tty = out.isatty()
    bars: dict[tuple[str, str], tqdm] = {}

    def report(p: Progress) -> None:
        key = (p.step, p.item)
        bar = bars.get(key)
        if bar is None:
            bar = bars[key] = tqdm(total=p.total, unit=p.unit, unit_scale=p.unit == "B", desc=f"{p.step} {p.item}",
                                   file=out, dynamic_ncols=tty, ascii=not tty, mininterval=0.1 if tty else 2.0,
                                   leave=True)
        bar.update(p.done - bar.n)
        if p.finished:
            bar.close()
            del bars[key]

    return report
