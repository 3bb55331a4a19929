"""What each loss does with each negative, binned for the Negatives page: three views of the same pairs.

Inputs are a snapshot's fixed two-view batch: ``z1, z2`` ``(N, d)`` and ``labels`` ``(N,)``; the
2N views are anchors, each with ``n = 2N - 2`` candidate negatives (every view but itself and its
partner). :func:`hcl_core.losses.negative_weights` gives, per (anchor i, candidate k):

* **importance** ``ω_ik = e^{β s_ik} / mean_k e^{β s_ik}`` over the loss's negatives: the papers'
  hardness weight (1 = an average negative; 1 everywhere without a tilt);
* **share** of the negative term, ``n · softmax_k((1+β) s_ik)`` here (1 = the uniform share 1/n);
* **gradient** ``∂L/∂s_ik`` of the batch loss, scaled to ``2N · n · ∂L/∂s_ik`` (1 = the push an
  untrained InfoNCE gives a negative of uniform share): > 0 pushes k away, < 0 pulls it closer.

Each view is binned in ``log10`` (the gradient in a signed log: pulled to the left of 0, pushed to
the right) on axes that depend only on n, never on β, so a figure does not move for the losses
that ignore β. Values too small for the axis are counted, not drawn (``below``), as are exact
zeros (``zero``: e.g. HCL's anchors where the clamp binds). Same-class candidates ("false
negatives") are binned apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..losses import effective_negatives, negative_weights, pulled_fraction, same_class_mass
from ..registry import LOSSES
from ..threads import limited_threads

__all__ = [
    "BETA_GRID",
    "BETA_MAX",
    "BIN_WIDTH",
    "LOG_FLOOR",
    "VIEWS",
    "Histogram",
    "NegativeStats",
    "SweepCurves",
    "beta_sweep",
    "negative_stats",
    "view_top",
]

#: The beta grid of the "as a function of beta" curves: 0 to 10 in steps of 0.5.
BETA_GRID = np.round(np.arange(0.0, 10.0001, 0.5), 2)
#: The largest β the page previews; it sets the gradient axis (a tilted gradient reaches (1+β) n).
BETA_MAX = 10.0
#: log10 of the smallest value given a bin (relative units, see the module docstring).
LOG_FLOOR = -4.0
BIN_WIDTH = 0.1
#: The three views, in the page's order.
VIEWS = ("importance", "share", "gradient")


@dataclass(frozen=True)
class Histogram:
    """One group of pairs binned on one view's axis.

    Attributes:
        edges: ``(B + 1,)`` bin edges (log10 units; signed log for the gradient).
        counts: ``(B,)`` pairs per bin.
        below: pairs with a value > 0 too small for the axis (``|x| < 10^LOG_FLOOR``), not drawn.
        zero: pairs whose value is exactly 0, not drawn.
        total: every pair of the group (drawn, below and zero).
    """

    edges: np.ndarray
    counts: np.ndarray
    below: int
    zero: int
    total: int


@dataclass(frozen=True)
class NegativeStats:
    """One loss on one batch at one (β, τ, detach): the three views and their summary numbers.

    Attributes:
        loss, beta, tau, detach: what was computed (β is 0 for a loss without a tilt, detach
            False for a loss that does not accept it).
        n_candidates: candidates per anchor, ``2N - 2``.
        same_share: share of the candidates that are same-class (the mass under uniform weights).
        same_mass: mean over anchors of the share on same-class candidates.
        n_eff: mean over anchors of the effective number of negatives ``(Σ share)² / Σ share²``.
        pulled: fraction of the loss's negatives whose gradient pulls them closer.
        pulled_same: fraction of the same-class candidates pulled closer (NaN without any).
        same_importance: mean ω of the same-class candidates that are negatives (NaN without any).
        views: ``{view: {"other": Histogram, "same": Histogram}}`` for ``VIEWS``; importance and
            share over the loss's negatives only (H-SCL's same-class group is then empty), the
            gradient over every candidate.
    """

    loss: str
    beta: float
    tau: float
    detach: bool
    n_candidates: int
    same_share: float
    same_mass: float
    n_eff: float
    pulled: float
    pulled_same: float
    same_importance: float
    views: dict[str, dict[str, Histogram]]


def view_top(view: str, n_candidates: int) -> float:
    """The largest ``log10`` on a view's axis: ``n`` (all weight on one negative), and ``(1 + BETA_MAX) n``
    for the gradient."""
    top = n_candidates * (1.0 + BETA_MAX) if view == "gradient" else n_candidates
    return math.ceil(math.log10(max(top, 2)) / BIN_WIDTH - 1e-9) * BIN_WIDTH


def _edges(view: str, n_candidates: int) -> np.ndarray:
    top = view_top(view, n_candidates)
    if view == "gradient":  # signed: ±(log10|x| - floor)
        span = top - LOG_FLOOR
        return np.round(np.arange(-span, span + BIN_WIDTH / 2, BIN_WIDTH), 6)
    return np.round(np.arange(LOG_FLOOR, top + BIN_WIDTH / 2, BIN_WIDTH), 6)


def _histogram(values: np.ndarray, edges: np.ndarray, *, signed: bool) -> Histogram:
    """Bin ``values`` (relative units, linear) on ``edges``."""
    zero = values == 0
    mag = np.abs(values[~zero])
    with np.errstate(divide="ignore"):
        logs = np.log10(mag)
    small = logs < LOG_FLOOR
    logs = logs[~small]
    x = np.sign(values[~zero][~small]) * (logs - LOG_FLOOR) if signed else logs
    # equal-width bins: an index by division (np.histogram would binary-search every value)
    idx = np.clip(((x - edges[0]) / BIN_WIDTH).astype(np.int64), 0, len(edges) - 2)
    counts = np.bincount(idx, minlength=len(edges) - 1)
    return Histogram(edges, counts, int(small.sum()), int(zero.sum()), int(values.size))


def _tensors(z1, z2, labels) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    z1 = torch.as_tensor(np.asarray(z1), dtype=torch.float32)
    z2 = torch.as_tensor(np.asarray(z2), dtype=torch.float32)
    return z1, z2, torch.as_tensor(np.asarray(labels))


def _weights(z1, z2, lab, *, loss: str, tau: float, beta: float, tau_plus: float, detach: bool):
    """``negative_weights`` with what ``loss`` does not read set to its neutral value; and the β, detach used."""
    spec = LOSSES[loss]
    beta = float(beta) if spec.tilts else 0.0
    detach = bool(detach) and spec.detachable
    nw = negative_weights(z1, z2, lab, loss=loss, tau=tau, beta=beta,
                          tau_plus=tau_plus if spec.reads("tau_plus") else 0.0, detach_weights=detach)
    return nw, beta, detach


def _stats(z1, z2, lab, *, loss: str, tau: float, beta: float, tau_plus: float, detach: bool) -> NegativeStats:
    nw, beta, detach = _weights(z1, z2, lab, loss=loss, tau=tau, beta=beta, tau_plus=tau_plus, detach=detach)
    two_n = nw.weights.shape[0]
    n = two_n - 2
    eligible, cand, same = nw.eligible.numpy(), nw.candidates.numpy(), nw.same_class.numpy()
    other = cand & ~same
    n_elig = eligible.sum(axis=1, keepdims=True)
    values = {
        "importance": nw.importance.double().numpy(),
        "share": (n_elig * nw.weights.double().numpy()),
        "gradient": (two_n * n) * nw.gradient.double().numpy(),
    }
    views = {}
    for view, v in values.items():
        edges = _edges(view, n)
        groups = {"other": other, "same": same} if view == "gradient" else \
            {"other": other & eligible, "same": same & eligible}
        views[view] = {g: _histogram(v[mask], edges, signed=view == "gradient") for g, mask in groups.items()}
    return NegativeStats(
        loss=loss, beta=beta, tau=float(tau), detach=detach, n_candidates=n,
        same_share=float(same.sum() / max(cand.sum(), 1)),
        same_mass=float(same_class_mass(nw).mean()), n_eff=float(effective_negatives(nw).mean()),
        pulled=pulled_fraction(nw), pulled_same=pulled_fraction(nw, same_class=True),
        same_importance=float(values["importance"][same & eligible].mean()) if (same & eligible).any() else math.nan,
        views=views,
    )


def negative_stats(z1, z2, labels, *, loss: str, tau: float, beta: float = 0.0, tau_plus: float = 0.0,
                   detach: bool = False) -> NegativeStats:
    """The three views of ``loss``'s negatives on one batch, binned, with their summary numbers.

    Args:
        z1, z2: ``(N, d)`` arrays or tensors, the two views (float32 inside).
        labels: ``(N,)`` class labels (same-class candidates are told apart; H-SCL and SupCon use them).
        loss: a name in :data:`hcl_core.registry.LOSSES`.
        tau: temperature; beta: hardness (ignored, and reported as 0, by losses without a tilt);
        tau_plus: HCL/DCL's class prior (it changes their gradient, not their shares);
        detach: the tilt's weights as constants in the gradient (HCL and H-SCL only).
    """
    z1, z2, lab = _tensors(z1, z2, labels)
    with limited_threads():
        return _stats(z1, z2, lab, loss=loss, tau=tau, beta=beta, tau_plus=tau_plus, detach=detach)


@dataclass(frozen=True)
class SweepCurves:
    """Summary numbers of one loss against β (each ``(len(betas),)``); flat for a loss without β."""

    betas: np.ndarray
    same_mass: np.ndarray
    n_eff: np.ndarray
    pulled: np.ndarray


def beta_sweep(z1, z2, labels, *, loss: str, tau: float, betas: Sequence[float] = BETA_GRID,
               tau_plus: float = 0.0, detach: bool = False) -> SweepCurves:
    """Same-class mass, effective negatives and the fraction pulled closer at every β.

    A loss that does not read β is computed once and repeated (a flat line).
    """
    z1, z2, lab = _tensors(z1, z2, labels)
    grid = np.asarray([float(b) for b in betas])
    kw = dict(loss=loss, tau=tau, tau_plus=tau_plus, detach=detach)
    rows = []
    with limited_threads():
        for b in grid if LOSSES[loss].tilts else grid[:1]:
            nw, _, _ = _weights(z1, z2, lab, beta=float(b), **kw)
            rows.append((float(same_class_mass(nw).mean()), float(effective_negatives(nw).mean()), pulled_fraction(nw)))
    if len(rows) == 1:
        rows *= len(grid)
    mass, n_eff, pulled = (np.array(col) for col in zip(*rows, strict=True))
    return SweepCurves(grid, mass, n_eff, pulled)
