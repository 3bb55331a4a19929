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

Per anchor, InfoNCE, DCL, HCL, H-UCL and H-SCL are ``softplus(log N_g - s_ip)`` with the
anchor's negative term ``N_g``, computed as ``max(x, 0) + log1p(e^{-|x|})``: exact for tiny
losses in float32, where ``log(e^{s_p} + N_g) - s_p`` would cancel to 0.

The arithmetic lives in :mod:`hcl_core.loss_rows`: in float32 (float64 for float64 inputs), in
log space shifted by each row's largest negative similarity, so no loss overflows for
tau >= 0.05 and beta <= 20; with a closed-form backward that needs at most three ``(rows, 2N)``
matrices at once, over blocks of rows (``chunk_rows``; automatic above N = 2048), so large
batches fit in bounded memory with the same values and gradients.
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
from .loss_rows import Layout, Recipe, blocks, contrastive_loss, forward_rows, gradient_rows

__all__ = [
    "LOSSES",
    "POSITIVES",
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
    "pulled_fraction",
    "same_class_mass",
    "supcon",
]

#: H-SCL's choices of positives: every same-class view (the training code) or the partner only
#: (the authors' check of their bound, main/main_loss.py of Jiang et al.'s repository).
POSITIVES = ("all", "partner")


# --------------------------------------------------------------------------------------------
# validation and the batch's layout
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


@functools.lru_cache(maxsize=8)
def _partner(n: int, device: torch.device) -> Tensor:
    """``(2N,)`` p(i) = i +- N; it depends only on N, so a training loop builds it once."""
    idx = torch.arange(2 * n, device=device)
    return (idx + n) % (2 * n)


def _prepare(z1: Tensor, z2: Tensor, labels: Tensor | None, tau: float) -> tuple[Tensor, Layout]:
    """The normalised views ``(2N, d)`` (float32, or float64 for float64 inputs) and their :class:`Layout`.

    Raises ``ValueError`` for a bad tau or shape, and for a batch in which no anchor has a
    negative (every sample of one class: Neg(i) is then empty for every anchor at once).
    """
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
    partner = _partner(n, z.device)
    if labels is None:
        return z, Layout(float(tau), partner, None, torch.full_like(partner, 2))
    labels = torch.as_tensor(labels, device=z.device)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape (N,) = ({n},), got {tuple(labels.shape)}")
    lab = torch.cat([labels, labels])
    _, inverse, counts = torch.unique(lab, return_inverse=True, return_counts=True)
    if len(counts) < 2:
        raise ValueError(
            "no anchor has a negative: every sample in this batch has the same label. "
            "Use a larger batch or a data set with several classes."
        )
    return z, Layout(float(tau), partner, inverse, counts[inverse])


def _recipe(name: str, *, labelled: bool, beta: float = 0.0, tau_plus: float = 0.0, detach_weights: bool = False,
            positives: str = "all") -> Recipe:
    """The engine's description of loss ``name``, from its registry record (what it reads and does)."""
    spec = registry.loss_spec(name)
    if spec.supervised and not spec.tilts:
        return Recipe("supcon")
    return Recipe(
        "softplus",
        beta=float(beta) if spec.tilts else 0.0,
        tau_plus=float(tau_plus) if spec.reads("tau_plus") else 0.0,
        clamp=spec.clamp,
        detach=bool(detach_weights) and spec.detachable,
        by_class=spec.supervised and labelled,
        all_positives=spec.supervised and labelled and positives == "all",
    )


def _run(name: str, z1: Tensor, z2: Tensor, labels: Tensor | None, *, tau: float, chunk_rows: int | None,
         **params) -> Tensor:
    z, lay = _prepare(z1, z2, labels, tau)
    rec = _recipe(name, labelled=lay.labels is not None, **params)
    return contrastive_loss(z, lay, rec, chunk_rows=chunk_rows)


# --------------------------------------------------------------------------------------------
# the losses
# --------------------------------------------------------------------------------------------


def info_nce(z1: Tensor, z2: Tensor, *, tau: float, chunk_rows: int | None = None) -> Tensor:
    r"""UCL / SimCLR NT-Xent loss.

    .. math:: \ell_i = \log\sum_{j \ne i} e^{s_{ij}} - s_{i,p(i)}
              = \mathrm{softplus}\big(\mathrm{LSE}_{k \notin \{i, p(i)\}} s_{ik} - s_{i,p(i)}\big),
              \quad \text{mean over } 2N

    Args:
        z1, z2: ``(N, d)`` two views of N samples (normalised inside).
        tau: temperature > 0.
        chunk_rows: rows of the similarity matrix per block (None: automatic; see the module).

    Returns:
        Scalar float32 tensor (float64 for float64 inputs).
    """
    return _run("info_nce", z1, z2, None, tau=tau, chunk_rows=chunk_rows)


def hcl(
    z1: Tensor, z2: Tensor, *, tau: float, beta: float, tau_plus: float, detach_weights: bool = False,
    chunk_rows: int | None = None,
) -> Tensor:
    r"""Hard negative contrastive loss (Robinson et al., ICLR 2021).

    Negatives are all 2N-2 other views, re-weighted towards hard ones by
    ``w_ik = softmax_k(beta s_ik)`` and debiased with the class prior ``tau_plus``:

    .. math::
        N_g = \max\Big(\frac{R_i - \tau^+ M e^{s_{ip}}}{1-\tau^+},\; M e^{-1/\tau}\Big),\quad
        \ell_i = \mathrm{softplus}(\log N_g - s_{ip}),\quad M = 2N-2

    ``beta = 0, tau_plus = 0`` is exactly :func:`info_nce`; ``beta = 0`` is :func:`dcl`. Where the
    clamp binds, N_g is a constant and the anchor's negatives get no gradient.

    Args:
        z1, z2: ``(N, d)`` two views.
        tau: temperature > 0.
        beta: hardness >= 0 (multiplies ``s = cos / tau``).
        tau_plus: class prior in [0, 1): the chance that a random negative shares the class.
        detach_weights: treat the importance weights as constants in the backward pass.
        chunk_rows: rows of the similarity matrix per block (None: automatic).

    Returns:
        Scalar tensor, mean over the 2N anchors.
    """
    _check_beta(beta)
    _check_tau_plus(tau_plus)
    return _run("hcl", z1, z2, None, tau=tau, chunk_rows=chunk_rows, beta=beta, tau_plus=tau_plus,
                detach_weights=detach_weights)


def dcl(z1: Tensor, z2: Tensor, *, tau: float, tau_plus: float, chunk_rows: int | None = None) -> Tensor:
    """Debiased contrastive loss (Chuang et al., NeurIPS 2020): :func:`hcl` with ``beta = 0``.

    Not the "decoupled" contrastive loss that some libraries also call DCL.
    """
    return hcl(z1, z2, tau=tau, beta=0.0, tau_plus=tau_plus, chunk_rows=chunk_rows)


def h_ucl(z1: Tensor, z2: Tensor, *, tau: float, beta: float, chunk_rows: int | None = None) -> Tensor:
    r"""Hard unsupervised contrastive loss (H-UCL, Jiang et al. 2024).

    :func:`hcl` with ``tau_plus = 0`` and no clamp: ``l_i = softplus(log R_i(beta) - s_ip)``.
    """
    _check_beta(beta)
    return _run("h_ucl", z1, z2, None, tau=tau, chunk_rows=chunk_rows, beta=beta)


def supcon(z1: Tensor, z2: Tensor, labels: Tensor | None = None, *, tau: float,
           chunk_rows: int | None = None) -> Tensor:
    r"""Supervised contrastive loss, L_out of Khosla et al. (NeurIPS 2020).

    .. math:: \ell_i = \log\sum_{j \ne i} e^{s_{ij}} - \frac{1}{|P(i)|}\sum_{p \in P(i)} s_{ip}

    Averaged over the anchors. Without labels it equals :func:`info_nce`. The published training
    code (SupContrast) multiplies this loss by ``tau / base_temperature`` with base_temperature
    0.07: the same minimiser, gradients scaled by ``tau / 0.07`` (7.1 at tau = 0.5).

    Args:
        z1, z2: ``(N, d)`` two views.
        labels: ``(N,)`` integer class labels, or None.
        tau: temperature > 0.
        chunk_rows: rows of the similarity matrix per block (None: automatic).
    """
    z, lay = _prepare(z1, z2, labels, tau)
    if lay.labels is None:
        mean_pos = (z * z[lay.partner]).sum(dim=1) / lay.tau
    else:
        # sum_{p in P(i)} s_ip = z_i . (sum of the views of i's class) / tau - s_ii: O(N d) work
        # with per-class sums, instead of masking the 2N x 2N matrix.
        class_sums = z.new_zeros(int(lay.labels.max()) + 1, z.shape[1]).index_add(0, lay.labels, z)
        # index_select, not class_sums[labels]: its backward is an index_add, not a slow index_put
        sum_pos = ((z * class_sums.index_select(0, lay.labels)).sum(dim=1) - (z * z).sum(dim=1)) / lay.tau
        mean_pos = sum_pos / (lay.class_size - 1).to(z.dtype)
    return contrastive_loss(z, lay, Recipe("supcon"), chunk_rows=chunk_rows, extra=mean_pos)


def hard_supcon(
    z1: Tensor,
    z2: Tensor,
    labels: Tensor | None = None,
    *,
    tau: float,
    beta: float,
    detach_weights: bool = False,
    positives: str = "all",
    chunk_rows: int | None = None,
) -> Tensor:
    r"""Hard supervised contrastive loss (H-SCL, Jiang et al. 2024).

    Negatives are only other-class views, tilted towards hard ones by beta. With
    ``positives="all"`` (the H-SCL training code) every same-class view is a positive:

    .. math:: \ell_{ip} = \mathrm{softplus}\big(\log M + \log R_i(\beta) - \log n_i - s_{ip}\big)
              = -\log\frac{e^{s_{ip}}}{e^{s_{ip}} + M\,T_i},\quad p \in P(i),

    averaged over all positive pairs, ``M = 2N - 2``, ``T_i = E_{k \sim q_\beta}[e^{s_{ik}}]`` the
    mean of ``e^{s_ik}`` over the other-class views k under weights ``e^{beta s_ik}``. With
    ``positives="partner"`` (the authors' own check of their bound, main/main_loss.py of their
    repository) the partner is the only positive: ``l_i = log(1 + M T_i / e^{s_i,p(i)})``,
    averaged over the 2N anchors. ``beta = 0`` gives the matching SCL (same-class views never
    in the denominator); without labels both are :func:`h_ucl`.

    Args:
        z1, z2: ``(N, d)`` two views.
        labels: ``(N,)`` integer class labels, or None.
        tau: temperature > 0.
        beta: hardness >= 0.
        detach_weights: treat the importance weights as constants in the backward pass.
        positives: ``"all"`` or ``"partner"``.
        chunk_rows: rows of the similarity matrix per block (None: automatic).
    """
    _check_beta(beta)
    if positives not in POSITIVES:
        raise ValueError(f"positives must be 'all' (every same-class view) or 'partner' (the augmentation "
                         f"partner only), got {positives!r}")
    return _run("hard_supcon", z1, z2, labels, tau=tau, chunk_rows=chunk_rows, beta=beta,
                detach_weights=detach_weights, positives=positives)


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
    chunk_rows: int | None = None,
) -> Tensor:
    """Call the loss ``name`` with only the arguments its registry record says it reads."""
    spec = registry.loss_spec(name)
    given = {"tau": tau, "beta": beta, "tau_plus": tau_plus}
    kwargs: dict = {p: given[p] for p in spec.params}
    kwargs["chunk_rows"] = chunk_rows
    if spec.detachable:
        kwargs["detach_weights"] = detach_weights
    if spec.supervised:
        return LOSSES[name](z1, z2, labels, **kwargs)
    return LOSSES[name](z1, z2, **kwargs)


def clamp_share(z1: Tensor, z2: Tensor, *, tau: float, beta: float, tau_plus: float) -> float:
    """Fraction of anchors where the HCL/DCL lower clamp on Ng binds.

    Where it binds, Ng is a constant, so that anchor's negatives give no gradient at all.
    """
    _check_beta(beta)
    _check_tau_plus(tau_plus)
    with torch.no_grad():
        z, lay = _prepare(z1, z2, None, tau)
        rec = _recipe("hcl", labelled=False, beta=beta, tau_plus=tau_plus)
        binds = torch.cat([forward_rows(z, lay, rec, a, b)["binds"] for a, b in blocks(lay.size, None)])
    return float(binds.float().mean())


# --------------------------------------------------------------------------------------------
# diagnostics for the plots
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NegativeWeights:
    """What a loss does with each candidate negative k of each anchor i (all ``(2N, 2N)``).

    Attributes:
        weights: the share of the negative term that k carries; row i sums to 1 over the loss's
            negatives, 0 elsewhere.
        candidates: bool, k not in {i, p(i)}: every view an unsupervised loss treats as a negative.
        same_class: bool, the candidates that share the anchor's label ("false negatives"); all
            False without labels.
        eligible: bool, the loss's negatives: the other-class views for H-SCL with labels, every
            candidate otherwise.
        importance: the papers' hardness weight ``ω_ik = e^{β s_ik} / mean_k e^{β s_ik}`` over the
            loss's negatives (mean 1; 1 everywhere for a loss without a tilt, or at β = 0); 0 off them.
        gradient: ``∂L/∂s_ik`` of the batch loss L on the candidates (0 elsewhere), row i taken as
            anchor i's own variables, under the loss's actual gradient. Positive: gradient descent
            pushes k away from i; negative: it pulls k closer.
    """

    weights: Tensor
    candidates: Tensor
    same_class: Tensor
    eligible: Tensor
    importance: Tensor
    gradient: Tensor


def negative_weights(
    z1: Tensor,
    z2: Tensor,
    labels: Tensor | None = None,
    *,
    loss: str,
    tau: float,
    beta: float = 0.0,
    tau_plus: float = 0.0,
    detach_weights: bool = False,
) -> NegativeWeights:
    """Three views of what each loss does with each negative, for the plots.

    The loss's negatives ("eligible"): the other-class views for H-SCL with labels, every
    candidate ``k ∉ {i, p(i)}`` otherwise.

    * ``weights`` (the share): ``softmax_k((1+β) s_ik)`` over the eligible negatives for the
      tilted losses (``n_i w_ik e^{s_ik} / Σ``; τ⁺'s debiasing subtracts a positive-pair term and
      does not change the shares), ``softmax_k(s_ik)`` over the candidates for the others (SupCon
      keeps same-class views in its denominator).
    * ``importance``: ``ω_ik = n_i softmax_k(β s_ik)`` over the eligible negatives.
    * ``gradient``: ``∂L/∂s_ik`` from :func:`hcl_core.loss_rows.gradient_rows`, the gradient the
      loss trains with (``detach_weights`` respected; 0 where HCL's clamp binds). Without
      detaching it is ``∝ (1+β) share - β ω / n_i`` on the negatives, so for β > 0 the less
      similar ones are pulled closer. Same-class candidates that the loss takes as positives
      (SupCon, H-SCL) get a negative value.

    Computed without autograd, in the inputs' precision (float32 or float64).
    """
    spec = registry.loss_spec(loss)
    _check_beta(beta)
    _check_tau_plus(tau_plus)
    with torch.no_grad():
        z, lay = _prepare(z1, z2, labels, tau)
        two_n = lay.size
        idx = torch.arange(two_n, device=z.device)
        candidates = (idx[:, None] != idx[None, :]) & (lay.partner[:, None] != idx[None, :])
        same_class = (
            candidates & (lay.labels[:, None] == lay.labels[None, :])
            if lay.labels is not None
            else torch.zeros_like(candidates)
        )
        rec = _recipe(loss, labelled=lay.labels is not None, beta=beta, tau_plus=tau_plus,
                      detach_weights=detach_weights)
        eligible = candidates & ~same_class if rec.by_class else candidates
        sim = (z @ z.T) / lay.tau
        tilt = rec.beta if spec.tilts else 0.0
        weights = torch.softmax(((1.0 + tilt) * sim).masked_fill(~eligible, -math.inf), dim=1)
        n_eligible = eligible.sum(dim=1, keepdim=True).to(z.dtype)
        importance = n_eligible * torch.softmax((tilt * sim).masked_fill(~eligible, -math.inf), dim=1)
        st = forward_rows(z, lay, rec, 0, two_n)
        weight = (1.0 / float((lay.class_size - 1).sum())) if rec.all_positives else 1.0 / two_n
        grad = gradient_rows(z, lay, rec, st, 0, two_n, torch.full((two_n,), weight, dtype=z.dtype,
                                                                       device=z.device))
    return NegativeWeights(weights * eligible, candidates, same_class, eligible, importance * eligible,
                           grad.masked_fill(~candidates, 0.0))


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


def pulled_fraction(nw: NegativeWeights, *, same_class: bool = False) -> float:
    """Fraction of the (anchor, candidate) pairs whose gradient pulls the candidate closer (``∂L/∂s < 0``).

    Over the true negatives (the loss's negatives of another class; every candidate without
    labels); with ``same_class=True`` over the same-class candidates instead (for SupCon and H-SCL
    they are positives, so pulled by design). NaN if there are none.
    """
    mask = nw.same_class if same_class else nw.eligible & ~nw.same_class
    total = int(mask.sum())
    return int(((nw.gradient < 0) & mask).sum()) / total if total else math.nan
