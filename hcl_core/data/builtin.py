"""The data sets that need no files: scikit-learn's ``digits`` and the ``synthetic`` mixture."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..registry import DATASETS
from .base import Parts

__all__ = ["SYNTHETIC_CLASSES", "SYNTHETIC_DIM", "SYNTHETIC_TEST", "SYNTHETIC_TRAIN", "load_digits",
           "load_synthetic", "synthetic_sigma"]


def load_digits() -> Parts:
    """scikit-learn's 8x8 digits, values 0..16 scaled to [0, 1], shape (N, 1, 8, 8).

    The 80/20 split is stratified with ``random_state=0`` and independent of any run seed, so
    every run of every session evaluates on the same 360 test images.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    train_idx, test_idx = train_test_split(
        np.arange(len(y)), test_size=0.2, stratify=bunch.target, random_state=0
    )
    train_idx, test_idx = torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(test_idx))
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx], DATASETS["digits"].class_names


SYNTHETIC_CLASSES = 10
SYNTHETIC_DIM = 32
SYNTHETIC_TRAIN = 2000
SYNTHETIC_TEST = 500


def synthetic_sigma(overlap: float) -> float:
    """Per-coordinate noise ``sigma = 0.05 + 0.95 * overlap`` of the synthetic mixture.

    Accuracy of the nearest true class mean on the 2500 samples (chance = 0.10), measured:
    overlap 0 (sigma 0.05) 1.00; 0.3 (0.34, the default) 0.89; 0.5 (0.53) 0.65; 0.75 (0.76)
    0.45; 1 (1.0) 0.33. Random unit means in 32 dimensions are nearly orthogonal, so the
    overlap comes from the noise alone; the mapping is linear in sigma because accuracy falls
    smoothly with it over this range.
    """
    return 0.05 + 0.95 * overlap


def load_synthetic(overlap: float) -> Parts:
    """Unit vectors ``normalize(mean_k + sigma * noise)``, shape (N, 32), 10 balanced classes.

    Means, labels and noise come from fixed seeds and the noise is the same for every overlap,
    so moving the slider only changes sigma: the same points drift apart or together.
    """
    g = torch.Generator().manual_seed(20240601)
    means = F.normalize(torch.randn(SYNTHETIC_CLASSES, SYNTHETIC_DIM, generator=g), dim=1)
    sigma = synthetic_sigma(overlap)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = (torch.arange(n) % SYNTHETIC_CLASSES)[torch.randperm(n, generator=g)]
        noise = torch.randn(n, SYNTHETIC_DIM, generator=g)
        return F.normalize(means[y] + sigma * noise, dim=1), y

    train_x, train_y = sample(SYNTHETIC_TRAIN)
    test_x, test_y = sample(SYNTHETIC_TEST)
    return train_x, train_y, test_x, test_y, DATASETS["synthetic"].class_names

