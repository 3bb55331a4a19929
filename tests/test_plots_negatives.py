"""The Negatives page's figures (hcl_core.plots.negatives), from real binned statistics."""

from __future__ import annotations

import numpy as np
import pytest

import hcl_core.analysis.negatives as an
import hcl_core.plots.negatives as neg
from hcl_core.registry import LOSSES

N, D, K = 60, 16, 5


@pytest.fixture(scope="module")
def clustered():
    g = np.random.default_rng(0)
    labels = np.arange(N) % K
    centres = g.normal(size=(K, D))
    base = centres[labels] + 0.6 * g.normal(size=(N, D))
    return base + 0.2 * g.normal(size=(N, D)), base + 0.2 * g.normal(size=(N, D)), labels


def all_stats(clustered, beta: float) -> list:
    z1, z2, labels = clustered
    return [an.negative_stats(z1, z2, labels, loss=loss, tau=0.5, beta=beta, tau_plus=0.1) for loss in LOSSES]


def titles(fig) -> list[str]:
    return [a.text for a in fig.layout.annotations if a.xref == "paper"]


@pytest.mark.parametrize("view", an.VIEWS)
def test_each_view_has_a_panel_per_loss_and_states_its_formula(clustered, view):
    stats = all_stats(clustered, 2.0)
    fig = neg.negatives_figure(stats, view)
    assert len(titles(fig)) == 6 and titles(fig)[2].startswith("<b>HCL</b> · β=2")
    names = [(t.name, t.showlegend) for t in fig.data]
    assert names.count(("other class (true negatives)", True)) == 1
    assert names.count(("same class (false negatives)", True)) == 1
    layout = fig.layout.to_plotly_json()
    x_titles = {v["title"]["text"] for k, v in layout.items() if k.startswith("xaxis") and "title" in v}
    assert x_titles == {neg._short_axis(view)}
    formula = {"importance": "e^(β·s", "share": "e^((1+β)", "gradient": "∂L/∂s"}[view]
    assert formula in neg.VIEW_AXIS[view] and formula in neg._short_axis(view)
    # y: the same fixed log range everywhere, x: the view's fixed range
    assert {tuple(fig.layout[f"yaxis{neg._axis(i)}"].range) for i in range(6)} == {(-2.0, 2.0)}
    edges = stats[0].views[view]["other"].edges
    assert {tuple(fig.layout[f"xaxis{neg._axis(i)}"].range) for i in range(6)} == {(edges[0], edges[-1])}


def test_importance_and_share_show_hscl_same_class_as_not_negatives(clustered):
    stats = all_stats(clustered, 2.0)
    for view in ("importance", "share"):
        fig = neg.negatives_figure(stats, view)
        assert len(fig.data) == 11  # 6 other-class + 5 same-class groups: H-SCL has no same-class negatives
        assert any("not negatives" in (a.text or "") for a in fig.layout.annotations)
    grad = neg.negatives_figure(stats, "gradient")
    assert len(grad.data) == 12  # every loss does something to its same-class candidates
    assert "pulled closer" in titles(grad)[5] and "same-class" in titles(grad)[5]


def test_losses_without_beta_do_not_move_when_beta_moves(clustered):
    a, b = all_stats(clustered, 0.5), all_stats(clustered, 8.0)
    for view in an.VIEWS:
        fa, fb = neg.negatives_figure(a, view), neg.negatives_figure(b, view)
        for i, loss in enumerate(LOSSES):
            same_axes = fa.layout[f"xaxis{neg._axis(i)}"].range == fb.layout[f"xaxis{neg._axis(i)}"].range
            assert same_axes
            bars_a = [list(t.y) for t in fa.data if t.xaxis == f"x{neg._axis(i)}"]
            bars_b = [list(t.y) for t in fb.data if t.xaxis == f"x{neg._axis(i)}"]
            assert (bars_a == bars_b) == (not LOSSES[loss].tilts), (view, loss)


def test_small_values_are_a_note_not_a_spike(clustered):
    z1, z2, labels = clustered
    s = an.negative_stats(z1, z2, labels, loss="hcl", tau=0.1, beta=10.0)
    h = s.views["importance"]["other"]
    assert h.below > 0.2 * h.total  # at β = 10 most weights are tiny ...
    fig = neg.negatives_figure([s], "importance")
    bars = [t for t in fig.data if t.name.startswith("other")][0]
    # ... and they are left out of the bars (which sum to the drawn share only), not piled into the first bin
    assert sum(bars.y) == pytest.approx(100 * h.counts.sum() / h.total)
    assert bars.y[0] < 10
    assert any("not drawn" in (a.text or "") and "below 10⁻⁴" in a.text for a in fig.layout.annotations)


def test_bad_arguments():
    with pytest.raises(ValueError, match="view"):
        neg.negatives_figure([], "weights")
    with pytest.raises(ValueError, match="at least one"):
        neg.negatives_figure([], "share")


def test_beta_sweep_figure_lines_markers_and_references():
    betas = an.BETA_GRID
    flat = an.SweepCurves(betas, np.full(len(betas), 0.2), np.full(len(betas), 100.0), np.zeros(len(betas)))
    tilted = an.SweepCurves(betas, np.linspace(0.2, 0.6, len(betas)), np.linspace(100, 10, len(betas)),
                            np.linspace(0, 0.9, len(betas)))
    fig = neg.beta_sweep_figure({"info_nce": flat, "hcl": tilted}, preview_beta=2.5, same_share=0.1, n_candidates=118)
    assert [(t.name, t.showlegend, t.xaxis) for t in fig.data] == [
        ("UCL / SimCLR (no β)", True, "x"), ("HCL", True, "x"), ("UCL / SimCLR (no β)", False, "x2"),
        ("HCL", False, "x2"), ("UCL / SimCLR (no β)", False, "x3"), ("HCL", False, "x3")]
    assert fig.data[0].line.dash == "dash" and fig.data[1].line.dash == "solid"
    assert list(fig.data[5].y) == pytest.approx(tilted.pulled.tolist())
    assert fig.layout.yaxis2.type == "log" and fig.layout.yaxis.tickformat == ".0%"
    assert tuple(fig.layout.yaxis3.range) == (0, 1.02)
    assert sum(1 for s in fig.layout.shapes if s.x0 == 2.5) == 3  # the preview marker in every panel
    assert {s.y0 for s in fig.layout.shapes if s.y0 == s.y1} == {0.1, 118}
    assert "cos/τ" in fig.layout.xaxis.title.text
