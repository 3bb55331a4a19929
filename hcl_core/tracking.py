"""Optional experiment tracking: a run's events as TensorBoard scalars, beside a user's other experiments.

:class:`TensorBoardLogger` is a training callback (``train(config, callback=logger)``) that
turns the events of :mod:`hcl_core.train` into TensorBoard scalars, one TensorBoard run per
training run, in the sub-folder ``<log_dir>/<run id>``:

==========================  ====================  =================================================
tag                         x axis                from
==========================  ====================  =================================================
``loss/step``               optimisation step     every ``step`` event
``loss/epoch``              epoch                 ``epoch`` (mean loss of the epoch)
``speed/steps_per_s``       epoch                 ``epoch``
``eval/<metric>``           epoch (0 = at init)   ``eval``: probes, alignment, uniformity,
                                                  same-class mass, effective negatives, clamp share
``baseline/<kind>/<probe>`` 0                     ``baseline``: raw pixels and the random encoder
==========================  ====================  =================================================

At the ``end`` event the run's hyper-parameters are written for TensorBoard's HParams tab (its
metrics are the last ``eval/...`` values), and the file is closed. Stored runs replay the
same events from ``metrics.jsonl`` (:func:`log_run`), so a sweep whose runs train in other
processes is logged as each run comes back. Needs the ``tensorboard`` package::

    tensorboard --logdir DIR          # then open http://localhost:6006
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import RunConfig
from .registry import HYPER_PARAMS, METRICS

__all__ = ["TensorBoardLogger", "TrackingError", "add_arguments", "log_run", "sweep_logger", "tee", "train_logger"]

Callback = Callable[[dict[str, Any]], None]

#: Event keys that are not measurements.
_NOT_SCALARS = {"type", "epoch", "step", "elapsed"}
#: Config fields shown in the HParams tab besides the loss's own hyper-parameters.
_HPARAM_FIELDS = ("loss", "dataset", "encoder", "batch_size", "epochs", "lr", "aug_strength", "seed")


def _safe_name(name: str) -> str:
    """A sub-folder name: path separators and odd characters become ``_`` (``/`` keeps nesting)."""
    parts = [re.sub(r"[^A-Za-z0-9_.=-]+", "_", p).strip(".") for p in name.split("/")]
    return "/".join(p for p in parts if p) or "run"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


class TensorBoardLogger:
    """A ``train`` callback writing TensorBoard event files under ``log_dir/<name>``.

    Args:
        log_dir: the folder ``tensorboard --logdir`` is pointed at (created if needed).
        name: the run's sub-folder (may contain ``/`` to group runs, e.g. ``my-sweep/<run id>``);
            by default the run folder's name from the ``start`` event, else a time stamp.
        config: the run's :class:`~hcl_core.config.RunConfig`, for the HParams tab; by default
            read from the run folder named in the ``start`` event.
        flush_secs: how often TensorBoard sees new points while the run trains.

    Events before ``start`` are ignored; after ``end`` the writer is closed (a new ``start``
    opens a new sub-folder, so one logger can follow several runs in turn). Logging never ends a
    run: if the log folder cannot be written, ``warn`` gets one line and the logger stops.
    """

    def __init__(self, log_dir: str | os.PathLike, *, name: str | None = None, config: RunConfig | None = None,
                 flush_secs: int = 10, warn: Callable[[str], None] | None = None):
        self.log_dir = Path(log_dir)
        self.warn = warn or _warn
        self.name = name
        self.config = config
        self.flush_secs = flush_secs
        self.writer: Any = None
        self.run_path: Path | None = None
        self._run_config: RunConfig | None = None
        self._last_eval: dict[str, float] = {}

    # -- the callback ------------------------------------------------------------------------
    def __call__(self, event: dict[str, Any]) -> None:
        try:
            self._handle(event)
        except OSError as e:  # a full disk or a read-only folder: the training goes on without the log
            self.warn(f"TensorBoard logging to {self.log_dir} stopped: {e}")
            self.writer = None

    def _handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "start":
            self._open(event)
            return
        if self.writer is None:
            return
        if kind == "step":
            self._scalar("loss/step", event.get("loss"), event.get("step"))
        elif kind == "epoch":
            self._scalar("loss/epoch", event.get("loss"), event.get("epoch"))
            self._scalar("speed/steps_per_s", event.get("steps_per_s"), event.get("epoch"))
        elif kind == "eval":
            for key, value in event.items():
                if key not in _NOT_SCALARS and self._scalar(f"eval/{key}", value, event.get("epoch")):
                    self._last_eval[f"eval/{key}"] = float(value)
        elif kind == "baseline":
            for which, values in event.items():
                if isinstance(values, dict):
                    for key, value in values.items():
                        self._scalar(f"baseline/{which}/{key}", value, 0)
        elif kind == "end":
            self._hparams(event.get("state"))
            self.close()

    def close(self) -> None:
        """Flush and close the current event file (safe to call twice)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------
    def _open(self, event: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.close()
        run_dir = event.get("run_dir")
        self.run_path = Path(run_dir) if run_dir else None
        name = self.name or (self.run_path.name if self.run_path else time.strftime("%Y%m%d-%H%M%S"))
        config = self.config
        if config is None and self.run_path is not None:
            try:
                config = RunConfig.from_json((self.run_path / "config.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                config = None
        self._run_config = config
        self._last_eval = {}
        self.writer = SummaryWriter(log_dir=str(self.log_dir / _safe_name(name)), flush_secs=self.flush_secs)
        if config is not None:
            self.writer.add_text("config", "```\n" + config.to_json() + "\n```", 0)

    def _scalar(self, tag: str, value: Any, step: Any) -> bool:
        v = _number(value)
        s = _number(step)
        if v is None or s is None:
            return False
        self.writer.add_scalar(tag, v, int(s))
        return True

    def _hparams(self, state: Any) -> None:
        """The run's hyper-parameters and final metrics, in this run's own event file (HParams tab)."""
        config = self._run_config
        if config is None or not self._last_eval:
            return
        from torch.utils.tensorboard.summary import hparams

        # Every run gets every hyper-parameter (a config sets those its loss does not read to 0), so
        # runs of different losses line up in one table.
        params: dict[str, Any] = {k: getattr(config, k) for k in (*_HPARAM_FIELDS, *HYPER_PARAMS, "detach_weights")}
        params["state"] = str(state)
        # The metric tags are the eval scalars themselves: the tab shows each one's last value.
        metrics = {tag: value for tag, value in self._last_eval.items() if tag.removeprefix("eval/") in METRICS}
        for summary in hparams(params, metrics):
            self.writer.file_writer.add_summary(summary)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def tee(*callbacks: Callback | None) -> Callback:
    """One callback that hands each event to every given one in turn (None entries are skipped)."""
    chosen = [c for c in callbacks if c is not None]

    def call(event: dict[str, Any]) -> None:
        for c in chosen:
            c(event)

    return call


def log_run(run: Any, log_dir: str | os.PathLike, *, name: str | None = None) -> Path:
    """Write a stored run (a folder or ``store.Run``) to TensorBoard from its ``metrics.jsonl``.

    The run's events are replayed through a :class:`TensorBoardLogger`: the same tags as live
    logging. A run still training is logged up to its last written event. Returns the
    sub-folder written.
    """
    from .store import Run, load_run

    r = run if isinstance(run, Run) else load_run(run)
    logger = TensorBoardLogger(log_dir, name=name or r.run_id, config=r.config)
    started = False
    for event in r.events():
        if event.get("type") == "start":
            event = {**event, "run_dir": str(r.path)}  # the folder may have moved since (an import)
            started = True
        elif not started:  # a run file that lost its first line: open the writer anyway
            logger({"type": "start", "run_dir": str(r.path)})
            started = True
        logger(event)
    logger.close()
    return logger.log_dir / _safe_name(logger.name)


# --------------------------------------------------------------------------------------------
# the command line: --tensorboard DIR on train and sweep
# --------------------------------------------------------------------------------------------


class TrackingError(ValueError):
    """``--tensorboard`` cannot be honoured: the package is missing or the folder cannot be written."""


def add_arguments(parser: Any) -> None:
    """Add ``--tensorboard DIR`` to the ``train`` or ``sweep`` sub-parser."""
    parser.add_argument("--tensorboard", metavar="DIR", default=None,
                        help="also log the scalars (loss, probes, alignment, uniformity, same-class mass) for "
                        "TensorBoard, one sub-folder per run; view them with `tensorboard --logdir DIR`")


def _check_log_dir(log_dir: str | os.PathLike) -> Path:
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        raise TrackingError("--tensorboard needs the tensorboard package: pip install tensorboard")
    path = Path(log_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrackingError(f"--tensorboard {log_dir}: the folder cannot be created ({e.strerror or e})") from None
    if not os.access(path, os.W_OK):
        raise TrackingError(f"--tensorboard {log_dir}: the folder is not writable")
    return path


def train_logger(log_dir: str | os.PathLike | None, config: RunConfig | None = None) -> TensorBoardLogger | None:
    """The callback for ``train --tensorboard DIR`` (None without the flag); checks DIR before training."""
    if log_dir is None:
        return None
    return TensorBoardLogger(_check_log_dir(log_dir), config=config)


OnResult = Callable[[int, int, dict[str, Any]], None]


def sweep_logger(log_dir: str | os.PathLike | None, sweep_name: str, then: OnResult | None = None) -> OnResult | None:
    """An ``on_result`` for ``run_sweep`` that logs each run as it comes back, then calls ``then``.

    The runs of a sweep train in other processes (or on other hosts), so each is written from
    its ``metrics.jsonl`` once it is back (:func:`log_run`), as ``DIR/<sweep name>/<run id>``.
    Without ``log_dir`` this is ``then`` itself.
    """
    if log_dir is None:
        return then
    root = _check_log_dir(log_dir)

    def on_result(done: int, total: int, result: dict[str, Any]) -> None:
        run_dir = result.get("run_dir")
        if run_dir:
            try:
                log_run(run_dir, root, name=f"{sweep_name}/{Path(run_dir).name}")
            except (OSError, ValueError) as e:  # a run that cannot be read or logged: the sweep goes on
                _warn(f"TensorBoard logging of {Path(run_dir).name} failed: {e}")
        if then is not None:
            then(done, total, result)

    return on_result
