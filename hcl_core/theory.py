"""Jiang et al.'s bound on real embeddings: where does H-SCL <= H-UCL hold, and where not?

Jiang, Nguyen, Ishwar & Aeron, "Supervised Contrastive Learning with Hard Negative Samples"
(arXiv 2209.00078, 2024 version) show that, with infinitely many negatives and under their
Assumption 1, the hard supervised loss is bounded by the hard unsupervised one:

    L_H-SCL(f, beta)  <=  L_H-UCL(f, beta),

so minimising H-UCL (no labels needed) also controls H-SCL, while the plain UCL loss (InfoNCE)
can sit below H-SCL and so cannot control it. Their later paper (arXiv 2311.05139) adds that
hardening never lowers a loss: L_H-SCL(beta) >= L_SCL = L_H-SCL(0) and L_H-UCL(beta) >= L_UCL.

This module evaluates the losses of the library on stored embeddings, over a grid of beta, with
H-SCL in both of its published forms:

* ``h_scl_all[b] = hard_supcon(z1, z2, labels, tau, beta=b)``  (negatives: other-class views only;
  every same-class view is a positive, as in the H-SCL training code and SupCon);
* ``h_scl_partner[b] = hard_supcon(..., positives="partner")``  (the same negatives, the augmentation
  partner as the only positive: the authors' own check of the bound, main/main_loss.py of
  Jiang et al.'s repository, which logs H-UCL, UCL, SCL and H-SCL side by side);
* ``h_ucl[b] = h_ucl(z1, z2, tau, beta=b)``  (negatives: all views but the anchor and its
  augmentation partner, same-class ones included; the partner is the only positive);
* ``ucl = info_nce(z1, z2, tau)``  (equal to ``h_ucl`` at beta = 0).

The partner-only H-SCL has H-UCL's positive, so the two differ only in their negatives: the bound
holds for it exactly when the tilted mean of ``e^s`` over all candidates is at least the one over
the other-class views, i.e. when same-class views are, in the tilted mean, the more similar ones.

Inputs are a run's snapshot arrays (``hcl_core.train``): ``z1``, ``z2`` of shape ``(N, d)``,
the L2-normalised projections of two augmented views of a fixed batch of N = 256 test samples,
and ``z_labels`` ``(N,)``. One batch gives every anchor 2N - 2 = 510 negatives; the theorem is
about the limit of many negatives, which :func:`negatives_curves` probes by sub-sampling.

Two diagnostics explain the sign of ``gap = h_ucl - h_scl`` (positive: the bound holds):

* ``same_class_share[b]``: the share of H-UCL's negative term that falls on same-class views
  (``negative_weights(loss="h_ucl")``): these "false negatives" are why H-UCL can exceed H-SCL;
* ``positive_gap``: how much closer augmentation partners are than other same-class pairs,
  ``mean_i s_{i,p(i)} - mean_{j in P(i), j != p(i)} s_ij`` with ``s = cos / tau``: H-SCL pulls
  those farther same-class pairs together too, which raises it above H-UCL when classes are loose.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .losses import POSITIVES, h_ucl, hard_supcon, info_nce, negative_weights, same_class_mass
from .threads import limited_threads

__all__ = [
    "ATOL",
    "COARSE_BETAS",
    "DEFAULT_BETAS",
    "NegativesCurves",
    "TheoryCurves",
    "VARIANT_LABELS",
    "compare_variants",
    "describe",
    "negatives_curves",
    "run_curves",
    "snapshot_arrays",
    "theory_curves",
    "verdict_table",
]

#: Denser near 0, where the curves bend, and up to 10: past the published HCL range (beta <= 6).
DEFAULT_BETAS: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0)
#: A coarse grid for many snapshots at once (the margin over training, the table across runs).
COARSE_BETAS: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0, 8.0)
#: Differences below this (nats) count as equal: the bound "holds" when h_scl <= h_ucl + ATOL.
ATOL = 1e-6
#: The two H-SCL variants in words.
VARIANT_LABELS = {
    "all": "H-SCL, every same-class view a positive (the training code)",
    "partner": "H-SCL, the partner as the only positive (the authors' check)",
}


@dataclass(frozen=True)
class TheoryCurves:
    """The losses of one set of embeddings over a grid of beta (all losses in nats).

    Attributes:
        betas: ``(B,)`` the hardness values, increasing.
        h_scl_all: ``(B,)`` H-SCL at each beta, every same-class view a positive (``hard_supcon``).
        h_scl_partner: ``(B,)`` H-SCL with the partner as the only positive (the authors' check).
        h_ucl: ``(B,)`` H-UCL at each beta (``h_ucl``).
        ucl: the UCL loss (``info_nce``), which does not depend on beta.
        same_class_share: ``(B,)`` mean share of H-UCL's negative term on same-class views.
        positive_gap: partner similarity minus other same-class similarity, in units of 1/tau.
        tau: temperature the losses were computed with.
        n: samples in the batch (2N views, 2N - 2 negatives per anchor).
        classes: distinct labels in the batch.
        positives: which H-SCL (``"all"`` or ``"partner"``) :attr:`h_scl` and every verdict below use;
            :meth:`variant` gives the other.
    """

    betas: np.ndarray
    h_scl_all: np.ndarray
    h_scl_partner: np.ndarray
    h_ucl: np.ndarray
    ucl: float
    same_class_share: np.ndarray
    positive_gap: float
    tau: float
    n: int
    classes: int
    positives: str = "all"

    def __post_init__(self) -> None:
        if self.positives not in POSITIVES:
            raise ValueError(f"positives must be one of {', '.join(POSITIVES)}, got {self.positives!r}")

    def variant(self, positives: str) -> TheoryCurves:
        """The same curves with the verdicts taken for H-SCL with ``positives`` (``"all"`` or ``"partner"``)."""
        return dataclasses.replace(self, positives=positives)

    @property
    def h_scl(self) -> np.ndarray:
        """``(B,)`` the H-SCL of :attr:`positives`."""
        return self.h_scl_partner if self.positives == "partner" else self.h_scl_all

    @property
    def label(self) -> str:
        """The variant in words."""
        return VARIANT_LABELS[self.positives]

    @property
    def gap(self) -> np.ndarray:
        """``(B,)`` H-UCL minus H-SCL: >= 0 where the bound holds."""
        return self.h_ucl - self.h_scl

    @property
    def holds(self) -> np.ndarray:
        """``(B,)`` bool: H-SCL <= H-UCL at this beta."""
        return self.h_scl <= self.h_ucl + ATOL

    @property
    def ucl_below_h_scl(self) -> np.ndarray:
        """``(B,)`` bool: UCL <= H-SCL, the case in which a small UCL loss says nothing about H-SCL."""
        return self.ucl <= self.h_scl + ATOL

    @property
    def negatives(self) -> int:
        return 2 * self.n - 2

    def crossings(self) -> list[float]:
        """Betas where the gap changes sign, linearly interpolated between grid points."""
        out = []
        g = self.gap
        for k in range(len(g) - 1):
            if (g[k] >= -ATOL) != (g[k + 1] >= -ATOL):
                b0, b1 = self.betas[k], self.betas[k + 1]
                out.append(float(b0 + (b1 - b0) * g[k] / (g[k] - g[k + 1])))
        return out

    def segments(self) -> list[tuple[float, float, bool]]:
        """``(beta_from, beta_to, holds)`` for each run of consecutive grid points with the same verdict.

        Boundaries between runs lie at the interpolated crossings, so the segments tile
        ``[betas[0], betas[-1]]``.
        """
        holds, cuts = self.holds, self.crossings()
        out, start, k = [], float(self.betas[0]), 0
        for i in range(1, len(holds)):
            if holds[i] != holds[i - 1]:
                out.append((start, cuts[k], bool(holds[i - 1])))
                start, k = cuts[k], k + 1
        out.append((start, float(self.betas[-1]), bool(holds[-1])))
        return out


def _check_betas(betas: Sequence[float]) -> np.ndarray:
    b = np.asarray(list(betas), dtype=float)
    if b.ndim != 1 or len(b) == 0:
        raise ValueError("betas must be a non-empty list of numbers, e.g. (0, 0.5, 1, 2)")
    if not np.all(np.isfinite(b)) or np.any(b < 0) or np.any(b > 20):
        raise ValueError(f"every beta must lie in [0, 20] (the range the losses are stable on), got {list(b)}")
    if np.any(np.diff(b) <= 0):
        raise ValueError("betas must be strictly increasing, e.g. (0, 0.5, 1, 2)")
    return b


def _as_views(z1: Any, z2: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float64 tensors ``(N, d)``, ``(N, d)`` and int64 labels ``(N,)``, checked."""
    z1 = torch.as_tensor(np.asarray(z1), dtype=torch.float64)
    z2 = torch.as_tensor(np.asarray(z2), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels)).long()
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must both have shape (N, d); got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if y.shape != (z1.shape[0],):
        raise ValueError(f"labels must have shape (N,) = ({z1.shape[0]},), got {tuple(y.shape)}")
    if not (torch.isfinite(z1).all() and torch.isfinite(z2).all()):
        raise ValueError("the embeddings contain NaN or infinity (the training diverged)")
    if len(torch.unique(y)) < 2:
        raise ValueError("the batch holds a single class: H-SCL needs at least two classes")
    return z1, z2, y


def positive_gap(z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor, tau: float) -> float:
    """Mean ``s`` of augmentation partners minus mean ``s`` of the other same-class pairs (``s = cos / tau``).

    > 0: partners are closer than other same-class views, so H-SCL (which pulls every same-class
    pair) has a harder positive term than H-UCL. NaN when no class appears twice.
    """
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    sim = (z @ z.T) / tau
    n2 = sim.shape[0]
    idx = torch.arange(n2)
    partner = (idx + n2 // 2) % n2
    lab = torch.cat([labels, labels])
    other_pos = (lab[:, None] == lab[None, :]) & (idx[:, None] != idx[None, :]) & (partner[:, None] != idx[None, :])
    if not bool(other_pos.any()):
        return math.nan
    return float(sim[idx, partner].mean() - sim[other_pos].mean())


def theory_curves(z1: Any, z2: Any, labels: Any, *, tau: float, betas: Sequence[float] = DEFAULT_BETAS,
                  diagnostics: bool = True) -> TheoryCurves:
    """H-SCL, H-UCL and UCL of one batch of embeddings over ``betas`` (computed in float64).

    Args:
        z1, z2: ``(N, d)`` the two views' projections (normalised inside the losses).
        labels: ``(N,)`` class labels; at least two classes.
        tau: temperature > 0 (use the run's own).
        betas: increasing hardness values in [0, 20].
        diagnostics: also compute ``same_class_share`` (one more pass per beta; NaN when False).
    """
    b = _check_betas(betas)
    z1, z2, y = _as_views(z1, z2, labels)
    with torch.no_grad(), limited_threads():
        h_scl = np.array([float(hard_supcon(z1, z2, y, tau=tau, beta=float(x))) for x in b])
        h_scl_p = np.array([float(hard_supcon(z1, z2, y, tau=tau, beta=float(x), positives="partner")) for x in b])
        h_u = np.array([float(h_ucl(z1, z2, tau=tau, beta=float(x))) for x in b])
        share = np.array([float(same_class_mass(negative_weights(z1, z2, y, loss="h_ucl", tau=tau,
                                                                 beta=float(x))).mean()) for x in b]
                         ) if diagnostics else np.full(len(b), np.nan)
        ucl = float(info_nce(z1, z2, tau=tau))
    return TheoryCurves(b, h_scl, h_scl_p, h_u, ucl, share, positive_gap(z1, z2, y, tau), float(tau),
                        int(z1.shape[0]), int(len(torch.unique(y))))


def snapshot_arrays(run: Any, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``(z1, z2, z_labels, epoch)`` of a run's snapshot (the last one when ``epoch`` is None).

    Raises ``ValueError`` (a :class:`~hcl_core.store.RunFileError` for unreadable files) when the
    run has no snapshot or the snapshot lacks the arrays.
    """
    epoch = run.pick_epoch(epoch)
    snap = run.load_snapshot(epoch)
    missing = [k for k in ("z1", "z2", "z_labels") if k not in snap]
    if missing:
        raise ValueError(f"the snapshot of epoch {epoch} lacks {', '.join(missing)} (written by an older version?)")
    return snap["z1"], snap["z2"], snap["z_labels"], epoch


def run_curves(run: Any, epoch: int | None = None, *, tau: float | None = None,
               betas: Sequence[float] = DEFAULT_BETAS, diagnostics: bool = True) -> TheoryCurves:
    """:func:`theory_curves` on a stored run's snapshot (``tau`` defaults to the run's own)."""
    z1, z2, y, _ = snapshot_arrays(run, epoch)
    return theory_curves(z1, z2, y, tau=run.config.tau if tau is None else tau, betas=betas,
                         diagnostics=diagnostics)


@dataclass(frozen=True)
class NegativesCurves:
    """H-SCL (both variants) and H-UCL at one beta against the batch size, i.e. the number of negatives.

    Attributes:
        sizes: ``(S,)`` samples per sub-batch N (each anchor has 2N - 2 negatives).
        h_scl_mean, h_scl_std, h_ucl_mean, h_ucl_std: ``(S,)`` over the random sub-batches (H-SCL:
            every same-class view a positive).
        gap_mean, gap_std: ``(S,)`` H-UCL − H-SCL over the same sub-batches.
        holds_share: ``(S,)`` share of sub-batches where H-SCL <= H-UCL.
        partner_gap_mean, partner_gap_std, partner_holds_share: ``(S,)`` the same for the
            partner-only H-SCL (the authors' check).
        beta, tau: the hardness and temperature used.
    """

    sizes: np.ndarray
    h_scl_mean: np.ndarray
    h_scl_std: np.ndarray
    h_ucl_mean: np.ndarray
    h_ucl_std: np.ndarray
    gap_mean: np.ndarray
    gap_std: np.ndarray
    holds_share: np.ndarray
    partner_gap_mean: np.ndarray
    partner_gap_std: np.ndarray
    partner_holds_share: np.ndarray
    beta: float
    tau: float


def negatives_curves(z1: Any, z2: Any, labels: Any, *, beta: float, tau: float,
                     sizes: Sequence[int] = (16, 32, 64, 128, 256), draws: int = 8,
                     seed: int = 0) -> NegativesCurves:
    """H-SCL (both variants) and H-UCL on random sub-batches of ``sizes`` samples (``draws`` each).

    The bound is proved for infinitely many negatives; this shows how far a finite batch is
    from that regime. Sizes above N are dropped; a sub-batch with a single class is redrawn
    (up to 20 times, then skipped). The full batch (size N) is evaluated once.
    """
    z1, z2, y = _as_views(z1, z2, labels)
    n = z1.shape[0]
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    sizes = sorted({int(s) for s in sizes if 2 <= int(s) <= n})
    if not sizes:
        raise ValueError(f"no usable size: sizes must lie in [2, N = {n}]")
    gen = torch.Generator().manual_seed(seed)
    used, stats = [], []
    for size in sizes:
        scl, part, ucl = [], [], []
        for _ in range(1 if size == n else draws):
            idx = _two_class_subset(y, size, gen)
            if idx is None:
                continue
            with torch.no_grad(), limited_threads():
                scl.append(float(hard_supcon(z1[idx], z2[idx], y[idx], tau=tau, beta=beta)))
                part.append(float(hard_supcon(z1[idx], z2[idx], y[idx], tau=tau, beta=beta, positives="partner")))
                ucl.append(float(h_ucl(z1[idx], z2[idx], tau=tau, beta=beta)))
        if scl:
            a, p, b = np.array(scl), np.array(part), np.array(ucl)
            used.append(size)
            stats.append((a.mean(), a.std(), b.mean(), b.std(), (b - a).mean(), (b - a).std(),
                          float(np.mean(a <= b + ATOL)), (b - p).mean(), (b - p).std(), float(np.mean(p <= b + ATOL))))
    cols = np.array(stats, dtype=float).reshape(len(stats), 10).T
    return NegativesCurves(np.array(used), *cols, beta=float(beta), tau=float(tau))


def _two_class_subset(y: torch.Tensor, size: int, gen: torch.Generator, tries: int = 20) -> torch.Tensor | None:
    """Random indices of ``size`` samples holding at least two classes (None after ``tries`` misses)."""
    for _ in range(tries):
        idx = torch.randperm(len(y), generator=gen)[:size]
        if len(torch.unique(y[idx])) >= 2:
            return idx
    return None


def _fmt_ranges(segments: list[tuple[float, float, bool]], want: bool) -> str:
    parts = [f"β = {a:.2g}" if math.isclose(a, b) else f"{a:.2g} ≤ β ≤ {b:.2g}" for a, b, h in segments if h == want]
    return ", ".join(parts)


def _verdict(c: TheoryCurves) -> str:
    holds = c.holds
    k, total = int(holds.sum()), len(holds)
    if k == total:
        return f"**H-SCL ≤ H-UCL holds at every β tried** ({c.betas[0]:g} to {c.betas[-1]:g})"
    if k == 0:
        return (f"**H-SCL ≤ H-UCL fails at every β tried** ({c.betas[0]:g} to {c.betas[-1]:g}): "
                "H-SCL is the larger loss throughout")
    return (f"**H-SCL ≤ H-UCL holds for {_fmt_ranges(c.segments(), True)}** ({k} of {total} values) "
            f"and fails for {_fmt_ranges(c.segments(), False)}")


def describe(c: TheoryCurves) -> str:
    """A plain-language reading of the curves of ``c``'s H-SCL variant (Markdown), for the page and reports."""
    lines = [f"With τ = {c.tau:g}, {c.n} samples of {c.classes} classes and {c.negatives} negatives per anchor, "
             f"{c.label}:", _verdict(c) + "."]
    share0, share1 = c.same_class_share[0], c.same_class_share[-1]
    why = "Why: H-UCL counts same-class views as negatives"
    if np.isfinite(share0):
        why += (f"; they carry {share0:.0%} of its negative term at β = {c.betas[0]:g} and {share1:.0%} at "
                f"β = {c.betas[-1]:g}")
    why += " (hardness pushes weight onto these false negatives, which raises H-UCL)."
    if c.positives == "all":
        why += (" This H-SCL also treats every same-class view as a positive, and here augmentation partners are "
                f"{c.positive_gap:+.2f} (in units of 1/τ) more similar than other same-class pairs: a positive "
                "number raises H-SCL above a loss whose only positive is the partner.")
    else:
        why += (" This H-SCL has H-UCL's positive (the partner), so only the negatives differ: the bound holds "
                "where the same-class views are, in the tilted mean, more similar to the anchor than the "
                "other-class ones.")
    lines.append(why)
    below = c.ucl_below_h_scl
    if below.all():
        lines.append(f"UCL = {c.ucl:.3f} is below H-SCL at every β: a small UCL loss does not bound H-SCL.")
    elif below.any():
        first = float(c.betas[np.argmax(below)])
        lines.append(f"UCL = {c.ucl:.3f} is below H-SCL from β = {first:g} on.")
    else:
        lines.append(f"UCL = {c.ucl:.3f} stays above H-SCL at every β tried.")
    return "\n\n".join(lines)


def compare_variants(c: TheoryCurves) -> str:
    """One paragraph (Markdown) setting the two H-SCL variants' verdicts side by side."""
    a, p = c.variant("all"), c.variant("partner")
    ka, kp, total = int(a.holds.sum()), int(p.holds.sum()), len(c.betas)
    text = (f"The bound holds at {kp} of {total} β values with the authors' own check (partner only) and at "
            f"{ka} of {total} with every same-class view a positive. ")
    if kp > ka:
        text += ("The difference is one of definition, not of the embedding: the training code's H-SCL adds "
                 "every same-class pair as a positive, and those pairs are less similar than augmentation "
                 f"partners (by {c.positive_gap:+.2f} in units of 1/τ), which raises that loss.")
    elif kp == ka:
        text += "Here the choice of positives does not change the verdict."
    else:
        text += ("Here the all-positives H-SCL fares better: other same-class pairs are at least as similar as "
                 "the augmentation partners.")
    return text


def verdict_table(curves: Mapping[str, Sequence[TheoryCurves]], *, at_beta: float = 1.0) -> str:
    """A Markdown table: per group of runs (e.g. ``"HCL, β = 1"``), in how many the bound holds at each
    beta for each H-SCL variant, and the mean margins at ``at_beta``.

    ``curves``: group label -> the curves of its runs (same beta grid, which must hold ``at_beta``).
    """
    groups = [(k, list(v)) for k, v in curves.items() if len(v)]
    if not groups:
        raise ValueError("no curves to tabulate")
    betas = groups[0][1][0].betas
    k1 = int(np.flatnonzero(np.isclose(betas, at_beta))[0])
    head = ["trained with", *(f"β={b:g}: partner / all" for b in betas),
            f"margin at β={at_beta:g}: partner", "all", "partner − same-class s"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for label, cs in groups:
        n = len(cs)
        cells = [label]
        for k in range(len(betas)):
            cells.append(f"{sum(bool(c.variant('partner').holds[k]) for c in cs)}/{n} / "
                         f"{sum(bool(c.variant('all').holds[k]) for c in cs)}/{n}")
        cells.append(f"{np.mean([c.variant('partner').gap[k1] for c in cs]):+.3f}")
        cells.append(f"{np.mean([c.variant('all').gap[k1] for c in cs]):+.3f}")
        cells.append(f"{np.mean([c.positive_gap for c in cs]):+.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
