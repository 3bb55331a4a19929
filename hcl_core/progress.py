"""Progress on stderr for the command line: tqdm bars for a training run and for a sweep.

:class:`TrainProgress` is a ``train`` callback (it reads the run's events: ``start``,
``step``, ``epoch``, ``eval``, ``end``); :class:`SweepProgress` is a ``run_sweep`` ``on_result``.
Both draw one tqdm bar (steps of the run, runs of the sweep) and print their one-line
messages above it with ``tqdm.write``, so a terminal shows a bar that stays at the bottom and a
log file (stderr not a terminal) gets whole lines and the bar's states, redrawn at most every
``_LOG_INTERVAL_S`` seconds.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from .registry import LOSSES, METRICS, PROBES

__all__ = ["SweepProgress", "TrainProgress"]

_TTY_INTERVAL_S = 0.1
_LOG_INTERVAL_S = 2.0


def _bar(stream: IO[str], total: int, unit: str, desc: str) -> tqdm:
    tty = stream.isatty()
    return tqdm(total=total, unit=unit, desc=desc, file=stream, dynamic_ncols=tty, ascii=not tty,
                mininterval=_TTY_INTERVAL_S if tty else _LOG_INTERVAL_S, leave=True)


class TrainProgress:
    """A bar of the run's steps with the epoch and the loss; the evaluations as lines above it."""

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.bar: tqdm | None = None
        self.epochs = 0
        self.run_dir: str | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "start":
            self.epochs, self.run_dir = event["epochs"], event.get("run_dir")
            self.bar = _bar(self.stream, event["total_steps"], "step", "train")
            self.bar.write(f"training on {event['device']}: {event['train_size']} samples, "
                           f"{event['total_steps']} steps -> {event['run_dir']}", file=self.stream)
        elif self.bar is None:
            return
        elif kind == "step":
            self.bar.set_postfix_str(f"epoch {event['epoch']}/{self.epochs} loss {event['loss']:.4f}", refresh=False)
            self.bar.update(event["step"] - self.bar.n)
        elif kind == "epoch" and not self.tty:
            self.bar.write(f"epoch {event['epoch']}/{self.epochs}  loss {event['loss']:.4f}  "
                           f"{event['steps_per_s']:.0f} steps/s", file=self.stream)
        elif kind == "eval" and event["epoch"] > 0:
            probes = "  ".join(f"{METRICS[k].short} {event[k]:.3f}" for k in PROBES if k in event)
            self.bar.write(f"  eval epoch {event['epoch']}: {probes}", file=self.stream)
        elif kind == "end":
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class SweepProgress:
    """A bar of the runs that came back; one line per run above it (``[done/total] loss β seed: ...``)."""

    def __init__(self, total: int, stream: IO[str] | None = None):
        self.stream = stream or sys.stderr
        self.total = total
        self.bar: tqdm | None = None

    def start(self, folder: Path, backend: str, how: str) -> None:
        print(f"sweep of {self.total} runs -> {folder} ({backend}, {how})", file=self.stream, flush=True)
        self.bar = _bar(self.stream, self.total, "run", "sweep")

    def __call__(self, done: int, total: int, result: dict[str, Any]) -> None:
        c = result["config"]
        beta = f" β={c['beta']:g}" if c["loss"] in LOSSES and LOSSES[c["loss"]].tilts else ""
        s = result.get("summary") or {}
        if result["state"] == "finished":
            what = "  ".join(f"{METRICS[k].short} {s.get(k, math.nan):.3f}" for k in ("linear_probe_acc", "knn_acc"))
        else:
            what = f"{result['state'].upper()}: {result.get('message', '')[:160]}"
        line = f"[{done:>{len(str(total))}}/{total}] {c['loss']}{beta} seed {c['seed']}: {what}  " \
               f"({result.get('seconds', 0):.1f} s)"
        if self.bar is None:
            print(line, file=self.stream)
            return
        self.bar.write(line, file=self.stream)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
