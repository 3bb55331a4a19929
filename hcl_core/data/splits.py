"""Deterministic stratified subsets and splits.

They use numpy's legacy ``RandomState``, whose stream is frozen across numpy versions, so a
subset or split never changes under a run (old runs stay comparable with new ones).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["stratified_split", "stratified_subset"]


def stratified_subset(y: np.ndarray, n: int, seed: int = 0) -> torch.Tensor:
    """Indices (sorted) of ``n`` samples whose class proportions match ``y``'s.

    Each sample gets the key ``(rank within its class + 0.5) / class size`` in a fixed random
    order; the ``n`` smallest keys take every class in proportion, without a loop over classes.
    """
    perm = np.random.RandomState(seed).permutation(len(y))
    yp = y[perm]
    counts = np.bincount(yp)
    order = np.argsort(yp, kind="stable")
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.empty(len(y), dtype=np.int64)
    rank[order] = np.arange(len(y)) - np.repeat(starts, counts)
    key = (rank + 0.5) / counts[yp]
    chosen = perm[np.argsort(key, kind="stable")[:n]]
    return torch.from_numpy(np.sort(chosen))


def stratified_split(y: np.ndarray, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fixed stratified split ``(train_idx, test_idx)``; a class of >= 2 samples gives at least one to test."""
    rng = np.random.RandomState(seed)
    test: list[np.ndarray] = []
    for c in np.unique(y):  # a loop over classes, not samples
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        k = min(max(round(test_fraction * len(idx)), 1), len(idx) - 1) if len(idx) >= 2 else 0
        test.append(idx[:k])
    test_idx = np.sort(np.concatenate(test)) if test else np.zeros(0, dtype=np.int64)
    train_mask = np.ones(len(y), dtype=bool)
    train_mask[test_idx] = False
    return np.flatnonzero(train_mask), test_idx

