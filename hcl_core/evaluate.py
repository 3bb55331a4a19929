"""How good are frozen features? Probes, kNN, and the alignment/uniformity geometry.

Every function is pure: it takes numpy arrays or torch tensors (any device, any float dtype),
never changes them, and returns a python ``float`` (or a dict of floats). Shapes:

* features ``(N, D)``, labels ``(N,)`` of integers (any values; they need not be ``0..C-1``);
* two views ``z1``, ``z2`` of the same ``N`` samples: ``(N, D)`` each, row ``i`` of one the
  positive of row ``i`` of the other.

Features are L2-normalised inside every function (rows with norm 0 stay 0), so the results do
not depend on the scale of the encoder's output. Bad inputs (different lengths, NaN/inf, empty
arrays, wrong number of dimensions) raise :class:`ValueError` with a message that says what is
wrong; NaN/inf features almost always mean the encoder diverged, and the message says so.

Metrics (docs/LOSSES.md, "Geometry metrics"):

* linear probe: multinomial logistic regression on the frozen features, accuracy on the held-out
  split (:func:`linear_probe_accuracy`); the few-shot variant trains it on ``shots`` labelled
  samples per class (:func:`few_shot_probe_accuracy`);
* kNN: cosine similarity, the ``k`` nearest training samples vote with weight
  ``exp(cos / temperature)`` (:func:`knn_accuracy`, :func:`knn_predict`; as in the InstDisc and
  HCL code);
* alignment ``E ||f(x) - f(x+)||^alpha`` and uniformity ``log E exp(-t ||f(x) - f(y)||^2)``
  (Wang & Isola 2020), lower is better for both.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from .threads import limited_threads

__all__ = [
    "PROBE_C",
    "alignment",
    "evaluate_features",
    "few_shot_probe_accuracy",
    "knn_accuracy",
    "knn_predict",
    "linear_probe_accuracy",
    "uniformity",
]

#: Inverse L2 strength of the logistic-regression probe (scikit-learn's default). The features are
#: L2-normalised then standardised, so one value suits every encoder and data set.
PROBE_C = 1.0
#: Rows of test features scored at once by :func:`knn_accuracy` (bounds memory to ~chunk x N_train).
_KNN_CHUNK = 1024
#: Rows per block in :func:`uniformity`; the N x N distance matrix is never held at once.
_UNIFORMITY_CHUNK = 1024
_DIVERGED = "features contain NaN/inf: the encoder diverged"


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _to_numpy(a: Any, name: str) -> np.ndarray:
    """``a`` (numpy array, torch tensor or nested sequence) as a numpy array, without copying if possible."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):  # torch.Tensor, without importing torch here
        a = a.detach().cpu()
        if str(a.dtype) in ("torch.bfloat16", "torch.float16"):
            a = a.float()
        a = a.numpy()
    try:
        return np.asarray(a)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name}: cannot be read as an array ({exc})") from exc


def _features(a: Any, name: str) -> np.ndarray:
    """Validated ``(N, D)`` float64 features: 2-D, non-empty, finite."""
    x = _to_numpy(a, name)
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array of shape (N, D), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: empty (0 samples); there is nothing to evaluate")
    if x.shape[1] == 0:
        raise ValueError(f"{name}: features have 0 dimensions (shape {tuple(x.shape)})")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise ValueError(f"{name}: expected numbers, got dtype {x.dtype}")
    x = x.astype(np.float64, copy=False)
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x).all(axis=1)).sum())
        raise ValueError(f"{name}: {_DIVERGED} ({bad} of {x.shape[0]} rows are not finite)")
    return x


def _labels(a: Any, name: str, n: int) -> np.ndarray:
    """Validated ``(n,)`` integer labels."""
    y = _to_numpy(a, name)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of labels, got shape {tuple(y.shape)}")
    if len(y) != n:
        raise ValueError(f"{name}: {len(y)} labels for {n} feature rows; they must have the same length")
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all() or not np.equal(np.round(y), y).all():
            raise ValueError(f"{name}: labels must be integers (got non-integer floats)")
        y = y.astype(np.int64)
    elif not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
        raise ValueError(f"{name}: labels must be integers, got dtype {y.dtype}")
    return y.astype(np.int64, copy=False)


def _train_test_features(train_feats: Any, test_feats: Any) -> tuple[np.ndarray, np.ndarray]:
    xtr = _features(train_feats, "train_feats")
    xte = _features(test_feats, "test_feats")
    if xtr.shape[1] != xte.shape[1]:
        raise ValueError(
            f"train_feats has {xtr.shape[1]} dimensions but test_feats has {xte.shape[1]}; "
            "they must come from the same encoder"
        )
    return xtr, xte


def _split(
    train_feats: Any, train_y: Any, test_feats: Any, test_y: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    xtr, xte = _train_test_features(train_feats, test_feats)
    ytr = _labels(train_y, "train_y", xtr.shape[0])
    yte = _labels(test_y, "test_y", xte.shape[0])
    return xtr, ytr, xte, yte


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm; all-zero rows stay zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _pair(z1: Any, z2: Any) -> tuple[np.ndarray, np.ndarray]:
    a = _features(z1, "z1")
    b = _features(z2, "z2")
    if a.shape != b.shape:
        raise ValueError(
            f"z1 has shape {tuple(a.shape)} but z2 has shape {tuple(b.shape)}; "
            "they must be two views of the same samples"
        )
    return _l2_normalise(a), _l2_normalise(b)


# --------------------------------------------------------------------------------------------
# Linear probes
# --------------------------------------------------------------------------------------------

def _fit_probe(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, max_iter: int) -> float:
    """Accuracy of logistic regression on already validated arrays (see :func:`linear_probe_accuracy`)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    classes = np.unique(ytr)
    if len(classes) < 2:
        raise ValueError(f"train_y: the probe needs at least 2 classes, got only class {classes[0]}")
    xtr = _l2_normalise(xtr)
    xte = _l2_normalise(xte)
    mean = xtr.mean(axis=0)
    std = xtr.std(axis=0)
    std[std < 1e-12] = 1.0  # constant features (e.g. always-black pixels) stay 0 after centring
    xtr = (xtr - mean) / std
    xte = (xte - mean) / std
    clf = LogisticRegression(C=PROBE_C, solver="lbfgs", max_iter=max_iter)
    with limited_threads(), warnings.catch_warnings():
        # Not converging within max_iter still gives a usable probe; the UI cannot show warnings.
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(xtr, ytr)
        pred = clf.predict(xte)
    return float(np.mean(pred == yte))


def linear_probe_accuracy(
    train_feats: Any, train_y: Any, test_feats: Any, test_y: Any, *, max_iter: int = 1000
) -> float:
    """Held-out accuracy of a linear classifier trained on frozen features.

    ``train_feats`` ``(N, D)``, ``train_y`` ``(N,)``, ``test_feats`` ``(M, D)``, ``test_y`` ``(M,)``.
    Every row is L2-normalised, then standardised with the mean and standard deviation of the
    *training* rows only; a multinomial logistic regression (scikit-learn, lbfgs, L2 penalty with
    ``C = PROBE_C = 1.0``, at most ``max_iter`` iterations) is fit on the training split and the
    fraction of correctly predicted test labels is returned, in ``[0, 1]``. Test labels that never
    occur in training count as errors. Takes 0.03-0.08 s for 1437 x 256 features on two cores (plus
    ~2 s to import scikit-learn on the first call in a process).
    """
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    xtr, ytr, xte, yte = _split(train_feats, train_y, test_feats, test_y)
    return _fit_probe(xtr, ytr, xte, yte, max_iter)


def few_shot_probe_accuracy(
    train_feats: Any,
    train_y: Any,
    test_feats: Any,
    test_y: Any,
    *,
    shots: int = 10,
    draws: int = 5,
    seed: int = 0,
) -> float:
    """Mean held-out accuracy of the linear probe trained on ``shots`` labelled samples per class.

    For each of ``draws`` draws, ``shots`` training samples of every class in ``train_y`` are
    picked without replacement (``numpy.random.default_rng(seed)``, so the same seed gives the
    same subsets), the probe of :func:`linear_probe_accuracy` is fit on those
    ``shots x n_classes`` samples and scored on the whole test split; the mean over draws is
    returned. Raises ``ValueError`` naming the class if one has fewer than ``shots`` samples.
    """
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    xtr, ytr, xte, yte = _split(train_feats, train_y, test_feats, test_y)
    classes, counts = np.unique(ytr, return_counts=True)
    short = [(int(c), int(n)) for c, n in zip(classes, counts, strict=True) if n < shots]
    if short:
        listed = ", ".join(f"class {c} has {n}" for c, n in short[:5])
        more = f" (and {len(short) - 5} more classes)" if len(short) > 5 else ""
        raise ValueError(
            f"few-shot probe with shots={shots} needs at least {shots} training samples per class: {listed}{more}"
        )
    members = [np.flatnonzero(ytr == c) for c in classes]
    rng = np.random.default_rng(seed)
    accs = []
    for _ in range(draws):
        idx = np.concatenate([rng.choice(m, size=shots, replace=False) for m in members])
        accs.append(_fit_probe(xtr[idx], ytr[idx], xte, yte, max_iter=1000))
    return float(np.mean(accs))


# --------------------------------------------------------------------------------------------
# Weighted kNN
# --------------------------------------------------------------------------------------------


def knn_predict(
    train_feats: Any, train_y: Any, test_feats: Any, *, k: int = 200, temperature: float = 0.5
) -> np.ndarray:
    """Weighted k-nearest-neighbour predictions on cosine similarity: ``(M,)`` int64 labels.

    Rows are L2-normalised; ``cos_ij = x_i . t_j`` for test sample ``i`` and training sample
    ``j``. The ``k`` most similar training samples (``k`` is clipped to the training size) vote for
    their class with weight ``exp(cos_ij / temperature)``; the class with the largest summed vote
    is the prediction (ties go to the smallest label), as in the InstDisc/HCL evaluation code.
    Memory is bounded by scoring 1024 test rows at a time.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    xtr, xte = _train_test_features(train_feats, test_feats)
    ytr = _labels(train_y, "train_y", xtr.shape[0])
    bank = _l2_normalise(xtr).astype(np.float32)
    queries = _l2_normalise(xte).astype(np.float32)
    classes, bank_idx = np.unique(ytr, return_inverse=True)
    n_train, n_classes = len(ytr), len(classes)
    k = min(int(k), n_train)
    pred = np.empty(len(queries), dtype=np.int64)
    with limited_threads():
        for start in range(0, len(queries), _KNN_CHUNK):
            sims = queries[start : start + _KNN_CHUNK] @ bank.T  # (b, n_train)
            if k < n_train:
                top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            else:
                top = np.broadcast_to(np.arange(n_train), sims.shape)
            top_sims = np.take_along_axis(sims, top, axis=1).astype(np.float64)
            # Shift by the row maximum before exp: the argmax of the votes is unchanged and a
            # small temperature cannot overflow.
            weights = np.exp((top_sims - top_sims.max(axis=1, keepdims=True)) / temperature)
            cells = (np.arange(len(sims))[:, None] * n_classes + bank_idx[top]).ravel()  # (row, class)
            votes = np.bincount(cells, weights=weights.ravel(), minlength=len(sims) * n_classes)
            pred[start : start + len(sims)] = classes[votes.reshape(len(sims), n_classes).argmax(axis=1)]
    return pred


def knn_accuracy(
    train_feats: Any, train_y: Any, test_feats: Any, test_y: Any, *, k: int = 200, temperature: float = 0.5
) -> float:
    """Accuracy of the weighted kNN classifier of :func:`knn_predict` on the test split.

    ``train_feats`` ``(N, D)``, ``train_y`` ``(N,)``, ``test_feats`` ``(M, D)``, ``test_y`` ``(M,)``;
    ``k = 200`` neighbours (clipped to ``N``) vote with weight ``exp(cos / temperature)``,
    ``temperature = 0.5``. Returns the fraction of test samples predicted correctly, in ``[0, 1]``.
    """
    xtr, ytr, xte, yte = _split(train_feats, train_y, test_feats, test_y)
    pred = knn_predict(xtr, ytr, xte, k=k, temperature=temperature)
    return float(np.mean(pred == yte))


# --------------------------------------------------------------------------------------------
# Alignment and uniformity (Wang & Isola 2020)
# --------------------------------------------------------------------------------------------


def alignment(z1: Any, z2: Any, alpha: float = 2) -> float:
    """``mean_i ||f(x_i) - f(x_i^+)||_2^alpha`` over the ``N`` positive pairs, on L2-normalised rows.

    ``z1``, ``z2``: ``(N, D)``, row ``i`` of each a view of sample ``i``. In ``[0, 2^alpha]``;
    0 when the two views coincide. Lower is better (Wang & Isola 2020, Eq. 4).
    """
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    a, b = _pair(z1, z2)
    dist = np.linalg.norm(a - b, axis=1)
    return float(np.mean(dist**alpha))


def uniformity(z: Any, t: float = 2) -> float:
    """``log( mean_{i<j} exp(-t ||f(x_i) - f(x_j)||_2^2) )`` over the ``N(N-1)/2`` distinct pairs.

    ``z``: ``(N, D)`` with ``N >= 2``, L2-normalised inside. Computed as
    ``logsumexp(-t d_ij^2) - log(N(N-1)/2)`` over the pairwise distances ``i < j`` (the pdist
    vector), block by block so memory stays ``O(1024 N)``, with ``d_ij^2 = 2 - 2 x_i . x_j``
    on the unit sphere. In ``[-4t, 0]``: 0 when all points collapse to one, lower (better) the
    more uniformly they cover the sphere (Wang & Isola 2020, Eq. 5).
    """
    if not t > 0:
        raise ValueError(f"t must be > 0, got {t}")
    x = _l2_normalise(_features(z, "z"))
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"z: uniformity needs at least 2 samples (it averages over pairs), got {n}")
    block_lse = []
    for start in range(0, n - 1, _UNIFORMITY_CHUNK):
        stop = min(start + _UNIFORMITY_CHUNK, n)
        gram = x[start:stop] @ x[start + 1 :].T  # (b, n - start - 1): column c is sample start+1+c
        sq = np.maximum(2.0 - 2.0 * gram, 0.0)
        rows = np.arange(start, stop)[:, None]
        cols = np.arange(start + 1, n)[None, :]
        vals = -t * sq[cols > rows]  # pairs i < j only
        if vals.size:
            m = vals.max()
            block_lse.append(m + math.log(np.exp(vals - m).sum()))
    lse = np.asarray(block_lse)
    m = lse.max()
    total = m + math.log(np.exp(lse - m).sum())
    return float(total - math.log(n * (n - 1) / 2))


# --------------------------------------------------------------------------------------------
# One call for the training loop and the CLI
# --------------------------------------------------------------------------------------------


def evaluate_features(train_feats: Any, train_y: Any, test_feats: Any, test_y: Any, *, seed: int = 0,
                      knn_temperature: float = 0.5) -> dict:
    """The three accuracies of frozen features, as used by the training loop and the CLI.

    Returns ``{"linear_probe_acc", "few_shot_probe_acc", "knn_acc"}`` (floats in ``[0, 1]``):
    :func:`linear_probe_accuracy` with defaults, :func:`few_shot_probe_accuracy` with 10 shots
    per class and 5 draws seeded by ``seed`` (``shots`` drops to the size of the smallest training
    class when one has fewer than 10 samples, so a small split never fails the evaluation), and
    :func:`knn_accuracy` with ``k = 200`` and votes ``exp(cos / knn_temperature)``. The published
    HCL and H-SCL evaluations vote with the run's own temperature τ (docs/PROTOCOL.md); 0.5 is
    their default τ.
    """
    xtr, ytr, xte, yte = _split(train_feats, train_y, test_feats, test_y)
    smallest = int(np.unique(ytr, return_counts=True)[1].min())
    return {
        "linear_probe_acc": linear_probe_accuracy(xtr, ytr, xte, yte),
        "few_shot_probe_acc": few_shot_probe_accuracy(xtr, ytr, xte, yte, shots=min(10, smallest), seed=seed),
        "knn_acc": knn_accuracy(xtr, ytr, xte, yte, temperature=knn_temperature),
    }
