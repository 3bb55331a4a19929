"""The losses' arithmetic, one block of anchors at a time: per-anchor values and ∂L/∂s in closed form.

Every loss of :mod:`hcl_core.losses` reads row i of the similarity matrix ``S = z z^T / tau``
(``z`` the ``(2N, d)`` normalised views) only for anchor i. So the value and the gradient can be
computed for a block of rows ``[a, b)`` of S at a time, and the gradient with respect to the
views follows from the block's ``G = ∂L/∂S[a:b]`` (row i taken as anchor i's own variables):

    ∂L/∂z = (G z + G^T z[a:b]) / tau,   summed over the blocks.

:class:`_ContrastiveFunction` does exactly that: its forward pass keeps only per-row numbers
(the row maximum, the two tilted sums, the negative term), its backward pass recomputes each
block of S and turns it into G in place. At most three ``(rows, 2N)`` float matrices live at
once (two for the losses whose only positive is the partner), and ``chunk_rows`` bounds rows.
Small batches (one block of at most ``KEEP_S_ENTRIES`` entries) keep S instead of recomputing it
and sum G's terms before one product: there, time goes to products and kernel calls, not memory.

The losses fall into two forms. With the anchor's negative term ``X_i`` (a log-mass):

* **softplus form** (InfoNCE, DCL, HCL, H-UCL, H-SCL): ``l_ip = softplus(X_i - s_ip)`` for each
  positive p, with ``X_i = log M + log T_i``, ``M = 2N - 2`` and ``T_i`` the tilted mean of
  ``e^{s_ik}`` over the negatives k:

      log T_i = m_i + log Σ_k e^{(1+β)(s_ik - m_i)} - log Σ_k e^{β(s_ik - m_i)},

  ``m_i`` the row's largest negative similarity (both sums lie in [1, n_i]: nothing overflows).
  HCL/DCL then debias ``X_i`` with the class prior τ⁺ and clamp it from below. The stable
  softplus ``max(x, 0) + log1p(e^{-|x|})`` is exact for tiny losses (no threshold, no
  cancellation of ``LSE - s_p``). Its gradient: ``∂l/∂s_ip = -σ(X_i - s_ip)`` and
  ``∂X_i/∂s_ik = (1+β) share_ik - β ω_ik / n_i`` on the negatives, with the share
  ``softmax_k((1+β) s_ik)`` and the importance weight ``ω_ik = n_i softmax_k(β s_ik)``;
  with ``detach`` the tilt's weights are constants and ``∂X_i/∂s_ik = share_ik``.
* **SupCon**: ``l_i = LSE_{j≠i} s_ij - mean_{p∈P(i)} s_ip``; ``∂l_i/∂s_ij = softmax_{j≠i}(s_ij)
  - [j ∈ P(i)] / |P(i)|``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "AUTO_BLOCK_ENTRIES",
    "KEEP_S_ENTRIES",
    "Layout",
    "Recipe",
    "blocks",
    "contrastive_loss",
    "forward_rows",
    "gradient_parts",
    "gradient_rows",
]

#: Without an explicit ``chunk_rows``, blocks hold at most this many entries of S (64 MB in float32):
#: up to N = 2048 the whole matrix is one block; N = 4096 takes four blocks of 2,048 rows.
AUTO_BLOCK_ENTRIES = 1 << 24
#: Up to this many entries (N = 512, 4 MB in float32), S is computed once and kept from the
#: forward to the backward pass, and the gradient's blocks are summed before one product: at
#: small N the products and per-kernel overheads dominate, not memory (H-SCL at N = 256 took
#: 1.3x the naive formula's time recomputing S four times).
KEEP_S_ENTRIES = 1 << 20
_NEG_INF = -math.inf


@dataclass(frozen=True)
class Layout:
    """Everything about a batch of 2N views but the vectors.

    Attributes:
        tau: temperature, ``s = cos / tau``.
        partner: ``(2N,)`` p(i) = i ± N.
        labels: ``(2N,)`` each view's label, or None.
        class_size: ``(2N,)`` views sharing i's label, itself included (2 without labels).
    """

    tau: float
    partner: Tensor
    labels: Tensor | None
    class_size: Tensor

    @property
    def size(self) -> int:
        return len(self.partner)


@dataclass(frozen=True)
class Recipe:
    """Which loss the engine computes (see the module docstring for the two forms).

    Attributes:
        kind: ``"softplus"`` or ``"supcon"``.
        beta: hardness of the tilt (0: the plain sum).
        tau_plus: HCL/DCL's class prior (0: no debiasing).
        clamp: HCL/DCL's floor ``X_i >= log M - 1/tau``.
        detach: the tilt's weights are constants in the gradient.
        by_class: negatives are the other-class views (needs labels); else all but i and p(i).
        all_positives: every same-class view is a positive (H-SCL); else the partner only.
    """

    kind: str
    beta: float = 0.0
    tau_plus: float = 0.0
    clamp: bool = False
    detach: bool = False
    by_class: bool = False
    all_positives: bool = False


def blocks(size: int, chunk_rows: int | None) -> Iterator[tuple[int, int]]:
    """Row ranges ``[a, b)`` covering ``0..size``: ``chunk_rows`` rows each, or automatic (``None``)."""
    if chunk_rows is None:
        chunk_rows = max(1, AUTO_BLOCK_ENTRIES // size)
    for a in range(0, size, chunk_rows):
        yield a, min(a + chunk_rows, size)


def _softplus(x: Tensor) -> Tensor:
    """``log(1 + e^x) = max(x, 0) + log1p(e^{-|x|})``, exact at both ends (no threshold)."""
    return x.clamp_min(0.0) + torch.log1p(torch.exp(-x.abs()))


#: ``F.softplus`` returns x itself above its threshold. At 40 that drops ``log1p(e^{-x}) < 4e-18``,
#: under half an ulp of x in float64, so the result is exact; the default 20 drops up to 2e-9.
_SOFTPLUS_EXACT = 40.0


def _softplus_matrix(x: Tensor) -> Tensor:
    """:func:`_softplus` of a whole block, through torch's vectorised kernel (twice as fast, same digits)."""
    return F.softplus(x, threshold=_SOFTPLUS_EXACT)


def _similarity(z: Tensor, lay: Layout, a: int, b: int, kept: Tensor | None = None) -> Tensor:
    """A fresh, writable ``S[a:b]``: a copy of ``kept`` (the block's similarities, computed
    before) when given, which is cheaper than the product at small N."""
    if kept is not None:
        return kept.clone()
    return torch.mm(z[a:b], z.T).div_(lay.tau)


def _rows(a: int, b: int, device: torch.device) -> Tensor:
    return torch.arange(b - a, device=device)


def _same_class(lay: Layout, a: int, b: int) -> Tensor:
    """``(b - a, 2N)`` bool: view j shares anchor i's label (i itself included)."""
    return lay.labels[a:b, None] == lay.labels[None, :]


def _not_positive(lay: Layout, a: int, b: int, device: torch.device) -> Tensor:
    """``(b - a, 2N)`` bool: j is not in P(i) (another label, or i itself)."""
    out = _same_class(lay, a, b).logical_not_()
    rows = _rows(a, b, device)
    out[rows, rows + a] = True
    return out


def _negatives_only_(s: Tensor, lay: Layout, rec: Recipe, a: int, b: int, same: Tensor | None = None) -> Tensor:
    """``s`` with every entry that is not a negative of its anchor set to -inf, in place (``same``:
    the block's :func:`_same_class` mask, if already built)."""
    rows = _rows(a, b, s.device)
    if rec.by_class and lay.labels is not None:
        s.masked_fill_(_same_class(lay, a, b) if same is None else same, _NEG_INF)
        return s
    s[rows, rows + a] = _NEG_INF
    s[rows, lay.partner[a:b]] = _NEG_INF
    return s


def _positives_only_(t: Tensor, same: Tensor, a: int, b: int) -> Tensor:
    """``t`` with every entry off P(i) set to -inf, in place; ``same`` is flipped and flipped back."""
    t.masked_fill_(same.logical_not_(), _NEG_INF)
    same.logical_not_()
    rows = _rows(a, b, t.device)
    t[rows, rows + a] = _NEG_INF
    return t


def _tilted_sums(w: Tensor, beta: float, n_neg: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Row max ``m``, ``Σ e^{(1+β)(s-m)}`` and ``Σ e^{β(s-m)}`` over the finite entries of ``w`` (consumed)."""
    m = w.amax(dim=1)
    w.sub_(m[:, None])
    if beta == 0:
        sum_b = n_neg
    else:
        sum_b = torch.mul(w, beta).exp_().sum(dim=1)
        w.mul_(1.0 + beta)
    sum_a = w.exp_().sum(dim=1)
    return m, sum_a, sum_b


def _n_neg(lay: Layout, rec: Recipe, dtype: torch.dtype) -> Tensor:
    """``(2N,)`` n_i, the negatives of each anchor."""
    if rec.by_class and lay.labels is not None:
        return (lay.size - lay.class_size).to(dtype)
    return torch.full((lay.size,), float(lay.size - 2), dtype=dtype, device=lay.partner.device)


def _debias(rec: Recipe, lay: Layout, log_r: Tensor, s_p: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """HCL's ``X_i = log max((R_i - τ⁺ M e^{s_ip}) / (1 - τ⁺), M e^{-1/τ})`` from ``log R_i``.

    Returns ``X``, the gradient factors ``∂X/∂log R`` and ``∂X/∂s_ip`` (both 0 where the clamp
    binds, so that anchor's negatives get no gradient, as in the published code), and where the
    clamp binds. ``log(R - a) = log R + log(1 - e^{log a - log R})``, only where ``a < R``.
    """
    zeros = torch.zeros_like(log_r)
    if rec.tau_plus == 0 and not rec.clamp:
        return log_r, torch.ones_like(log_r), zeros, zeros.bool()
    m = float(lay.size - 2)
    no_prior = torch.full_like(log_r, _NEG_INF)  # a = 0: nothing to subtract
    log_ratio = math.log(rec.tau_plus * m) + s_p - log_r if rec.tau_plus > 0 else no_prior
    below = log_ratio < 0
    safe = torch.where(below, log_ratio, torch.full_like(log_ratio, -1.0))
    em1 = torch.expm1(safe)  # -(1 - r), r = a / R
    x = log_r + torch.log(-em1) - math.log1p(-rec.tau_plus)
    x = torch.where(below, x, torch.full_like(x, _NEG_INF))
    d_log_r, d_sp = -1.0 / em1, torch.exp(safe) / em1  # 1 / (1 - r) and -r / (1 - r)
    binds = zeros.bool()
    if rec.clamp:
        floor = math.log(m) - 1.0 / lay.tau
        binds = x < floor
        x = torch.clamp_min(x, floor)
    free = below & ~binds
    return x, torch.where(free, d_log_r, zeros), torch.where(free, d_sp, zeros), binds


def forward_rows(z: Tensor, lay: Layout, rec: Recipe, a: int, b: int, kept: Tensor | None = None) -> dict[str, Tensor]:
    """Per-row numbers of anchors ``a..b-1``: ``loss`` (the anchor's summed pair losses) and what
    :func:`gradient_parts` needs. No autograd: ``z`` is read only; ``kept``: ``S[a:b]`` if known."""
    s = _similarity(z, lay, a, b, kept)
    rows = _rows(a, b, z.device)
    if rec.kind == "supcon":
        s[rows, rows + a] = _NEG_INF
        m = s.amax(dim=1)
        total = s.sub_(m[:, None]).exp_().sum(dim=1)
        return {"m": m, "total": total, "lse": m + torch.log(total)}
    n_neg = _n_neg(lay, rec, z.dtype)[a:b]
    s_p = s[rows, lay.partner[a:b]]
    by_pairs = rec.all_positives and lay.labels is not None
    same = _same_class(lay, a, b) if by_pairs else None
    m, sum_a, sum_b = _tilted_sums(_negatives_only_(s, lay, rec, a, b, same), rec.beta, n_neg)
    del s
    log_r = math.log(lay.size - 2) + m + torch.log(sum_a) - torch.log(sum_b)  # log M + log T_i
    x, d_log_r, d_sp, binds = _debias(rec, lay, log_r, s_p)
    out = {"m": m, "sum_a": sum_a, "sum_b": sum_b, "x": x, "s_p": s_p, "d_log_r": d_log_r, "d_sp": d_sp,
           "binds": binds}
    if by_pairs:
        # Σ_{p ∈ P(i)} softplus(X_i - s_ip), softplus(-inf) = 0 off P(i): S once more (a product is
        # cheaper than keeping a third matrix)
        t = _positives_only_(_similarity(z, lay, a, b, kept).neg_().add_(x[:, None]), same, a, b)
        out["loss"] = _softplus_matrix(t).sum(dim=1)
    else:
        out["loss"] = _softplus(x - s_p)
    return out


def gradient_parts(z: Tensor, lay: Layout, rec: Recipe, st: dict[str, Tensor], a: int, b: int,
                   row_weight: Tensor, *, supcon_positives: bool = True,
                   kept: Tensor | None = None) -> Iterator[Tensor]:
    """``G = ∂L/∂S[a:b]`` ``(b - a, 2N)`` for ``L = Σ_i row_weight_i l_i``, as a sum of the yielded blocks.

    ``st`` holds :func:`forward_rows`'s numbers of these rows. Row i is anchor i's own variable:
    ``G[i, k] > 0`` means gradient descent lowers ``s_ik`` (pushes k away from i). Yielding the
    terms one by one lets the caller apply and free each before the next is built.
    ``supcon_positives=False`` leaves out SupCon's positive term (training computes it apart);
    ``kept``: ``S[a:b]`` if known.
    """
    rows = _rows(a, b, z.device)
    if rec.kind == "supcon":
        s = _similarity(z, lay, a, b, kept)
        s[rows, rows + a] = _NEG_INF
        g = s.sub_(st["m"][:, None]).exp_().mul_((row_weight / st["total"])[:, None])
        if supcon_positives and lay.labels is None:
            g[rows, lay.partner[a:b]] -= row_weight
        yield g
        del g, s
        if supcon_positives and lay.labels is not None:
            per_pos = row_weight / (lay.class_size[a:b] - 1).to(z.dtype)
            yield (~_not_positive(lay, a, b, z.device)).to(z.dtype).mul_(-per_pos[:, None])
        return
    by_pairs = rec.all_positives and lay.labels is not None
    same = None
    if by_pairs:  # -σ(X_i - s_ip) on the positives (σ(-inf) = 0 elsewhere)
        same = _same_class(lay, a, b)
        pos_term = _positives_only_(_similarity(z, lay, a, b, kept).neg_().add_(st["x"][:, None]), same, a, b)
        pos_term.sigmoid_().mul_(row_weight[:, None])
        g_x = pos_term.sum(dim=1)  # ∂L/∂X_i
        yield pos_term.neg_()
        del pos_term
    else:
        g_x = torch.sigmoid(st["x"] - st["s_p"]) * row_weight
    g_neg = g_x * st["d_log_r"]  # ∂L/∂log R_i
    w = _negatives_only_(_similarity(z, lay, a, b, kept), lay, rec, a, b, same).sub_(st["m"][:, None])
    tilted = None
    if rec.beta != 0 and not rec.detach:
        tilted = torch.mul(w, rec.beta).exp_().mul_((g_neg * rec.beta / st["sum_b"])[:, None])
        w.mul_(1.0 + rec.beta)
        scale = g_neg * (1.0 + rec.beta) / st["sum_a"]
    else:
        if rec.beta != 0:
            w.mul_(1.0 + rec.beta)
        scale = g_neg / st["sum_a"]
    g = w.exp_().mul_(scale[:, None])
    if tilted is not None:
        g.sub_(tilted)
        del tilted
    if not by_pairs:
        g[rows, lay.partner[a:b]] += g_x * (st["d_sp"] - 1.0)
    yield g


def gradient_rows(z: Tensor, lay: Layout, rec: Recipe, st: dict[str, Tensor], a: int, b: int,
                  row_weight: Tensor) -> Tensor:
    """The whole ``G = ∂L/∂S[a:b]`` of :func:`gradient_parts`, every term included (for the plots)."""
    parts = gradient_parts(z, lay, rec, st, a, b, row_weight)
    g = next(parts)
    for more in parts:
        g = g + more
    return g


def _row_weights(lay: Layout, rec: Recipe, dtype: torch.dtype) -> Tensor:
    """``(2N,)`` the weight of each anchor's summed pair losses in the batch loss (its mean)."""
    if rec.kind == "softplus" and rec.all_positives and lay.labels is not None:
        n_pairs = float((lay.class_size - 1).sum())
        return torch.full((lay.size,), 1.0 / n_pairs, dtype=dtype, device=lay.partner.device)
    return torch.full((lay.size,), 1.0 / lay.size, dtype=dtype, device=lay.partner.device)


def _whole(size: int, chunk_rows: int | None) -> bool:
    """Small enough to keep S between the passes: one block, at most :data:`KEEP_S_ENTRIES` entries."""
    return size * size <= KEEP_S_ENTRIES and next(blocks(size, chunk_rows)) == (0, size)


def _forward_all(z: Tensor, lay: Layout, rec: Recipe, chunk_rows: int | None,
                 kept: Tensor | None) -> dict[str, Tensor]:
    """``kept`` (S, one block) is passed to that block; otherwise each block computes its own."""
    parts = [forward_rows(z, lay, rec, a, b, kept) for a, b in blocks(lay.size, chunk_rows)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


class _ContrastiveFunction(torch.autograd.Function):
    """The batch loss of ``z`` ``(2N, d)`` (normalised views), with the closed-form backward."""

    @staticmethod
    def forward(ctx, z: Tensor, lay: Layout, rec: Recipe, chunk_rows: int | None, extra: Tensor | None):
        kept = _similarity(z, lay, 0, lay.size) if _whole(lay.size, chunk_rows) else None
        st = _forward_all(z, lay, rec, chunk_rows, kept)
        weights = _row_weights(lay, rec, z.dtype)
        ctx.save_for_backward(z)
        ctx.lay, ctx.rec, ctx.chunk_rows, ctx.st, ctx.weights, ctx.kept = lay, rec, chunk_rows, st, weights, kept
        per_row = st["lse"] if rec.kind == "supcon" else st["loss"]
        total = (per_row * weights).sum()
        if extra is not None:  # SupCon's positive term, computed outside (it needs no matrix)
            total = total - (extra * weights).sum()
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        (z,) = ctx.saved_tensors
        lay, rec, st, kept = ctx.lay, ctx.rec, ctx.st, ctx.kept
        if kept is not None:  # one block: the parts summed, then one product for G z + G^T z
            g = None
            for part in gradient_parts(z, lay, rec, st, 0, lay.size, ctx.weights, supcon_positives=False, kept=kept):
                g = part if g is None else g.add_(part)
                del part
            grad_z = torch.mm(g + g.T, z)
        else:
            grad_z = torch.zeros_like(z)
            for a, b in blocks(lay.size, ctx.chunk_rows):
                rows_st = {k: v[a:b] for k, v in st.items()}
                for g in gradient_parts(z, lay, rec, rows_st, a, b, ctx.weights[a:b], supcon_positives=False):
                    grad_z[a:b].addmm_(g, z)
                    grad_z.addmm_(g.T, z[a:b])
                    del g
        grad_z.mul_(grad_out / lay.tau)
        extra_grad = -ctx.weights * grad_out if ctx.needs_input_grad[4] else None
        return grad_z, None, None, None, extra_grad


def contrastive_loss(z: Tensor, lay: Layout, rec: Recipe, *, chunk_rows: int | None = None,
                     extra: Tensor | None = None) -> Tensor:
    """The batch loss (a 0-d tensor) with the memory-bounded backward of :class:`_ContrastiveFunction`.

    ``extra`` ``(2N,)`` (SupCon only) is subtracted per anchor with the anchor's weight; its own
    gradient flows through autograd.
    """
    if chunk_rows is not None and (isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1):
        raise ValueError(f"chunk_rows must be a whole number >= 1 (rows of the similarity matrix at a time) or None "
                         f"(automatic), got {chunk_rows!r}")
    return _ContrastiveFunction.apply(z, lay, rec, chunk_rows, extra)
