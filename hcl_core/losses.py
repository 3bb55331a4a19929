"""Contrastive losses with hard negative sampling, in one numerically stable form.

Every loss takes two views ``z1, z2`` of shape ``(N, d)`` (the two augmentations of the
same N samples) and works on the 2N views ``z = cat(z1, z2)``, L2-normalised, with

    s_ij = z_i . z_j / tau,       p(i) = i +- N  (the other view of the same sample).

Index sets of anchor i (see ``shared/docs/LOSSES.md``, the specification):

* ``A(i)``   all j != i;
* ``P(i)``   views with the anchor's label (always holds p(i)); without labels only p(i);
* ``Neg(i)`` views with another label; without labels all but i and p(i);  n_i = |Neg(i)|.

The hardness-tilted negative mass shared by HCL, H-UCL and H-SCL is

    log R_i(beta) = log n_i + LSE_{k in Neg(i)}( log w_ik + s_ik ),   w_ik = softmax_k(beta s_ik),

which equals ``log n_i + LSE((1+beta) s) - LSE(beta s)``: n_i times the mean of e^{s_ik} under
the tilted weights. beta = 0 gives the plain sum, beta -> inf gives ``log n_i + max_k s_ik``.
Note that beta multiplies ``s = cos / tau``, as in every published code base.

All arithmetic is in float32 (or float64 if the inputs are float64) and in log space, so no
loss overflows for tau >= 0.05 and beta <= 20. Sums of ``e^{s}`` are shifted by the constant
``1/tau`` (``s <= 1/tau`` for normalised views) and the tilted sums by each row's detached
maximum; see :func:`_masked_lse` and :func:`_log_tilted_mass`. ``bench/`` times every loss
against the plain published formulas: these forms are also the faster ones.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from . import registry

__all__ = [
    "LOSSES",
    "NegativeWeights",
    "clamp_share",
    "compute_loss",
    "dcl",
    "effective_negatives",
    "h_ucl",
    "hard_supcon",
    "hcl",
    "info_nce",
    "negative_weights",
    "same_class_mass",
    "supcon",
]


# --------------------------------------------------------------------------------------------
# validation and shared geometry
# --------------------------------------------------------------------------------------------


def _as_float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _check_tau(tau: float) -> None:
    t = _as_float(tau)
    if t is None or not (math.isfinite(t) and t > 0):
        raise ValueError(f"tau must be a finite number > 0 (try 0.1 to 1.0), got {tau!r}")


def _check_beta(beta: float) -> None:
    b = _as_float(beta)
    if b is None or not (math.isfinite(b) and b >= 0):
        raise ValueError(f"beta must be a finite number >= 0 (0 = no hardness tilt), got {beta!r}")


def _check_tau_plus(tau_plus: float) -> None:
    t = _as_float(tau_plus)
    if t is None or not (0 <= t < 1):
        raise ValueError(f"tau_plus (the class prior) must lie in [0, 1), got {tau_plus!r}")


@dataclass
class _Views:
    """The 2N views, their similarity matrix and the index sets every loss needs.

    The label masks (2N x 2N) are built on first use only: SupCon needs none of them.
    """

    tau: float
    z: Tensor  # (2N, d) normalised views
    sim: Tensor  # (2N, 2N) s_ij = cos / tau, float32 or float64
    pos_sim: Tensor  # (2N,) s_{i, p(i)}
    partner: Tensor  # (2N,) index p(i)
    not_self: Tensor  # (2N, 2N) bool, A(i)
    is_partner: Tensor  # (2N, 2N) bool, j == p(i)
    candidates: Tensor  # (2N, 2N) bool, every j not in {i, p(i)}: Neg(i) without labels
    labels: Tensor | None  # (2N,) or None

    @functools.cached_property
    def same_class(self) -> Tensor:
        return self.labels[:, None] == self.labels[None, :]

    @property
    def positives(self) -> Tensor:
        """P(i), ``(2N, 2N)`` bool."""
        return self.is_partner if self.labels is None else self.same_class & self.not_self

    @property
    def negatives(self) -> Tensor:
        """Neg(i), ``(2N, 2N)`` bool."""
        return self.candidates if self.labels is None else ~self.same_class

    @functools.cached_property
    def class_index(self) -> tuple[Tensor, Tensor]:
        """Each view's label as an index 0..C-1 ``(2N,)``, and the views per class ``(C,)``."""
        _, inverse, counts = torch.unique(self.labels, return_inverse=True, return_counts=True)
        return inverse, counts

    @property
    def class_size(self) -> Tensor:
        """``(2N,)``: how many of the 2N views share view i's label (itself included)."""
        if self.labels is None:
            return torch.full_like(self.partner, 2)
        inverse, counts = self.class_index
        return counts[inverse]


@functools.lru_cache(maxsize=8)
def _index_masks(n: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``p(i)`` ``(2N,)`` and the masks ``A(i)``, ``j == p(i)`` and unlabelled ``Neg(i)`` ``(2N, 2N)``.

    They depend only on N, so a training loop builds them once instead of at every step.
    """
    two_n = 2 * n
    idx = torch.arange(two_n, device=device)
    partner = (idx + n) % two_n
    not_self = idx[:, None] != idx[None, :]
    is_partner = partner[:, None] == idx[None, :]
    return partner, not_self, is_partner, not_self & ~is_partner


def _views(z1: Tensor, z2: Tensor, labels: Tensor | None, tau: float) -> _Views:
    _check_tau(tau)
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ValueError(
            f"z1 and z2 must both have shape (N, d); got z1 {tuple(z1.shape)} and z2 {tuple(z2.shape)}"
        )
    n = z1.shape[0]
    if n < 2:
        raise ValueError(f"a contrastive batch needs at least 2 samples (N >= 2), got N = {n}")
    # fp32 accumulation: half-precision inputs are upcast, float64 stays float64 (for tests).
    dtype = torch.float64 if z1.dtype == torch.float64 else torch.float32
    z = F.normalize(torch.cat([z1, z2]).to(dtype), dim=1)
    sim = z @ z.T / tau
    partner, not_self, is_partner, candidates = _index_masks(n, z.device)
    lab = None
    if labels is not None:
        labels = torch.as_tensor(labels, device=z.device)
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape (N,) = ({n},), got {tuple(labels.shape)}")
        lab = torch.cat([labels, labels])
    pos_sim = sim.gather(1, partner[:, None]).squeeze(1)
    return _Views(float(tau), z, sim, pos_sim, partner, not_self, is_partner, candidates, lab)


#: exp(-x) stays a normal float32 for x below this (float32's smallest normal is e^-87.3).
_EXP_RANGE = 80.0


def _masked_lse(v: _Views, mask: Tensor) -> Tensor:
    """Row-wise ``log sum_{j in mask} e^{s_ij}``; every row of ``mask`` must hold some j.

    The views are normalised, so ``s_ij <= 1/tau``: shifting every row by the constant ``1/tau``
    (instead of its own maximum) keeps ``e^{s - 1/tau}`` in ``[e^{-2/tau}, 1]``, which neither
    overflows nor underflows to 0 while ``2/tau < 80`` (tau > 0.025), and saves computing and
    subtracting row maxima. For smaller tau the row max is used (``torch.logsumexp``, whose
    gradient is the softmax: the max never enters it).
    """
    shift = 1.0 / v.tau
    if 2.0 * shift < _EXP_RANGE:
        return shift + torch.log(torch.exp(v.sim - shift).masked_fill(~mask, 0.0).sum(dim=1))
    return torch.logsumexp(v.sim.masked_fill(~mask, -math.inf), dim=1)


def _valid_anchors(v: _Views) -> Tensor:
    """``(2N,)`` bool: the anchors with a non-empty Neg(i) (some view of another class)."""
    valid = v.class_size < len(v.partner)
    if not bool(valid.any()):
        raise ValueError(
            "no anchor has a negative: every sample in this batch has the same label. "
            "Use a larger batch or a data set with several classes."
        )
    return valid


def _safe_negatives(v: _Views, valid: Tensor) -> Tensor:
    """Neg(i), with a harmless stand-in (all of A(i)) on the rows of anchors that are skipped.

    An empty row would form -inf or NaN, and even in a discarded row that poisons the backward pass.
    """
    if bool(valid.all()):
        return v.negatives
    return torch.where(valid[:, None], v.negatives, v.not_self)


def _log_tilted_mass(v: _Views, neg_mask: Tensor, log_n: Tensor | float, beta: float,
                     detach_weights: bool) -> Tensor:
    """log R_i(beta) = log n_i + LSE_k((1+beta) s_ik) - LSE_k(beta s_ik) over ``neg_mask``.

    That is ``log n_i + LSE_k(log w_ik + s_ik)`` with ``w_ik = softmax_k(beta s_ik)``. With the
    row max ``m_i`` over the negatives (detached: it cancels from the value, so not
    differentiating it is exact), ``t = e^{s - m}`` and ``u = e^{beta (s - m)}`` lie in (0, 1] and
    equal 1 at the hardest negative, so both sums below are >= 1 whatever tau and beta:

        log R_i = log n_i + m_i + log sum_k u_ik t_ik - log sum_k u_ik

    ``log_n`` is ``log n_i``, the log of the number of negatives of each row (the callers know
    it from the batch's class sizes: summing the boolean mask would convert it to int64 first).

    ``detach_weights`` stops the gradient through the importance weights (``u``), so that they
    act as constants (a re-weighting of the plain InfoNCE gradient); by default, as in the
    published HCL code, the gradient also flows through w.
    """
    if beta == 0:  # w is uniform: R_i is the plain sum
        return _masked_lse(v, neg_mask)
    x = v.sim.masked_fill(~neg_mask, -math.inf)
    row_max = x.amax(dim=1, keepdim=True).detach()
    shifted = x - row_max
    if detach_weights:
        u = torch.exp(beta * shifted.detach())
        tilted = (u * torch.exp(shifted)).sum(dim=1)
    else:
        u = torch.exp(beta * shifted)
        tilted = torch.exp((1.0 + beta) * shifted).sum(dim=1)  # sum u t, in one exp and no product
    return log_n + row_max.squeeze(1) + torch.log(tilted) - torch.log(u.sum(dim=1))


def _mean_over(values: Tensor, valid: Tensor) -> Tensor:
    return values[valid].mean()


# --------------------------------------------------------------------------------------------
# the losses
# --------------------------------------------------------------------------------------------


def info_nce(z1: Tensor, z2: Tensor, *, tau: float) -> Tensor:
    r"""UCL / SimCLR NT-Xent loss.

    .. math:: \ell_i = \log\sum_{j \ne i} e^{s_{ij}} - s_{i,p(i)}, \quad \text{mean over } 2N

    Args:
        z1, z2: ``(N, d)`` two views of N samples (normalised inside).
        tau: temperature > 0.

    Returns:
        Scalar float32 tensor (float64 for float64 inputs).
    """
    v = _views(z1, z2, None, tau)
    return (_masked_lse(v, v.not_self) - v.pos_sim).mean()


def _hcl_terms(
    z1: Tensor, z2: Tensor, *, tau: float, beta: float, tau_plus: float, detach_weights: bool, clamp: bool
) -> tuple[Tensor, Tensor]:
    """Per-anchor HCL losses ``(2N,)`` and whether the lower clamp on Ng binds ``(2N,)``."""
    _check_beta(beta)
    _check_tau_plus(tau_plus)
    v = _views(z1, z2, None, tau)
    log_r = _log_tilted_mass(v, v.negatives, math.log(len(v.partner) - 2), beta, detach_weights)
    m = float(v.sim.shape[0] - 2)
    # log of the debiasing term tau_plus * M * e^{s_ip}; -inf when tau_plus == 0.
    log_pos_mass = math.log(tau_plus * m) + v.pos_sim if tau_plus > 0 else torch.full_like(log_r, -math.inf)
    # log(R - a) = log R + log(1 - e^{log a - log R}), defined only where a < R. The ratio is
    # replaced by a safe stand-in elsewhere so the discarded branch never forms a NaN gradient.
    log_ratio = log_pos_mass - log_r
    positive = log_ratio < 0
    safe_ratio = torch.where(positive, log_ratio, torch.full_like(log_ratio, -1.0))
    log_debiased = log_r + torch.log(-torch.expm1(safe_ratio)) - math.log1p(-tau_plus)
    log_debiased = torch.where(positive, log_debiased, torch.full_like(log_debiased, -math.inf))
    if clamp:
        log_floor = torch.full_like(log_r, math.log(m) - 1.0 / tau)
        binds = log_debiased < log_floor
        log_ng = torch.maximum(log_debiased, log_floor)
    else:
        binds = torch.zeros_like(positive)
        log_ng = log_debiased
    loss = torch.logaddexp(v.pos_sim, log_ng) - v.pos_sim
    return loss, binds


def hcl(
    z1: Tensor, z2: Tensor, *, tau: float, beta: float, tau_plus: float, detach_weights: bool = False
) -> Tensor:
    r"""Hard negative contrastive loss (Robinson et al., ICLR 2021).

    Negatives are all 2N-2 other views, re-weighted towards hard ones by
    ``w_ik = softmax_k(beta s_ik)`` and debiased with the class prior ``tau_plus``:

    .. math::
        N_g = \max\Big(\frac{R_i - \tau^+ M e^{s_{ip}}}{1-\tau^+},\; M e^{-1/\tau}\Big),\quad
        \ell_i = -s_{ip} + \log(e^{s_{ip}} + N_g),\quad M = 2N-2

    ``beta = 0, tau_plus = 0`` is exactly :func:`info_nce`; ``beta = 0`` is :func:`dcl`.

    Args:
        z1, z2: ``(N, d)`` two views.
        tau: temperature > 0.
        beta: hardness >= 0 (multiplies ``s = cos / tau``).
        tau_plus: class prior in [0, 1): the chance that a random negative shares the class.
        detach_weights: treat the importance weights as constants in the backward pass.

    Returns:
        Scalar tensor, mean over the 2N anchors.
    """
    loss, _ = _hcl_terms(
        z1, z2, tau=tau, beta=beta, tau_plus=tau_plus, detach_weights=detach_weights, clamp=True
    )
    return loss.mean()


def dcl(z1: Tensor, z2: Tensor, *, tau: float, tau_plus: float) -> Tensor:
    """Debiased contrastive loss (Chuang et al., NeurIPS 2020): :func:`hcl` with ``beta = 0``.

    Not the "decoupled" contrastive loss that some libraries also call DCL.
    """
    return hcl(z1, z2, tau=tau, beta=0.0, tau_plus=tau_plus)


def h_ucl(z1: Tensor, z2: Tensor, *, tau: float, beta: float) -> Tensor:
    r"""Hard unsupervised contrastive loss (H-UCL, Jiang et al. 2024).

    :func:`hcl` with ``tau_plus = 0`` and no clamp: ``l_i = log(1 + R_i(beta) e^{-s_ip})``.
    """
    loss, _ = _hcl_terms(z1, z2, tau=tau, beta=beta, tau_plus=0.0, detach_weights=False, clamp=False)
    return loss.mean()


def supcon(z1: Tensor, z2: Tensor, labels: Tensor | None = None, *, tau: float) -> Tensor:
    r"""Supervised contrastive loss, L_out of Khosla et al. (NeurIPS 2020).

    .. math:: \ell_i = \log\sum_{j \ne i} e^{s_{ij}} - \frac{1}{|P(i)|}\sum_{p \in P(i)} s_{ip}

    Averaged over anchors with at least one other-class view. Without labels it equals
    :func:`info_nce`.

    Args:
        z1, z2: ``(N, d)`` two views.
        labels: ``(N,)`` integer class labels, or None.
        tau: temperature > 0.
    """
    v = _views(z1, z2, labels, tau)
    valid = _valid_anchors(v)
    if v.labels is None:
        mean_pos = v.pos_sim
    else:
        # sum_{p in P(i)} s_ip = z_i . (sum of the views of i's class) / tau - s_ii: O(N d) work
        # with per-class sums, instead of masking the 2N x 2N matrix.
        inverse, counts = v.class_index
        class_sums = v.z.new_zeros(len(counts), v.z.shape[1]).index_add(0, inverse, v.z)
        # index_select, not class_sums[inverse]: its backward is an index_add, not a slow index_put
        sum_pos = ((v.z * class_sums.index_select(0, inverse)).sum(dim=1) - (v.z * v.z).sum(dim=1)) / v.tau
        mean_pos = sum_pos / (v.class_size - 1).to(v.z.dtype)
    return _mean_over(_masked_lse(v, v.not_self) - mean_pos, valid)


def hard_supcon(
    z1: Tensor,
    z2: Tensor,
    labels: Tensor | None = None,
    *,
    tau: float,
    beta: float,
    detach_weights: bool = False,
) -> Tensor:
    r"""Hard supervised contrastive loss (H-SCL, Jiang et al. 2024).

    Negatives are only other-class views, tilted towards hard ones by beta; for every
    positive pair (i, p), p in P(i):

    .. math:: \ell_{ip} = \mathrm{softplus}\big(\log M + \log R_i(\beta) - \log n_i - s_{ip}\big)
              = -\log\frac{e^{s_{ip}}}{e^{s_{ip}} + M\,\mathbb{E}_{k \sim q_\beta}[e^{s_{ik}}]}

    averaged over all positive pairs, ``M = 2N - 2``. ``beta = 0`` is Jiang et al.'s SCL
    (same-class views never enter the denominator); without labels it is :func:`h_ucl`.

    Args:
        z1, z2: ``(N, d)`` two views.
        labels: ``(N,)`` integer class labels, or None.
        tau: temperature > 0.
        beta: hardness >= 0.
        detach_weights: treat the importance weights as constants in the backward pass.
    """
    _check_beta(beta)
    v = _views(z1, z2, labels, tau)
    valid = _valid_anchors(v)
    neg_mask = _safe_negatives(v, valid)
    two_n = len(v.partner)
    # n_i: the views of other classes; 2N - 1 on the skipped rows, whose stand-in mask is A(i).
    log_n = torch.log(torch.where(valid, two_n - v.class_size, two_n - 1).to(v.sim.dtype))
    log_r = _log_tilted_mass(v, neg_mask, log_n, beta, detach_weights)
    log_neg_term = math.log(two_n - 2) + log_r - log_n  # log(M * E_q[e^s]), (2N,)
    pair_loss = F.softplus(log_neg_term[:, None] - v.sim)  # (2N, 2N), read on P(i) only
    pairs = v.positives & valid[:, None]
    n_pairs = (valid * (v.class_size - 1)).sum()
    # A masked sum, not pair_loss[pairs]: boolean indexing costs a nonzero() and a scatter back.
    return torch.where(pairs, pair_loss, 0.0).sum() / n_pairs


#: The loss functions by name; what each one is and reads is in :data:`hcl_core.registry.LOSSES`.
LOSSES: dict[str, Callable[..., Tensor]] = {
    "info_nce": info_nce,
    "dcl": dcl,
    "hcl": hcl,
    "h_ucl": h_ucl,
    "supcon": supcon,
    "hard_supcon": hard_supcon,
}
assert LOSSES.keys() == registry.LOSSES.keys(), "every registered loss needs a function, and no more"


def compute_loss(
    name: str,
    z1: Tensor,
    z2: Tensor,
    labels: Tensor | None = None,
    *,
    tau: float,
    beta: float = 0.0,
    tau_plus: float = 0.0,
    detach_weights: bool = False,
) -> Tensor:
    """Call the loss ``name`` with only the arguments its registry record says it reads."""
    spec = registry.loss_spec(name)
    given = {"tau": tau, "beta": beta, "tau_plus": tau_plus}
    kwargs: dict = {p: given[p] for p in spec.params}
    if spec.detachable:
        kwargs["detach_weights"] = detach_weights
    if spec.supervised:
        return LOSSES[name](z1, z2, labels, **kwargs)
    return LOSSES[name](z1, z2, **kwargs)


def clamp_share(z1: Tensor, z2: Tensor, *, tau: float, beta: float, tau_plus: float) -> float:
    """Fraction of anchors where the HCL/DCL lower clamp on Ng binds.

    Where it binds, Ng is a constant, so that anchor's negatives give no gradient at all.
    """
    with torch.no_grad():
        _, binds = _hcl_terms(
            z1, z2, tau=tau, beta=beta, tau_plus=tau_plus, detach_weights=False, clamp=True
        )
    return float(binds.float().mean())


# --------------------------------------------------------------------------------------------
# diagnostics for the plots
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NegativeWeights:
    """Per-anchor share of the negative term that each candidate negative receives.

    Attributes:
        weights: ``(2N, 2N)``; row i sums to 1 over its candidates, 0 elsewhere.
        candidates: ``(2N, 2N)`` bool, j not in {i, p(i)}: every view an unsupervised loss
            treats as a negative.
        same_class: ``(2N, 2N)`` bool, the candidates that share the anchor's label ("false
            negatives"); all False without labels.
    """

    weights: Tensor
    candidates: Tensor
    same_class: Tensor


def negative_weights(
    z1: Tensor,
    z2: Tensor,
    labels: Tensor | None = None,
    *,
    loss: str,
    tau: float,
    beta: float = 0.0,
    tau_plus: float = 0.0,
) -> NegativeWeights:
    """The normalised weight each loss puts on each negative, for the plots.

    * ``info_nce``, ``supcon``: ``softmax_k(s_ik)`` over the candidates (SupCon keeps same-class
      views in its denominator, so they take part of the mass).
    * ``hcl``, ``dcl``, ``h_ucl``: ``n_i w_ik e^{s_ik} / sum = softmax_k((1+beta) s_ik)``
      (beta = 0 for dcl; the debiasing by ``tau_plus`` subtracts a positive-pair term and does
      not change the shares).
    * ``hard_supcon``: the same tilt over other-class candidates only; same-class views get 0.

    Rows of anchors without any eligible negative are all zero. Computed without gradient.
    """
    spec = registry.loss_spec(loss)
    _check_beta(beta)
    _check_tau_plus(tau_plus)
    with torch.no_grad():
        v = _views(z1, z2, labels, tau)
        candidates = v.candidates.clone()  # the cached mask must not be handed out: a caller may change it
        same_class = (
            candidates & v.same_class
            if v.labels is not None
            else torch.zeros_like(candidates)
        )
        tilt = beta if spec.tilts else 0.0
        # Supervised losses with a tilt drop same-class views from the negatives (H-SCL);
        # SupCon keeps them in its denominator.
        eligible = candidates & ~same_class if spec.supervised and spec.tilts else candidates
        logits = ((1.0 + tilt) * v.sim).masked_fill(~eligible, -math.inf)
        has_any = eligible.any(dim=1, keepdim=True)
        logits = torch.where(has_any, logits, torch.zeros_like(logits))
        weights = torch.softmax(logits, dim=1) * eligible * has_any
    return NegativeWeights(weights, candidates, same_class)


def same_class_mass(nw: NegativeWeights) -> Tensor:
    """``(2N,)`` share of each anchor's negative weight that falls on same-class views."""
    return (nw.weights * nw.same_class).sum(dim=1)


def effective_negatives(nw: NegativeWeights) -> Tensor:
    """``(2N,)`` effective number of negatives ``(sum w)^2 / sum w^2`` (Kish's formula).

    Equals the number of candidates when all weights are equal and tends to 1 as the
    weight concentrates on the single hardest negative. 0 for rows without weight.
    """
    total = nw.weights.sum(dim=1)
    squares = (nw.weights**2).sum(dim=1)
    return torch.where(squares > 0, total**2 / squares.clamp_min(1e-30), torch.zeros_like(total))
