"""Neighbours in feature space: what the Embeddings page shows when a point is clicked."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Neighbours", "neighbours"]


@dataclass(frozen=True)
class Neighbours:
    """Of one sample: its ``k`` nearest samples (any class) and its ``k`` hardest negatives.

    Indices are rows of the features; cosines are in ``[-1, 1]``, most similar first.
    """

    sample: int
    nearest: np.ndarray
    nearest_cos: np.ndarray
    hardest: np.ndarray
    hardest_cos: np.ndarray
    same_class: np.ndarray = field(repr=False)  # (k,) bool: nearest[j] shares the sample's class


def neighbours(features: np.ndarray, labels: np.ndarray, i: int, k: int = 8) -> Neighbours:
    """Cosine neighbours of row ``i`` of ``features`` ``(n, D)``, itself excluded.

    ``hardest`` are the most similar rows whose label differs from ``labels[i]``: the negatives
    a hardness-weighted loss pushes away hardest. Rows with zero norm have cosine 0 to everything.
    """
    f = np.asarray(features, dtype=np.float64)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    cos = f @ f[i]
    cos[i] = -np.inf
    order = np.argsort(-cos, kind="stable")
    order = order[order != i]
    labels = np.asarray(labels)
    nearest = order[:k]
    hardest = order[labels[order] != labels[i]][:k]
    return Neighbours(i, nearest, cos[nearest], hardest, cos[hardest], labels[nearest] == labels[i])
