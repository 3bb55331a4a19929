"""The training loop: no UI, only a config, a stop flag and a callback.

``train(config, ...)`` emits plain-dict events (also appended to ``metrics.jsonl``):

* ``{"type": "start", "run_dir", "steps_per_epoch", "total_steps", "epochs", "device", "threads", "train_size"}``
* ``{"type": "step", "step", "epoch", "loss", "elapsed"}``      every optimisation step
* ``{"type": "epoch", "epoch", "loss", "steps_per_s", "elapsed"}``
* ``{"type": "eval", "epoch", "linear_probe_acc", "few_shot_probe_acc", "knn_acc",
  "alignment", "uniformity", "same_class_mass", "effective_negatives", "clamp_share"}``
  at epoch 0 (the randomly initialised encoder) and every ``snapshot_every`` epochs
* ``{"type": "baseline", "raw": {...}, "random_init": {...}}`` once, after the epoch-0 evaluation:
  the probe accuracies of raw inputs and of the randomly initialised encoder (the run's only
  record of them)
* ``{"type": "end", "state", "message", "summary"}``

The epoch-0 evaluation and the baseline follow the first ``step`` event: they are computed on a
copy of the initial weights taken before that step (the evaluation never changes a model: it
runs in eval mode under ``no_grad``), so a person who pressed Start sees the first loss point
without waiting for them (0.3 s on digits, seconds on larger data sets). A run that ends before
its first step still records both.

Same seed and same device give the same numbers.
"""

from __future__ import annotations

import contextlib
import copy
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import data as data_lib
from .config import RunConfig
from .data.unlabeled import TrainingPool, has_unlabeled, load_unlabeled
from .encoders import ContrastiveModel, build_encoder, embed_views, resolve_device
from .evaluate import alignment, evaluate_features, uniformity
from .losses import clamp_share, compute_loss, effective_negatives, negative_weights, same_class_mass
from .registry import LOSSES, PROBES
from .runfiles import EVAL_KEYS, clean_message
from .store import DEFAULT_ROOT, RunWriter

__all__ = ["NEGATIVES_BATCH", "PROBE_TRAIN_MAX", "StopSignal", "TrainResult", "raw_baseline",
           "stop_on_sigterm", "train"]

Callback = Callable[[dict[str, Any]], None]

#: Samples in the fixed two-view batch whose projections every snapshot stores (Negatives page).
NEGATIVES_BATCH = 256
#: The probes fit on at most this many training samples, so evaluation stays quick on big sets.
PROBE_TRAIN_MAX = 10_000
_EVAL_SEED = 12345  # fixed: every run embeds the same subset and the same two views


@dataclass
class TrainResult:
    """How a run ended: its folder, state (finished / stopped / failed), message, the summary saved
    in its status, and its baseline (``{"raw": {...}, "random_init": {...}}`` probe accuracies)."""

    run_dir: Path | None
    state: str
    message: str
    summary: dict[str, Any]
    baseline: dict[str, Any] = field(default_factory=dict)


def _fixed_subset(y: torch.Tensor, size: int) -> torch.Tensor:
    """Indices of a fixed, class-interleaved subset of ``size`` samples (same for every run)."""
    g = torch.Generator().manual_seed(_EVAL_SEED)
    perm = torch.randperm(len(y), generator=g)
    return perm[: min(size, len(y))].sort().values


def _probe_split(ds: data_lib.Dataset) -> torch.Tensor:
    return _fixed_subset(ds.train_y, PROBE_TRAIN_MAX)


def raw_baseline(ds: data_lib.Dataset) -> dict[str, float]:
    """Probe accuracies on raw inputs (flattened pixels): what any encoder must beat."""
    idx = _probe_split(ds)
    flat_train = ds.train_x[idx].flatten(1).numpy()
    flat_test = ds.test_x.flatten(1).numpy()
    return evaluate_features(flat_train, ds.train_y[idx].numpy(), flat_test, ds.test_y.numpy())


class _Evaluator:
    """Everything measured at a snapshot, on fixed inputs so epochs and runs compare."""

    def __init__(self, config: RunConfig, ds: data_lib.Dataset, device: torch.device):
        self.config = config
        self.device = device
        self.probe_idx = _probe_split(ds)
        self.train_x = ds.train_x[self.probe_idx].to(device)
        self.train_y = ds.train_y[self.probe_idx].numpy()
        self.test_x = ds.test_x.to(device)
        self.test_y = ds.test_y.numpy()
        self.subset = _fixed_subset(ds.test_y, config.eval_size)
        nb = self.subset[:NEGATIVES_BATCH]
        g = torch.Generator(device=device).manual_seed(_EVAL_SEED)
        self.neg_x1, self.neg_x2 = data_lib.two_views(
            self.test_x[nb], config.aug_strength, g, kind=ds.augmentation
        )
        self.neg_y = ds.test_y[nb]

    def eval_inputs(self) -> dict[str, np.ndarray]:
        return {
            "inputs": self.test_x[self.subset].cpu().numpy().astype(np.float16),
            "labels": self.test_y[self.subset.numpy()],
            "indices": self.subset.numpy(),
        }

    @torch.no_grad()
    def __call__(self, model: ContrastiveModel, epoch: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        c = self.config
        train_f = model.features(self.train_x).float().cpu().numpy()
        test_f = model.features(self.test_x).float().cpu().numpy()
        metrics: dict[str, Any] = {"type": "eval", "epoch": epoch}
        metrics.update(evaluate_features(train_f, self.train_y, test_f, self.test_y, seed=c.seed))
        was_training = model.training
        model.eval()
        z1 = torch.nn.functional.normalize(model(self.neg_x1).float(), dim=1)
        z2 = torch.nn.functional.normalize(model(self.neg_x2).float(), dim=1)
        model.train(was_training)
        metrics["alignment"] = alignment(z1.cpu().numpy(), z2.cpu().numpy())
        metrics["uniformity"] = uniformity(z1.cpu().numpy())
        labels = self.neg_y.to(z1.device)
        nw = negative_weights(
            z1, z2, labels, loss=c.loss, tau=c.tau, beta=c.beta, tau_plus=c.tau_plus
        )
        metrics["same_class_mass"] = float(same_class_mass(nw).mean())
        metrics["effective_negatives"] = float(effective_negatives(nw).mean())
        if c.loss in ("hcl", "dcl"):
            beta = c.beta if c.loss == "hcl" else 0.0
            metrics["clamp_share"] = clamp_share(z1, z2, tau=c.tau, beta=beta, tau_plus=c.tau_plus)
        snapshot = {
            "features": test_f[self.subset.numpy()].astype(np.float32),
            "labels": self.test_y[self.subset.numpy()],
            "z1": z1.cpu().numpy().astype(np.float32),
            "z2": z2.cpu().numpy().astype(np.float32),
            "z_labels": self.neg_y.numpy(),
        }
        return metrics, snapshot


def load_config_data(config: RunConfig) -> data_lib.Dataset:
    """The data set a config trains on, with every loader option the config holds."""
    return data_lib.load_dataset(config.dataset, config.data_root, max_train=config.max_train,
                                 synthetic_overlap=config.synthetic_overlap, twins_gap=config.twins_gap,
                                 twins_classes=config.twins_classes, image_size=config.image_size)


def _set_seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


class StopSignal(KeyboardInterrupt):
    """SIGTERM, delivered as an interrupt in the main thread (see :func:`stop_on_sigterm`)."""


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`StopSignal` in the main thread, as Ctrl-C raises
    ``KeyboardInterrupt``, so :func:`train` records the run as ``stopped`` before the process ends.

    For the owner of a process (the command line); a no-op outside the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise StopSignal("SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def train(
    config: RunConfig,
    *,
    stop: threading.Event | Any | None = None,
    callback: Callback | None = None,
    root: str | Path = DEFAULT_ROOT,
    write: bool = True,
    separate_view_passes: bool = True,
) -> TrainResult:
    """Train one run end to end and write its files under ``root`` (unless ``write`` is False).

    ``stop`` is anything with ``is_set()`` (a threading or multiprocessing Event); it is checked
    before every step, so a stop takes effect within one step. A :class:`~hcl_core.control.RunControl`
    can also pause the run between steps and let single steps through. ``callback`` receives every event.
    Errors in the data or config (a missing file, a one-class training split) propagate before
    any file is written. Once the run folder exists, every way the run can end is recorded in
    its status with a message: a NaN/inf loss ends it as ``failed`` and returns; any other
    exception (a disk error, a permission error, a failing callback) as ``failed`` and is
    re-raised; ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM under :func:`stop_on_sigterm`) as
    ``stopped`` and is re-raised. The last good snapshot and checkpoint are kept.
    ``separate_view_passes``: embed the two views in two forward passes (per-view batch norm
    statistics, as the published code), else in one.
    """
    device = resolve_device(config.device)
    ds = load_config_data(config)
    supervised = LOSSES[config.loss].supervised
    # Self-supervised losses may also train on unlabelled images (STL-10's train+unlabeled); they
    # stay uint8 on the CPU and each batch is converted on its way to the device.
    unlabeled = None
    if config.unlabeled and not supervised and has_unlabeled(config.dataset):
        unlabeled = load_unlabeled(config.dataset, config.data_root, image_size=config.image_size)
    pool = TrainingPool(ds.train_x.to(device), unlabeled)
    if len(ds.train_x) < 2:
        raise ValueError(f"data set {config.dataset!r} has fewer than 2 training samples")
    present = torch.unique(ds.train_y)
    if len(present) < 2:
        raise ValueError(f"the training split of data set {config.dataset!r} holds a single class "
                         f"({ds.classes[int(present[0])]!r}): the probes and the supervised losses need at least "
                         "two classes; add samples of another class")
    _set_seed(config.seed)
    model = build_encoder(
        config.encoder, ds.input_shape, hidden_dim=config.hidden_dim, out_dim=config.feature_dim
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    evaluator = _Evaluator(config, ds, device)
    train_y = ds.train_y.to(device)
    n = len(pool)
    batch = min(config.batch_size, n)
    steps_per_epoch = n // batch  # drop the ragged last batch: the loss depends on batch size
    total_steps = steps_per_epoch * config.epochs
    shuffle_gen = torch.Generator().manual_seed(config.seed)
    aug_gen = torch.Generator(device=device).manual_seed(config.seed + 1)

    writer = RunWriter(root, config) if write else None
    t0 = time.perf_counter()

    def emit(event: dict[str, Any], flush: bool = False) -> None:
        if writer is not None:
            writer.append_event(event, flush=flush)
        if callback is not None:
            callback(event)

    def snapshot(epoch: int, net: ContrastiveModel = model) -> dict[str, Any]:
        metrics, arrays = evaluator(net, epoch)
        metrics["elapsed"] = time.perf_counter() - t0
        if writer is not None:
            writer.save_snapshot(epoch, arrays)
            writer.save_checkpoint({"model": net.state_dict(), "epoch": epoch})
        emit(metrics, flush=True)
        return metrics

    def evaluate_initial(initial: ContrastiveModel) -> dict[str, Any]:
        """The raw baseline and the epoch-0 evaluation of ``initial`` (the weights before step 1)."""
        baseline["raw"] = raw_baseline(ds)
        if writer is not None:
            writer.save_eval_inputs(**evaluator.eval_inputs(), class_names=tuple(c[:200] for c in ds.classes))
        metrics = snapshot(0, initial)
        baseline["random_init"] = {k: metrics[k] for k in PROBES}
        emit({"type": "baseline", **baseline}, flush=True)  # the run's one record of its baseline
        return metrics

    def record_end(end_state: str, end_message: str, summary: dict[str, Any]) -> None:
        """The end event and the status after an exception: as far as the disk allows, never raising."""
        event = {"type": "end", "state": end_state, "message": end_message, "summary": summary}
        if callback is not None:
            with contextlib.suppress(Exception):
                callback(event)
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.append_event(event)
            writer.abandon(end_state, end_message, summary)

    state, message = "finished", ""
    last_eval: dict[str, Any] = {}
    baseline: dict[str, Any] = {}
    step = epoch = 0
    try:
        # "start" (which names the run folder) goes out as soon as the folder exists, before the
        # raw baseline and the epoch-0 evaluation (seconds on larger data sets): a Stop in that
        # phase terminates the worker, and the job manager needs the folder to mark it stopped.
        emit({
            "type": "start",
            "run_dir": str(writer.path) if writer else None,
            "steps_per_epoch": steps_per_epoch,
            "total_steps": total_steps,
            "epochs": config.epochs,
            "device": str(device),
            "threads": torch.get_num_threads(),
            "train_size": n,
        }, flush=True)
        if writer is not None:
            writer.write_status(total_steps=total_steps)
        initial: ContrastiveModel | None = copy.deepcopy(model)  # evaluated after the first step
        model.train()
        for epoch in range(1, config.epochs + 1):
            perm = torch.randperm(n, generator=shuffle_gen).to(device)
            epoch_loss, epoch_t0 = 0.0, time.perf_counter()
            for b in range(steps_per_epoch):
                if stop is not None and stop.is_set():
                    state, message = "stopped", f"stopped by the user at epoch {epoch}, step {step}"
                    break
                # A RunControl can hold the run here between steps (pause, single step).
                if hasattr(stop, "wait_turn") and not stop.wait_turn():
                    state, message = "stopped", f"stopped by the user at epoch {epoch}, step {step}"
                    break
                idx = perm[b * batch : (b + 1) * batch]
                x1, x2 = data_lib.two_views(pool.batch(idx, device), config.aug_strength, aug_gen, kind=ds.augmentation)
                z1, z2 = embed_views(model, x1, x2, separate=separate_view_passes)
                loss = compute_loss(
                    config.loss, z1, z2, train_y[idx] if supervised else None,
                    tau=config.tau, beta=config.beta, tau_plus=config.tau_plus,
                    detach_weights=config.detach_weights,
                )
                value = float(loss.detach())
                if not math.isfinite(value):
                    state = "failed"
                    message = (f"the loss became {value} at epoch {epoch}, step {step + 1}: training stopped. "
                               "Try a smaller learning rate, a larger tau or a smaller beta.")
                    break
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                epoch_loss += value
                emit({"type": "step", "step": step, "epoch": epoch, "loss": value,
                      "elapsed": time.perf_counter() - t0})
                if initial is not None:
                    evaluated_at = time.perf_counter()
                    last_eval, initial = evaluate_initial(initial), None
                    epoch_t0 += time.perf_counter() - evaluated_at  # epoch 1's speed: its steps only
            if state != "finished":
                break
            seconds = time.perf_counter() - epoch_t0
            emit({"type": "epoch", "epoch": epoch, "loss": epoch_loss / max(steps_per_epoch, 1),
                  "steps_per_s": steps_per_epoch / seconds if seconds > 0 else 0.0,
                  "elapsed": time.perf_counter() - t0})
            if epoch % config.snapshot_every == 0 or epoch == config.epochs:
                last_eval = snapshot(epoch)
        if initial is not None:  # the run ended before its first step
            last_eval = evaluate_initial(initial)
    except KeyboardInterrupt as e:
        how = "SIGTERM" if isinstance(e, StopSignal) else "Ctrl-C"
        record_end("stopped", f"stopped by {how} at epoch {epoch}, step {step}",
                   _summary(last_eval, max(epoch - 1, 0), step, t0))
        raise
    except BaseException as e:  # recorded in the run, then re-raised for the caller to show
        record_end("failed", clean_message(f"{type(e).__name__}: {e}"), _summary(last_eval, epoch, step, t0))
        raise
    summary = _summary(last_eval, epoch if state == "finished" else epoch - 1, step, t0)
    try:
        emit({"type": "end", "state": state, "message": message, "summary": summary}, flush=True)
        if writer is not None:
            writer.close(state, message, summary)
    except BaseException as e:  # e.g. the disk filled up while the run ended
        record_end("failed", clean_message(f"{type(e).__name__} while saving the end of the run: {e}"), summary)
        raise
    return TrainResult(writer.path if writer else None, state, message, summary, baseline)


def _summary(last_eval: dict[str, Any], epoch: int, step: int, t0: float) -> dict:
    """The final numbers: the last evaluation's metrics, epochs trained, the epoch evaluated, steps, seconds."""
    out = {k: last_eval[k] for k in EVAL_KEYS if k in last_eval}
    out.update(epochs=max(epoch, 0), steps=step, seconds=round(time.perf_counter() - t0, 3))
    if "epoch" in last_eval:
        out["evaluated_epoch"] = last_eval["epoch"]
    return out
