"""The Negatives page's numbers (hcl_core.analysis.negatives), on synthetic batches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import hcl_core.analysis.negatives as an
from hcl_core.losses import negative_weights

N, D, K = 60, 16, 5  # samples, dimensions, classes: 120 anchors, 118 candidates each


@pytest.fixture(scope="module")
def clustered():
    """Two views of N samples around K class centres: same-class views are the most similar ones."""
    g = np.random.default_rng(0)
    labels = np.arange(N) % K
    centres = g.normal(size=(K, D))
    base = centres[labels] + 0.6 * g.normal(size=(N, D))
    return base + 0.2 * g.normal(size=(N, D)), base + 0.2 * g.normal(size=(N, D)), labels


def total(h: an.Histogram) -> int:
    return int(h.counts.sum()) + h.below + h.zero


def test_every_pair_is_counted_once_in_every_view(clustered):
    z1, z2, labels = clustered
    s = an.negative_stats(z1, z2, labels, loss="hcl", tau=0.5, beta=1.0, tau_plus=0.1)
    n = 2 * N - 2
    same_per_anchor = 2 * (N // K) - 2  # both views of the other samples of its class
    assert s.n_candidates == n
    for view in an.VIEWS:
        other, same = s.views[view]["other"], s.views[view]["same"]
        assert total(other) == other.total == 2 * N * (n - same_per_anchor)
        assert total(same) == same.total == 2 * N * same_per_anchor
    assert s.same_share == pytest.approx(same_per_anchor / n)
    assert 0 < s.same_mass < 1 and 1 <= s.n_eff <= n


def test_histograms_bin_the_values_of_negative_weights(clustered):
    """Bin by bin, against np.histogram of the library's own numbers in the documented units."""
    z1, z2, labels = clustered
    s = an.negative_stats(z1, z2, labels, loss="hard_supcon", tau=0.5, beta=2.0)
    nw = negative_weights(torch.tensor(z1).float(), torch.tensor(z2).float(), torch.tensor(labels),
                          loss="hard_supcon", tau=0.5, beta=2.0)
    other = (nw.candidates & ~nw.same_class).numpy()
    omega = nw.importance.double().numpy()[other]
    h = s.views["importance"]["other"]
    expected = np.histogram(np.clip(np.log10(omega[omega >= 1e-4]), h.edges[0], h.edges[-1] - 1e-9), bins=h.edges)[0]
    assert np.abs(h.counts - expected).sum() <= 2  # a value on an edge may land on either side
    assert h.below == int(((omega > 0) & (omega < 1e-4)).sum())
    grad = 2 * N * (2 * N - 2) * nw.gradient.double().numpy()
    g = s.views["gradient"]["other"]
    assert g.counts[: len(g.counts) // 2].sum() == int((grad[other] < -1e-4).sum())  # left half: pulled
    assert s.pulled == pytest.approx(float((grad[other] < 0).mean()))
    assert g.edges[0] == -g.edges[-1]  # symmetric around 0


def test_identical_views_give_uniform_weights_and_no_pull():
    z = np.ones((N, D))
    labels = np.arange(N) % K
    for loss in ("info_nce", "hcl"):
        s = an.negative_stats(z, z, labels, loss=loss, tau=0.5, beta=3.0)
        assert s.n_eff == pytest.approx(2 * N - 2, rel=1e-4)
        assert s.same_mass == pytest.approx(s.same_share, rel=1e-4)
        assert s.pulled == 0 and s.pulled_same == 0
        for view in ("importance", "share"):
            h = s.views[view]["other"]
            centres = (h.edges[:-1] + h.edges[1:]) / 2
            assert abs(centres[np.argmax(h.counts)]) < an.BIN_WIDTH  # all at 1


def test_hard_supcon_has_no_same_class_negatives_and_pulls_its_positives(clustered):
    z1, z2, labels = clustered
    s = an.negative_stats(z1, z2, labels, loss="hard_supcon", tau=0.5, beta=3.0)
    assert s.same_mass == 0 and math.isnan(s.same_importance)
    assert s.views["importance"]["same"].total == 0 and s.views["share"]["same"].total == 0
    assert s.views["gradient"]["same"].total > 0 and s.pulled_same == 1.0
    curves = an.beta_sweep(z1, z2, labels, loss="hard_supcon", tau=0.5)
    assert curves.same_mass.shape == curves.n_eff.shape == curves.pulled.shape == an.BETA_GRID.shape
    assert not curves.same_mass.any()


def test_beta_and_detach_are_ignored_by_losses_without_them(clustered):
    z1, z2, labels = clustered
    a = an.negative_stats(z1, z2, labels, loss="supcon", tau=0.5, beta=7.0, detach=True)
    b = an.negative_stats(z1, z2, labels, loss="supcon", tau=0.5, beta=0.0)
    assert (a.beta, a.detach) == (0.0, False) and a.same_mass == b.same_mass and a.pulled == b.pulled
    assert np.array_equal(a.views["gradient"]["same"].counts, b.views["gradient"]["same"].counts)
    curves = an.beta_sweep(z1, z2, labels, loss="info_nce", tau=0.5)
    assert np.ptp(curves.same_mass) == 0 and np.ptp(curves.pulled) == 0


def test_axes_depend_on_the_batch_size_only(clustered):
    z1, z2, labels = clustered
    for view in an.VIEWS:
        edges = {tuple(an.negative_stats(z1, z2, labels, loss=loss, tau=tau, beta=beta).views[view]["other"].edges)
                 for loss, tau, beta in (("hcl", 0.5, 0.0), ("hcl", 0.2, 10.0), ("info_nce", 0.5, 0.0))}
        assert len(edges) == 1
    assert an.view_top("gradient", 118) > an.view_top("share", 118) == an.view_top("importance", 118)


def test_hcl_tilt_moves_share_to_false_negatives_and_pulls_more_with_beta(clustered):
    z1, z2, labels = clustered
    curves = an.beta_sweep(z1, z2, labels, loss="hcl", tau=0.5, betas=[0.0, 1.0, 3.0, 10.0], tau_plus=0.0)
    base = an.negative_stats(z1, z2, labels, loss="info_nce", tau=0.5)
    assert curves.same_mass[0] == pytest.approx(base.same_mass, abs=1e-6)  # β = 0 is InfoNCE's weighting
    assert np.all(np.diff(curves.same_mass) > 0) and np.all(np.diff(curves.n_eff) < 0)
    assert curves.pulled[0] == 0 and np.all(np.diff(curves.pulled) > 0) and curves.pulled[-1] > 0.5
    detached = an.beta_sweep(z1, z2, labels, loss="hcl", tau=0.5, betas=[1.0, 10.0], tau_plus=0.0, detach=True)
    assert not detached.pulled.any()


def test_the_clamp_zeroes_are_counted_not_drawn():
    g = np.random.default_rng(1)
    z1 = g.normal(size=(N, D))
    z2 = z1 + 0.01 * g.normal(size=(N, D))  # partners almost identical: the clamp binds with a large prior
    s = an.negative_stats(z1, z2, np.arange(N) % K, loss="hcl", tau=0.2, beta=1.0, tau_plus=0.9)
    h = s.views["gradient"]["other"]
    assert h.zero > 0 and total(h) == h.total
