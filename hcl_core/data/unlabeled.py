"""Unlabelled images for self-supervised training, next to the labelled splits the probes use.

STL-10 ships 100,000 unlabelled images besides its 5,000 labelled training images, and the
papers train their self-supervised encoders on both (HCL's ``utils.get_dataset('stl10')``
builds its training set with torchvision's ``split='train+unlabeled'``; the kNN and linear
evaluations use ``train`` and ``test`` only). :func:`load_unlabeled` returns such images as
uint8, and :class:`TrainingPool` draws training batches from the labelled images followed by the
unlabelled ones, converting each batch to float32 only when it is drawn.

Only losses that use no labels may train on the pool: a supervised loss (SupCon, H-SCL) needs
a label for every image, so it trains on the labelled images alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from .stl10 import _unlabeled_cached, load_stl10_unlabeled

__all__ = ["UNLABELED", "TrainingPool", "clear_unlabeled_cache", "has_unlabeled", "load_unlabeled"]

#: Data sets with an unlabelled split: name -> ``loader(root, *, image_size, limit)`` returning uint8 images.
UNLABELED: dict[str, Callable[..., torch.Tensor]] = {"stl10": load_stl10_unlabeled}


def has_unlabeled(name: str) -> bool:
    """Whether data set ``name`` has unlabelled images for self-supervised training."""
    return name in UNLABELED


def load_unlabeled(name: str, root: str | os.PathLike[str], *, image_size: int = 32,
                   limit: int | None = None) -> torch.Tensor:
    """The unlabelled images of ``name`` as uint8 ``(n, C, image_size, image_size)``; cached in-process.

    ``image_size`` must be the one the labelled splits were loaded with (``load_dataset``'s).
    Raises ``ValueError`` for a data set without unlabelled images and ``DataNotFoundError``
    when their file is missing.
    """
    if name not in UNLABELED:
        raise ValueError(f"data set {name!r} has no unlabelled images; those that do: {', '.join(UNLABELED)}")
    return UNLABELED[name](root, image_size=image_size, limit=limit)


def clear_unlabeled_cache() -> None:
    """Free the cached unlabelled images (up to 2.8 GB)."""
    _unlabeled_cached.cache_clear()


class TrainingPool:
    """The images a self-supervised loss trains on: ``labelled`` (float32) then ``unlabeled`` (uint8).

    Index ``i < len(labelled)`` is a labelled image, larger indices unlabelled ones; ``batch``
    gathers any mix of them as one float32 batch in [0, 1] on ``device`` (the uint8 part is
    converted there, per batch, so the pool never holds a float32 copy of the unlabelled images).

    Args:
        labelled: (N, C, H, W) float32 in [0, 1] (``Dataset.train_x``).
        unlabeled: (M, C, H, W) uint8, or None.
    """

    def __init__(self, labelled: torch.Tensor, unlabeled: torch.Tensor | None = None):
        if unlabeled is not None and (unlabeled.dtype != torch.uint8 or unlabeled.shape[1:] != labelled.shape[1:]):
            raise ValueError(f"unlabelled images must be uint8 of the labelled images' shape "
                             f"{tuple(labelled.shape[1:])}, got {unlabeled.dtype} {tuple(unlabeled.shape[1:])}: "
                             f"load both with the same image_size")
        self.labelled = labelled
        self.unlabeled = unlabeled

    def __len__(self) -> int:
        return len(self.labelled) + (0 if self.unlabeled is None else len(self.unlabeled))

    def batch(self, index: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
        """The images at ``index`` (a 1-d integer tensor), float32 (B, C, H, W) on ``device``, in index order."""
        index = index.to("cpu", torch.long)
        n = len(self.labelled)
        device = torch.device(device) if device is not None else self.labelled.device
        out = torch.empty((len(index), *self.labelled.shape[1:]), dtype=torch.float32, device=device)
        lab = index < n
        if bool(lab.any()):
            out[lab.to(device)] = self.labelled[index[lab].to(self.labelled.device)].to(device)
        if not bool(lab.all()):
            if self.unlabeled is None:
                raise IndexError(f"index {int(index.max())} is out of range for a pool of {n} images")
            rows = self.unlabeled[index[~lab] - n].to(device)  # uint8 over the wire: a quarter of the bytes
            out[(~lab).to(device)] = rows.float().div_(255.0)
        return out
