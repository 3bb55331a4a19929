"""Checks of hcl_core.evaluate against docs/LOSSES.md ("Geometry metrics").

References are naive per-sample Python loops in float64 written from the definitions:

* kNN: for each test sample, cosine similarity to every training sample, the k largest vote
  with weight exp(cos / temperature), ties to the smallest label;
* alignment = mean_i ||u_i - v_i||^alpha, uniformity = log( mean_{i<j} exp(-t ||u_i - u_j||^2) ),
  u, v the L2-normalised rows.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from hcl_core import evaluate
from hcl_core.evaluate import (
    alignment,
    evaluate_features,
    few_shot_probe_accuracy,
    knn_accuracy,
    knn_predict,
    linear_probe_accuracy,
    uniformity,
)

TOL = 1e-5


# ----------------------------------------------------------------------------------------------
# Data and naive references
# ----------------------------------------------------------------------------------------------


def _clusters(n_per_class: int, n_classes: int = 5, dim: int = 16, spread: float = 0.05, seed: int = 0):
    """Well separated Gaussian clusters around random unit directions: (features, labels)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    y = np.repeat(np.arange(n_classes), n_per_class)
    x = centres[y] + spread * rng.normal(size=(len(y), dim))
    perm = rng.permutation(len(y))
    return x[perm], y[perm]


def _naive_norm(row) -> list[float]:
    n = math.sqrt(sum(v * v for v in row))
    return [v / n for v in row]


def _naive_knn_predict(train_x, train_y, test_x, k, temperature) -> list[int]:
    train = [_naive_norm(r) for r in train_x.tolist()]
    labels = [int(v) for v in train_y]
    preds = []
    for q in test_x.tolist():
        qn = _naive_norm(q)
        sims = [(sum(a * b for a, b in zip(qn, t, strict=True)), j) for j, t in enumerate(train)]
        sims.sort(key=lambda s: -s[0])
        votes: dict[int, float] = {}
        for sim, j in sims[: min(k, len(train))]:
            votes[labels[j]] = votes.get(labels[j], 0.0) + math.exp(sim / temperature)
        best = max(votes.values())
        preds.append(min(c for c, v in votes.items() if v == best))
    return preds


def _naive_alignment(z1, z2, alpha) -> float:
    total = 0.0
    for a, b in zip(z1.tolist(), z2.tolist(), strict=True):
        an, bn = _naive_norm(a), _naive_norm(b)
        d = math.sqrt(sum((p - q) ** 2 for p, q in zip(an, bn, strict=True)))
        total += d**alpha
    return total / len(z1)


def _naive_uniformity(z, t) -> float:
    rows = [_naive_norm(r) for r in z.tolist()]
    total, count = 0.0, 0
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            sq = sum((p - q) ** 2 for p, q in zip(rows[i], rows[j], strict=True))
            total += math.exp(-t * sq)
            count += 1
    return math.log(total / count)


# ----------------------------------------------------------------------------------------------
# Probes and kNN on separable clusters and on random labels
# ----------------------------------------------------------------------------------------------


def test_separable_clusters_give_perfect_accuracy():
    x, y = _clusters(60, n_classes=5)
    xtr, ytr, xte, yte = x[:200], y[:200], x[200:], y[200:]
    assert linear_probe_accuracy(xtr, ytr, xte, yte) >= 0.99
    assert few_shot_probe_accuracy(xtr, ytr, xte, yte, shots=5, draws=3) >= 0.99
    assert knn_accuracy(xtr, ytr, xte, yte, k=20) >= 0.99
    assert knn_accuracy(xtr, ytr, xte, yte) >= 0.99  # k = 200 = the whole training set


def test_random_labels_give_chance_accuracy():
    rng = np.random.default_rng(1)
    n_classes = 4
    xtr, xte = rng.normal(size=(800, 32)), rng.normal(size=(2000, 32))
    ytr, yte = rng.integers(0, n_classes, 800), rng.integers(0, n_classes, 2000)
    chance = 1 / n_classes
    assert abs(linear_probe_accuracy(xtr, ytr, xte, yte) - chance) < 0.06
    assert abs(few_shot_probe_accuracy(xtr, ytr, xte, yte, shots=10, draws=3) - chance) < 0.06
    assert abs(knn_accuracy(xtr, ytr, xte, yte, k=50) - chance) < 0.06


@pytest.mark.parametrize(("k", "temperature"), [(1, 0.5), (7, 0.1), (25, 0.5), (200, 0.05)])
def test_knn_matches_brute_force_loop(k, temperature):
    rng = np.random.default_rng(k)
    # Overlapping clusters: neither trivial nor random, so k and the weights matter.
    x, y = _clusters(30, n_classes=4, dim=6, spread=0.8, seed=k)
    x = x * rng.uniform(0.1, 10.0, size=(len(x), 1))  # arbitrary norms: only directions count
    xtr, ytr, xte, yte = x[:90], y[:90], x[90:], y[90:]
    expected = _naive_knn_predict(xtr, ytr, xte, k, temperature)
    got = knn_predict(xtr, ytr, xte, k=k, temperature=temperature)
    assert got.tolist() == expected
    acc = knn_accuracy(xtr, ytr, xte, yte, k=k, temperature=temperature)
    assert acc == pytest.approx(np.mean(np.array(expected) == yte))


def test_knn_chunking_matches_single_block(monkeypatch):
    x, y = _clusters(40, n_classes=3, dim=5, spread=0.7, seed=3)
    whole = knn_predict(x[:60], y[:60], x[60:], k=9)
    monkeypatch.setattr(evaluate, "_KNN_CHUNK", 7)
    assert knn_predict(x[:60], y[:60], x[60:], k=9).tolist() == whole.tolist()


def test_knn_k_larger_than_train_set():
    x, y = _clusters(10, n_classes=3, dim=4, spread=0.6, seed=5)
    xtr, ytr, xte, yte = x[:12], y[:12], x[12:], y[12:]
    big = knn_accuracy(xtr, ytr, xte, yte, k=10_000)
    assert big == knn_accuracy(xtr, ytr, xte, yte, k=12)
    assert knn_predict(xtr, ytr, xte, k=10_000).tolist() == _naive_knn_predict(xtr, ytr, xte, 12, 0.5)


def test_knn_small_temperature_does_not_overflow():
    x, y = _clusters(20, n_classes=2, dim=3, seed=2)
    assert knn_accuracy(x[:30], y[:30], x[30:], y[30:], k=10, temperature=1e-4) >= 0.9


def test_arbitrary_label_values_and_torch_inputs():
    x, y = _clusters(40, n_classes=3, dim=8)
    y_odd = np.array([7, -2, 100])[y]
    xtr, ytr, xte, yte = x[:80], y_odd[:80], x[80:], y_odd[80:]
    ref = evaluate_features(xtr, ytr, xte, yte)
    as_torch = evaluate_features(
        torch.tensor(xtr, dtype=torch.float32),
        torch.tensor(ytr),
        torch.tensor(xte, dtype=torch.float32),
        torch.tensor(yte),
    )
    assert set(ref) == {"linear_probe_acc", "few_shot_probe_acc", "knn_acc"}
    assert all(isinstance(v, float) for v in ref.values())
    assert ref == pytest.approx(as_torch)
    assert min(ref.values()) >= 0.99
    assert set(knn_predict(xtr, ytr, xte, k=5).tolist()) <= {7, -2, 100}


def test_unseen_test_class_counts_as_error():
    x, y = _clusters(30, n_classes=3, dim=8)
    train = y != 2
    acc = linear_probe_accuracy(x[train], y[train], x, y)
    assert acc == pytest.approx(np.mean(y != 2), abs=0.02)


# ----------------------------------------------------------------------------------------------
# Few-shot details
# ----------------------------------------------------------------------------------------------


def test_few_shot_is_seeded_and_names_short_classes():
    x, y = _clusters(30, n_classes=4, dim=8, spread=0.9, seed=4)
    xtr, ytr, xte, yte = x[:80], y[:80], x[80:], y[80:]
    a = few_shot_probe_accuracy(xtr, ytr, xte, yte, shots=3, draws=4, seed=11)
    b = few_shot_probe_accuracy(xtr, ytr, xte, yte, shots=3, draws=4, seed=11)
    assert a == b
    short = np.concatenate([np.flatnonzero(ytr != 3), np.flatnonzero(ytr == 3)[:2]])
    with pytest.raises(ValueError, match=r"class 3 has 2"):
        few_shot_probe_accuracy(xtr[short], ytr[short], xte, yte, shots=3)
    with pytest.raises(ValueError, match="shots"):
        few_shot_probe_accuracy(xtr, ytr, xte, yte, shots=0)


def test_evaluate_features_survives_small_classes():
    x, y = _clusters(8, n_classes=3, dim=6)  # 8 samples per class overall, fewer in training
    out = evaluate_features(x[:18], y[:18], x[18:], y[18:], seed=3)
    assert 0.0 <= out["few_shot_probe_acc"] <= 1.0


def test_linear_probe_is_fast_on_digits_sized_features():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 1797)
    x = rng.normal(size=(10, 256))[y] + rng.normal(size=(1797, 256))
    linear_probe_accuracy(x[:100], y[:100], x[100:200], y[100:200])  # imports, thread pools
    start = time.perf_counter()
    acc = linear_probe_accuracy(x[:1437], y[:1437], x[1437:], y[1437:])
    elapsed = time.perf_counter() - start
    assert acc > 0.9
    assert elapsed < 2.0, f"linear probe on 1437 x 256 took {elapsed:.2f} s (about 0.03 s expected)"


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


def test_bad_inputs_raise_helpful_errors():
    x, y = _clusters(10, n_classes=2, dim=4)
    with pytest.raises(ValueError, match="same length"):
        linear_probe_accuracy(x, y[:-1], x, y)
    with pytest.raises(ValueError, match="same length"):
        knn_accuracy(x, y, x, y[:3])
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN/inf: the encoder diverged"):
        knn_accuracy(bad, y, x, y)
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="encoder diverged"):
        evaluate_features(x, y, bad, y)
    with pytest.raises(ValueError, match="diverged"):
        uniformity(bad)
    with pytest.raises(ValueError, match="empty"):
        linear_probe_accuracy(x[:0], y[:0], x, y)
    with pytest.raises(ValueError, match="empty"):
        alignment(np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(ValueError, match="same encoder"):
        knn_accuracy(x, y, x[:, :2], y)
    with pytest.raises(ValueError, match="2-D"):
        linear_probe_accuracy(x[:, 0], y, x, y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        linear_probe_accuracy(x, np.zeros_like(y), x, y)
    with pytest.raises(ValueError, match="integers"):
        knn_accuracy(x, y + 0.5, x, y)
    with pytest.raises(ValueError, match="temperature"):
        knn_accuracy(x, y, x, y, temperature=0.0)
    with pytest.raises(ValueError, match="same samples"):
        alignment(x, x[:-1])
    with pytest.raises(ValueError, match="at least 2 samples"):
        uniformity(x[:1])


# ----------------------------------------------------------------------------------------------
# Alignment and uniformity
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [2, 1, 0.5, 3])
def test_alignment_matches_double_loop(alpha):
    rng = np.random.default_rng(7)
    z1, z2 = rng.normal(size=(13, 5)), rng.normal(size=(13, 5))
    assert alignment(z1, z2, alpha=alpha) == pytest.approx(_naive_alignment(z1, z2, alpha), rel=TOL, abs=TOL)


@pytest.mark.parametrize("t", [2, 0.5, 5])
def test_uniformity_matches_double_loop(t):
    rng = np.random.default_rng(8)
    z = rng.normal(size=(17, 4))
    assert uniformity(z, t=t) == pytest.approx(_naive_uniformity(z, t), rel=TOL, abs=TOL)


def test_uniformity_blocks_match_double_loop(monkeypatch):
    rng = np.random.default_rng(9)
    z = rng.normal(size=(23, 3))
    monkeypatch.setattr(evaluate, "_UNIFORMITY_CHUNK", 5)
    assert uniformity(z) == pytest.approx(_naive_uniformity(z, 2), rel=TOL, abs=TOL)
    assert uniformity(z[:2]) == pytest.approx(_naive_uniformity(z[:2], 2), rel=TOL, abs=TOL)


def test_identical_views_have_zero_alignment():
    z = np.random.default_rng(0).normal(size=(10, 6))
    assert alignment(z, z) == pytest.approx(0.0, abs=1e-12)
    assert alignment(z, 3.0 * z) == pytest.approx(0.0, abs=1e-12)  # normalised: scale does not count
    assert alignment(z, -z) == pytest.approx(4.0)  # antipodal views: ||u - (-u)||^2 = 4


def test_spread_points_are_more_uniform_than_collapsed():
    angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    circle = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    collapsed = np.tile([[1.0, 0.0]], (64, 1)) + 1e-3 * circle
    assert uniformity(collapsed) == pytest.approx(0.0, abs=1e-4)
    assert uniformity(circle) < uniformity(collapsed) - 1.0
    # N equally spaced points on the circle: sum_j exp(-2 |u_i - u_j|^2) over all j (i included) is
    # N c with c = exp(-4) I_0(4) (the grid sum of a periodic analytic function is exact to ~1e-20),
    # so the mean over distinct pairs is (N c - 1) / (N - 1).
    n = len(circle)
    c = math.exp(-4) * sum((2.0**m / math.factorial(m)) ** 2 for m in range(40))  # I_0(4) series
    assert uniformity(circle) == pytest.approx(math.log((n * c - 1) / (n - 1)), abs=1e-9)


def test_geometry_metrics_are_scale_invariant_and_accept_torch():
    rng = np.random.default_rng(3)
    z1, z2 = rng.normal(size=(20, 8)), rng.normal(size=(20, 8))
    scales = rng.uniform(0.01, 100, size=(20, 1))
    assert alignment(z1 * scales, z2) == pytest.approx(alignment(z1, z2), rel=1e-9)
    assert uniformity(z1 * scales) == pytest.approx(uniformity(z1), rel=1e-9)
    t1 = torch.tensor(z1, dtype=torch.float32, requires_grad=True)
    t2 = torch.tensor(z2, dtype=torch.float32)
    assert isinstance(alignment(t1, t2), float)
    assert alignment(t1, t2) == pytest.approx(alignment(z1, z2), rel=1e-5)
    assert uniformity(t1) == pytest.approx(uniformity(z1), rel=1e-5)
