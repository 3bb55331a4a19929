"""A training worker process: ``python -m hcl_core.worker``.

Protocol (one JSON object per line):

* stdin, first line: ``{"config": {...RunConfig...}, "root": "models"}``; later lines control
  the run: ``stop`` (or end of input, e.g. because the app died), ``pause``, ``resume`` and
  ``step`` (one more step, then paused again).
* stdout: every training event, then ``{"type": "error", "message": ...}`` if the run could not
  start or crashed.

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
import traceback

from .control import RunControl


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
    lock = threading.Lock()
    stop = RunControl()

    def send(event: dict) -> None:
        line = json.dumps(event, default=float)
        with lock:
            try:
                out.write(line + "\n")
                out.flush()
            except (OSError, ValueError):  # the app is gone: nobody watches, so stop (the run says why)
                stop.set()

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
