"""The published linear evaluation: a linear layer on frozen features, trained on augmented images.

The HCL repository's ``image/linear.py`` (and SimCLR implementations it follows) evaluates an
encoder by training one linear layer on the frozen backbone's features with Adam (lr 1e-3,
weight decay 1e-6) for 100 epochs, mini-batches of 512 *augmented* training images (the
pretraining augmentation), then reporting the accuracy on the clean test images. The papers'
accuracies are this number. :func:`linear_protocol` reproduces it for a stored run, so results can
be set beside the papers'; the fast logistic-regression probe stays the live metric.

One deliberate difference: the backbone stays in eval mode (its batch norm uses the running
statistics and is never updated). The published script calls ``net.train()`` on the whole
network, so its frozen backbone's batch norm normalises with each batch's statistics and keeps
updating its running averages while the linear layer trains.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .. import data as data_lib
from ..encoders import resolve_device
from ..export.encoder import load_encoder
from ..store import Run
from ..threads import limited_threads
from ..train import load_config_data

__all__ = ["LinearProtocol", "linear_protocol"]


@dataclass(frozen=True)
class LinearProtocol:
    """The result of :func:`linear_protocol`.

    Attributes:
        accuracy: test accuracy after the last epoch (never the best epoch), in [0, 1].
        train_accuracy: accuracy on the augmented training batches of the last epoch.
        test_curve: ``(epoch, test accuracy)`` every 5 epochs and at the last.
        epochs, lr, weight_decay, batch_size, aug_strength: the protocol as run.
        seconds: wall time.
    """

    accuracy: float
    train_accuracy: float
    test_curve: tuple[tuple[int, float], ...]
    epochs: int
    lr: float
    weight_decay: float
    batch_size: int
    aug_strength: float
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def _features(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([backbone(x[i : i + 1024]) for i in range(0, len(x), 1024)])


def linear_protocol(run: Run, *, epochs: int = 100, lr: float = 1e-3, weight_decay: float = 1e-6,
                    batch_size: int = 512, aug_strength: float | None = None, seed: int = 0, device: str = "auto",
                    progress: Callable[[int, float], None] | None = None) -> LinearProtocol:
    """Train a linear classifier on the frozen features of ``run``'s encoder, the published way.

    Args:
        run: a stored run (its last checkpoint is evaluated).
        epochs, lr, weight_decay, batch_size: the published protocol's values by default.
        aug_strength: the augmentation of the training images; the run's own by default.
        seed: seeds the linear layer, the shuffling and the augmentation.
        device: ``auto``, ``cpu`` or ``cuda``.
        progress: called after every epoch with ``(epoch, training loss)``.
    """
    if epochs < 1 or batch_size < 1 or not lr > 0 or weight_decay < 0:
        raise ValueError(f"epochs and batch_size must be >= 1, lr > 0 and weight_decay >= 0; got {epochs}, "
                         f"{batch_size}, {lr}, {weight_decay}")
    t0 = time.perf_counter()
    c = run.config
    strength = c.aug_strength if aug_strength is None else float(aug_strength)
    dev = resolve_device(device)
    ds = load_config_data(c)
    backbone = load_encoder(run, device=dev)
    for p in backbone.parameters():
        p.requires_grad_(False)
    train_x, train_y = ds.train_x.to(dev), ds.train_y.to(dev)
    test_x, test_y = ds.test_x.to(dev), ds.test_y.to(dev)
    torch.manual_seed(seed)
    with limited_threads():
        test_f = _features(backbone, test_x)
        fc = nn.Linear(test_f.shape[1], ds.num_classes).to(dev)
        opt = torch.optim.Adam(fc.parameters(), lr=lr, weight_decay=weight_decay)
        shuffle = torch.Generator().manual_seed(seed)
        aug = torch.Generator(device=dev).manual_seed(seed + 1)
        curve, correct, seen = [], 0, 0
        for epoch in range(1, epochs + 1):
            perm = torch.randperm(len(train_x), generator=shuffle).to(dev)
            total, correct, seen = 0.0, 0, 0
            for b in range(0, len(perm), batch_size):
                idx = perm[b : b + batch_size]
                with torch.no_grad():
                    f = backbone(data_lib.augment(train_x[idx], strength, aug, kind=ds.augmentation))
                out = fc(f)
                loss = nn.functional.cross_entropy(out, train_y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                correct += int((out.argmax(1) == train_y[idx]).sum())
                seen += len(idx)
            if progress is not None:
                progress(epoch, total / seen)
            if epoch % 5 == 0 or epoch == epochs:
                with torch.no_grad():
                    curve.append((epoch, float((fc(test_f).argmax(1) == test_y).float().mean())))
    return LinearProtocol(curve[-1][1], correct / max(seen, 1), tuple(curve), epochs, lr, weight_decay, batch_size,
                          strength, time.perf_counter() - t0)
