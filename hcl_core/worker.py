"""A training worker process: ``python -m hcl_core.worker``.

Protocol (one JSON object per line):

* stdin, first line: ``{"config": {...RunConfig...}, "root": "models"}``; later lines control
  the run: ``stop`` (or end of input, e.g. because the app died), ``pause``, ``resume`` and
  ``step`` (one more step, then paused again).
* stdout: every training event, then ``{"type": "error", "message": ...}`` if the run could not
  start or crashed. Step events travel in batches (:class:`EventPipe`): at most
  :data:`BATCH_S` late, and never behind a later event.

The process imports torch *before* it reads its config, so the app keeps one worker warm and
a click on Start does not wait for the imports. Training in its own process keeps the GIL of
the app's server out of the training loop (see ``shared/docs/MEASURED.md``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import TextIO

from .control import RunControl

__all__ = ["BATCH_S", "EventPipe", "main"]

#: Longest a step event waits in the worker before it is written (the pages refresh every 2 s).
BATCH_S = 0.25


class EventPipe:
    """The worker's event stream to the app: one JSON line per event, step events in batches.

    One write per step woke the app's server 90 times a second on a fast run, and on two cores
    each wake-up pre-empts one of the two training threads while the other waits for it: the
    app's worker trained at 0.88 of the bare loop's speed with the page closed, 0.96 with steps
    batched (BENCHMARKS.md). So a step event waits until :data:`BATCH_S` has passed since the
    last write; the first step (the first point on the chart), every other event and
    :meth:`flush` write at once, after whatever is waiting, so the order is kept. The run's
    control calls :meth:`flush` before it holds the run (pause, single step): a held run's
    last step is on screen at once.

    ``on_broken`` is called when the app is gone (the pipe is closed): nobody watches, so the
    worker stops the run (the run's files say why).
    """

    def __init__(self, out: TextIO, *, batch_s: float = BATCH_S, on_broken: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self._out, self._batch_s, self._on_broken, self._clock = out, batch_s, on_broken, clock
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._last_write = -float("inf")
        self._steps_written = False

    def send(self, event: dict) -> None:
        line = json.dumps(event, default=float)
        with self._lock:
            self._pending.append(line)
            if (event.get("type") == "step" and self._steps_written
                    and self._clock() - self._last_write < self._batch_s):
                return
            self._steps_written = self._steps_written or event.get("type") == "step"
            self._write()

    def flush(self) -> None:
        with self._lock:
            self._write()

    def _write(self) -> None:
        if not self._pending:
            return
        text = "\n".join(self._pending) + "\n"
        self._pending.clear()
        self._last_write = self._clock()
        try:
            self._out.write(text)
            self._out.flush()
        except (OSError, ValueError):
            if self._on_broken is not None:
                self._on_broken()


def _watch_stdin(control: RunControl) -> None:
    for line in sys.stdin:
        command = line.strip()
        if command == "stop":
            break
        if command == "pause":
            control.pause()
        elif command == "resume":
            control.resume()
        elif command == "step":
            control.step()
    control.set()  # a stop line, or the parent closed the pipe


def _warm_up() -> None:
    """Pay the lazy imports before a job arrives, not after Start (and before the first stop check).

    The first ``torch.optim.Adam`` imports ``torch._dynamo``; the digits loader and the probes
    import scikit-learn. Together they take seconds of CPU.
    """
    import sklearn.datasets  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import sklearn.model_selection  # noqa: F401
    import torch

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def main() -> int:
    # Heavy imports first: this is the "warm" part.
    from .config import ConfigError, RunConfig
    from .data import DataNotFoundError
    from .threads import set_process_threads
    from .train import train

    _warm_up()

    out = sys.stdout
    sys.stdout = sys.stderr  # stray prints from libraries must not corrupt the event stream
    stop = RunControl()
    pipe = EventPipe(out, on_broken=stop.set)
    stop.on_hold = pipe.flush
    send = pipe.send

    send({"type": "ready"})
    first = sys.stdin.readline()
    if not first.strip():
        return 0  # closed before any job: a spare worker that was not needed
    try:
        request = json.loads(first)
        config = RunConfig.from_dict(request["config"])
    except (ValueError, KeyError, ConfigError) as e:
        send({"type": "error", "message": f"bad job request: {e}"})
        return 2
    threading.Thread(target=_watch_stdin, args=(stop,), daemon=True).start()
    # Every failure after the run folder exists is recorded in the run by train() itself; the
    # error event tells the app. SIGTERM keeps its default (the process ends at once, even inside
    # a long evaluation): the job manager that sent it records the run as stopped.
    try:
        set_process_threads(config.threads or int(request.get("threads") or 0))  # the config's number wins
        train(config, stop=stop, callback=send, root=request.get("root", "models"))
    except (DataNotFoundError, ValueError) as e:
        send({"type": "error", "message": str(e)})
        return 2
    except Exception as e:
        traceback.print_exc()
        send({"type": "error", "message": f"{type(e).__name__}: {e}"})
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _exit_now(code: int) -> None:
    """Flush and leave at once, skipping the interpreter's teardown.

    Tearing down an interpreter with torch, torch._dynamo and scikit-learn loaded takes over a
    second, and the job only counts as ended when the process is gone: a cooperative Stop would
    overrun its second and be turned into a terminate. Every run file is closed by then (train()
    closes its writer), so nothing is lost by skipping the teardown.
    """
    for stream in (sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    _exit_now(main())
