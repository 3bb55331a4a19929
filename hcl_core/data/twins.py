"""``twins``: a synthetic task built around the mechanism hard negative sampling claims to use.

Generative story. Classes come in pairs of near-twins, and the pairs lie far apart:

* ``G = ceil(C / 2)`` group centres ``c_g``, random directions of norm :data:`TWINS_RADIUS` in
  the :data:`TWINS_SIGNAL_DIM` signal coordinates (random directions in 16 dimensions are nearly
  orthogonal, so two groups are about ``sqrt(2) * radius`` apart: the easy negatives);
* class ``k`` of group ``g = k // 2`` has the mean ``mu_k = c_g -/+ (gap / 2) u_g``, with ``u_g`` a
  unit vector orthogonal to ``c_g``: the twins of a pair differ by ``gap`` along ``u_g`` alone
  (the hard negatives); with an odd ``C`` the last group holds one class, at ``c_g``;
* a sample of class ``k`` is ``x = [p (mu_k + sigma_w e) ; sigma_n n]`` with ``e ~ N(0, I_16)``,
  ``n ~ N(0, I_48)`` and a polarity ``p = +-1`` (a fair coin): a small within-class spread in
  the signal coordinates, seen with either sign (a sensor wired either way round), and
  :data:`TWINS_NUISANCE_DIM` nuisance coordinates of large variance that carry no class at all.

The nuisance holds most of the norm, so raw cosine distances (kNN) mostly see noise; the polarity
makes every class's mean zero, so no linear read-out of the raw vectors finds the classes either
(without it, a linear probe on all labels would simply learn to ignore the nuisance coordinates).
The two views of a sample (``augmentation="twins"``) keep its signal up to a small jitter and
redraw its polarity and nuisance, so an encoder that learns their invariance drops both; whether
it then also resolves the twins is what the hard negatives are for.

All draws come from fixed seeds, and the noise does not depend on the gap, so moving the gap
only moves the class means: the same points drift apart or together.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Parts

__all__ = ["TWINS_NUISANCE_DIM", "TWINS_NUISANCE_STD", "TWINS_RADIUS", "TWINS_SIGNAL_DIM", "TWINS_SPREAD",
           "TWINS_TEST", "TWINS_TRAIN", "load_twins", "twins_class_names", "twins_means"]

TWINS_SIGNAL_DIM = 16
TWINS_NUISANCE_DIM = 48
#: Norm of a group centre.
TWINS_RADIUS = 1.0
#: sigma_w: within-class standard deviation of each signal coordinate.
TWINS_SPREAD = 0.1
#: sigma_n: standard deviation of each nuisance coordinate.
TWINS_NUISANCE_STD = 0.5
TWINS_TRAIN = 2000
TWINS_TEST = 1000
_SEED = 20250113


def twins_class_names(classes: int) -> tuple[str, ...]:
    """``0a, 0b, 1a, 1b, ...``: the number names the pair, the letter the twin."""
    return tuple(f"{k // 2}{'ab'[k % 2]}" for k in range(classes))


def twins_means(gap: float, classes: int) -> torch.Tensor:
    """``(C, 16)`` class means ``mu_k = c_g -/+ (gap / 2) u_g`` (module docstring)."""
    g = torch.Generator().manual_seed(_SEED)
    groups = math.ceil(classes / 2)
    centres = F.normalize(torch.randn(groups, TWINS_SIGNAL_DIM, generator=g), dim=1)
    u = torch.randn(groups, TWINS_SIGNAL_DIM, generator=g)
    u = F.normalize(u - (u * centres).sum(1, keepdim=True) * centres, dim=1)  # orthogonal to its centre
    k = torch.arange(classes)
    sign = torch.where(k % 2 == 0, -1.0, 1.0)
    if classes % 2:
        sign[-1] = 0.0  # a group of one class sits at its centre
    return TWINS_RADIUS * centres[k // 2] + (sign * gap / 2)[:, None] * u[k // 2]


def load_twins(gap: float, classes: int) -> Parts:
    """``(N, 64)`` float32 vectors (16 signal, then 48 nuisance coordinates), ``C`` balanced classes."""
    means = twins_means(gap, classes)
    g = torch.Generator().manual_seed(_SEED + 1)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = (torch.arange(n) % classes)[torch.randperm(n, generator=g)]
        signal = means[y] + TWINS_SPREAD * torch.randn(n, TWINS_SIGNAL_DIM, generator=g)
        polarity = torch.randint(0, 2, (n, 1), generator=g) * 2.0 - 1.0
        signal = polarity * signal
        nuisance = TWINS_NUISANCE_STD * torch.randn(n, TWINS_NUISANCE_DIM, generator=g)
        return torch.cat([signal, nuisance], dim=1), y

    train_x, train_y = sample(TWINS_TRAIN)
    test_x, test_y = sample(TWINS_TEST)
    return train_x, train_y, test_x, test_y, twins_class_names(classes)
