"""Straightforward implementations of the published losses, the baselines of the loss benchmark.

Written the way the papers' public code computes them: plain ``exp`` of the similarity matrix,
explicit masks, no log-space tricks (except where the published code itself subtracts the row
max, as SupContrast does). They overflow where the formulas overflow in float32, e.g. for
``tau = 0.05, beta = 10`` ``exp(beta * s)`` is ``exp(200)``: that is part of what is measured.

Every function takes the raw projections ``z1, z2`` of shape ``(N, d)`` and L2-normalises them
first (the published models return normalised outputs), so each computes the same function as
its counterpart in :mod:`hcl_core.losses`.

The masks are built with vectorised tensor operations on every call. The HCL repository builds
its negative mask with a Python loop over the batch (``get_negative_mask``); a vectorised mask
is the stronger baseline, so the ratios here do not flatter the library.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _views(z1: Tensor, z2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    out_1, out_2 = F.normalize(z1, dim=-1), F.normalize(z2, dim=-1)
    return out_1, out_2, torch.cat([out_1, out_2], dim=0)


def negative_mask(batch_size: int, device: torch.device | str = "cpu") -> Tensor:
    """HCL's ``get_negative_mask``: (2N, 2N) bool, False on i == j and on the partner j = i +- N."""
    idx = torch.arange(2 * batch_size, device=device)
    partner = (idx + batch_size) % (2 * batch_size)
    return (idx[:, None] != idx[None, :]) & (partner[:, None] != idx[None, :])


def naive_hcl(z1: Tensor, z2: Tensor, *, tau: float, beta: float, tau_plus: float) -> Tensor:
    """Robinson et al. 2021, github.com/joshr17/HCL ``criterion(..., estimator='hard')``."""
    out_1, out_2, out = _views(z1, z2)
    batch_size = out_1.shape[0]
    # neg score
    neg = torch.exp(torch.mm(out, out.t().contiguous()) / tau)
    mask = negative_mask(batch_size, out.device)
    neg = neg.masked_select(mask).view(2 * batch_size, -1)
    # pos score
    pos = torch.exp(torch.sum(out_1 * out_2, dim=-1) / tau)
    pos = torch.cat([pos, pos], dim=0)
    # hard negative re-weighting
    n = batch_size * 2 - 2
    imp = (beta * neg.log()).exp()
    reweight_neg = (imp * neg).sum(dim=-1) / imp.mean(dim=-1)
    ng = (-tau_plus * n * pos + reweight_neg) / (1 - tau_plus)
    ng = torch.clamp(ng, min=n * math.e ** (-1 / tau))
    return (-torch.log(pos / (pos + ng))).mean()


def naive_supcon(z1: Tensor, z2: Tensor, labels: Tensor, *, tau: float) -> Tensor:
    """Khosla et al. 2020, github.com/HobbitLong/SupContrast ``SupConLoss`` (contrast_mode='all',
    base_temperature = temperature), which already subtracts the row max of the logits."""
    _, _, contrast_feature = _views(z1, z2)
    batch_size = z1.shape[0]
    labels = labels.contiguous().view(-1, 1)
    mask = torch.eq(labels, labels.T).float()
    anchor_count = contrast_count = 2
    anchor_dot_contrast = torch.div(torch.matmul(contrast_feature, contrast_feature.T), tau)
    logits_max, _ = torch.max(anchor_dot_contrast, dim=1, keepdim=True)
    logits = anchor_dot_contrast - logits_max.detach()
    mask = mask.repeat(anchor_count, contrast_count)
    logits_mask = torch.scatter(torch.ones_like(mask), 1,
                                torch.arange(batch_size * anchor_count, device=mask.device).view(-1, 1), 0)
    mask = mask * logits_mask
    exp_logits = torch.exp(logits) * logits_mask
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True))
    mean_log_prob_pos = (mask * log_prob).sum(1) / mask.sum(1)
    return (-mean_log_prob_pos).view(anchor_count, batch_size).mean()


def naive_hard_supcon(z1: Tensor, z2: Tensor, labels: Tensor, *, tau: float, beta: float) -> Tensor:
    """Jiang et al. 2024 (H-SCL), written like the HCL code it extends: negatives are the
    other-class views, tilted by ``exp(beta * s)``; one term per positive pair (i, p)."""
    _, _, out = _views(z1, z2)
    two_n = out.shape[0]
    sim = torch.exp(torch.mm(out, out.t().contiguous()) / tau)
    lab = torch.cat([labels, labels])
    same = lab[:, None] == lab[None, :]
    neg_mask = (~same).float()
    pos_mask = same & ~torch.eye(two_n, dtype=torch.bool, device=out.device)
    imp = (beta * sim.log()).exp()
    n_neg = neg_mask.sum(dim=-1)
    reweight_neg = (imp * sim * neg_mask).sum(dim=-1) / ((imp * neg_mask).sum(dim=-1) / n_neg)
    ng = (two_n - 2) * reweight_neg / n_neg  # M * E_q[e^s]
    pair = -torch.log(sim / (sim + ng[:, None]))
    return pair[pos_mask].mean()


NAIVE = {"hcl": naive_hcl, "supcon": naive_supcon, "hard_supcon": naive_hard_supcon}
