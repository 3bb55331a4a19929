"""The Negatives page's numbers and figures (hcl_core.plots.negatives), on synthetic batches."""

from __future__ import annotations

import numpy as np
import pytest

import hcl_core.plots.negatives as neg
from hcl_core.registry import LOSSES

N, D, K = 60, 16, 5  # samples, dimensions, classes: 120 anchors, 118 candidates each


@pytest.fixture(scope="module")
def clustered():
    """Two views of N samples around K class centres: same-class views are the most similar ones."""
    g = np.random.default_rng(0)
    labels = np.arange(N) % K
    centres = g.normal(size=(K, D))
    base = centres[labels] + 0.6 * g.normal(size=(N, D))
    return base + 0.2 * g.normal(size=(N, D)), base + 0.2 * g.normal(size=(N, D)), labels


def test_weight_stats_counts_every_pair_and_splits_by_class(clustered):
    z1, z2, labels = clustered
    s = neg.weight_stats(z1, z2, labels, loss="hcl", tau=0.5, beta=1.0)
    n = 2 * N - 2
    same_per_anchor = 2 * (N // K) - 2  # both views of the other samples of its class
    assert s.n_candidates == n
    assert s.counts_same.sum() == 2 * N * same_per_anchor
    assert s.counts_other.sum() == 2 * N * (n - same_per_anchor)
    assert s.same_share == pytest.approx(same_per_anchor / n)
    assert s.edges[0] == neg.LOG_FLOOR and s.edges[-1] >= np.log10(n)
    assert 0 < s.same_mass < 1 and 1 <= s.n_eff <= n


def test_identical_views_give_uniform_weights():
    z = np.ones((N, D))
    labels = np.arange(N) % K
    s = neg.weight_stats(z, z, labels, loss="info_nce", tau=0.5)
    assert s.n_eff == pytest.approx(2 * N - 2, rel=1e-4)
    assert s.same_mass == pytest.approx(s.same_share, rel=1e-4)
    centres = (s.edges[:-1] + s.edges[1:]) / 2
    assert abs(centres[np.argmax(s.counts_other)]) < neg.BIN_WIDTH  # all at n * w = 1


def test_hard_supcon_puts_no_weight_on_its_own_class(clustered):
    z1, z2, labels = clustered
    s = neg.weight_stats(z1, z2, labels, loss="hard_supcon", tau=0.5, beta=3.0)
    assert s.same_mass == 0 and s.zero_same == s.counts_same.sum() > 0
    mass, n_eff = neg.beta_sweep(z1, z2, labels, loss="hard_supcon", tau=0.5)
    assert mass.shape == n_eff.shape == neg.BETA_GRID.shape and not mass.any()


def test_beta_is_ignored_by_losses_without_it(clustered):
    z1, z2, labels = clustered
    a = neg.weight_stats(z1, z2, labels, loss="supcon", tau=0.5, beta=7.0)
    b = neg.weight_stats(z1, z2, labels, loss="supcon", tau=0.5, beta=0.0)
    assert a.beta == 0 and a.same_mass == b.same_mass and np.array_equal(a.counts_same, b.counts_same)
    mass, _ = neg.beta_sweep(z1, z2, labels, loss="info_nce", tau=0.5)
    assert np.ptp(mass) == 0


def test_hcl_tilt_moves_weight_to_false_negatives(clustered):
    z1, z2, labels = clustered
    mass, n_eff = neg.beta_sweep(z1, z2, labels, loss="hcl", tau=0.5, betas=[0.0, 1.0, 3.0, 10.0])
    base = neg.weight_stats(z1, z2, labels, loss="info_nce", tau=0.5)
    assert mass[0] == pytest.approx(base.same_mass, abs=1e-6)  # β = 0 is InfoNCE's weighting
    assert np.all(np.diff(mass) > 0) and np.all(np.diff(n_eff) < 0)


def test_histogram_figure_panels_legend_and_hscl_note(clustered):
    z1, z2, labels = clustered
    stats = [neg.weight_stats(z1, z2, labels, loss=loss, tau=0.5, beta=2.0) for loss in LOSSES]
    fig = neg.weight_histogram_figure(stats)
    titles = [a.text for a in fig.layout.annotations if a.xref == "paper"]
    assert len(titles) == 6 and titles[2].startswith("<b>HCL</b> · β=2") and "same-class" in titles[2]
    names = [(t.name, t.showlegend) for t in fig.data]
    assert names.count(("other class (true negatives)", True)) == 1
    assert names.count(("same class (false negatives)", True)) == 1
    assert len(fig.data) == 11  # 6 other-class + 5 same-class bars: H-SCL has none to draw
    assert any("weight 0" in (a.text or "") for a in fig.layout.annotations)
    low, high = neg.x_range(stats)
    assert fig.layout.xaxis.range == (low, high) and neg.LOG_FLOOR <= low < 0 < high
    assert "1" in fig.layout.xaxis.ticktext
    with pytest.raises(ValueError):
        neg.weight_histogram_figure([])


def test_beta_sweep_figure_lines_markers_and_references():
    betas = neg.BETA_GRID
    mass = {"info_nce": np.full(len(betas), 0.2), "hcl": np.linspace(0.2, 0.6, len(betas))}
    n_eff = {"info_nce": np.full(len(betas), 100.0), "hcl": np.linspace(100, 10, len(betas))}
    fig = neg.beta_sweep_figure(betas, mass, n_eff, preview_beta=2.5, same_share=0.1, n_candidates=118)
    assert [(t.name, t.showlegend, t.xaxis) for t in fig.data] == [
        ("UCL / SimCLR (no β)", True, "x"), ("HCL", True, "x"), ("UCL / SimCLR (no β)", False, "x2"),
        ("HCL", False, "x2")]
    assert fig.data[0].line.dash == "dash" and fig.data[1].line.dash == "solid"
    assert fig.layout.yaxis2.type == "log" and fig.layout.yaxis.tickformat == ".0%"
    assert sum(1 for s in fig.layout.shapes if s.x0 == 2.5) == 2  # the preview marker in both panels
    assert {s.y0 for s in fig.layout.shapes if s.y0 == s.y1} == {0.1, 118}
    assert "cos/τ" in fig.layout.xaxis.title.text
