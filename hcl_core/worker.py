"""A training worker process: ``python -m hcl_core.worker``.

Protocol (one JSON object per line):

* stdin, first line: ``{"config": {...RunConfig...}, "root": "models"}``; any later line
  ``stop`` (or end of input, e.g. because the app died) asks the run to stop.
* stdout: every training event, then ``{"type": "error", "message": ...}`` if the run could not
  start or crashed.

The process imports torch *before* it reads its config, so the app keeps one worker warm and
a click on Start does not wait for the imports. Training in its own process keeps the GIL of
the app's server out of the training loop (see ``shared/docs/MEASURED.md``).
"""

from __future__ import annotations

import json
import sys
import threading
import traceback


def _watch_stdin(stop: threading.Event) -> None:
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    stop.set()  # a stop line, or the parent closed the pipe


def main() -> int:
    # Heavy imports first: this is the "warm" part.
    from .config import ConfigError, RunConfig
    from .data import DataNotFoundError
    from .train import train

    out = sys.stdout
    sys.stdout = sys.stderr  # stray prints from libraries must not corrupt the event stream
    lock = threading.Lock()

    def send(event: dict) -> None:
        line = json.dumps(event, default=float)
        with lock:
            out.write(line + "\n")
            out.flush()

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
    stop = threading.Event()
    threading.Thread(target=_watch_stdin, args=(stop,), daemon=True).start()
    try:
        train(config, stop=stop, callback=send, root=request.get("root", "models"))
    except (DataNotFoundError, ValueError) as e:
        send({"type": "error", "message": str(e)})
        return 2
    except Exception as e:
        traceback.print_exc()
        send({"type": "error", "message": f"{type(e).__name__}: {e}"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
