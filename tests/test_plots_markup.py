"""Plotly figures drawn as markup (``hcl_core.plots.markup``): the same points, lines and labels."""

from __future__ import annotations

import re

import numpy as np
import plotly.graph_objects as go
import pytest
from chart_markup import ChartMarkup, paths

from hcl_core.plots import styled
from hcl_core.plots.live import VIEW
from hcl_core.plots.markup import figure_html
from hcl_core.plots.training import Series, clamp_figure, geometry_figure, loss_figure, probe_figure

EVALS = [{"epoch": e, "knn_acc": 0.5 + 0.04 * e / 5, "linear_probe_acc": 0.6 + 0.03 * e / 5,
          "few_shot_probe_acc": 0.4 + 0.05 * e / 5, "alignment": 1.0 - 0.02 * e, "uniformity": -1.0 - 0.1 * e,
          "clamp_share": 0.01 * e} for e in range(0, 35, 5)]
BASELINE = {"raw": {"knn_acc": 0.65, "linear_probe_acc": 0.8, "few_shot_probe_acc": 0.55},
            "random_init": {"knn_acc": 0.5, "linear_probe_acc": 0.6, "few_shot_probe_acc": 0.4}}


def test_the_probe_chart_draws_each_curve_at_its_values_with_the_baselines_and_their_labels():
    fig = probe_figure(EVALS, BASELINE)
    m = ChartMarkup(figure_html(fig))
    assert m.outer["data-chart"].startswith("Probe accuracy") and m.outer["data-points"] == str(3 * len(EVALS))
    (svg,) = m.svgs
    low, high = fig.layout.yaxis.range
    lines = paths(svg, "hcl-line")
    assert len(lines) == 3
    for trace, line in zip(fig.data, lines, strict=True):
        assert np.allclose(line[:, 1], (high - np.array(trace.y)) / (high - low) * VIEW, atol=0.06)
        assert np.all(np.diff(line[:, 0]) > 0) and np.allclose(np.diff(line[:, 0]), np.diff(line[:, 0])[0], atol=0.2)
    dots = paths(svg, "hcl-dots")
    assert [len(d) for d in dots] == [len(EVALS)] * 3  # lines and markers
    hlines = re.findall(r"class='hcl-hline' d='M0 ([\d.]+)H", svg)
    assert sorted(round(float(v), 1) for v in hlines) == sorted(
        round((high - v) / (high - low) * VIEW, 1) for kind in ("raw", "random_init") for v in BASELINE[kind].values())
    # Plotly's patterns (dots of 3 px, dashes of 9 px at these widths), less what the round caps add.
    assert svg.count("stroke-dasharray='1.5 4.5'") == 3 and svg.count("stroke-dasharray='8 10'") == 3
    for v in BASELINE["raw"].values():
        assert f"raw pixels {v:.3f}" in m.texts
    for name in ("few-shot probe (10 labels/class)", "kNN (k=200)", "linear probe (all labels)"):
        assert name in m.texts  # the legend
    assert "test accuracy" in m.texts and "epoch" in m.texts


def test_subplots_sit_side_by_side_with_their_titles_and_own_axes():
    fig = geometry_figure(EVALS)
    m = ChartMarkup(figure_html(fig))
    assert len(m.svgs) == 2 and len(m.panels) == 2
    assert "left:0.00%;width:42.00%" in m.panels[0] and "left:58.00%;width:42.00%" in m.panels[1]
    assert "alignment (positives closer ↓)" in m.texts and "uniformity (more spread ↓)" in m.texts
    for svg, key in zip(m.svgs, ("alignment", "uniformity"), strict=True):
        (line,) = paths(svg, "hcl-line")
        ys = np.array([e[key] for e in EVALS])
        # its own range, padded: the ends of the line sit inside the panel, in order
        assert np.all((line[:, 1] > 0) & (line[:, 1] < VIEW))
        assert np.array_equal(np.argsort(line[:, 1]), np.argsort(-ys))


def test_bars_share_ticks_and_the_message_of_an_empty_chart():
    m = ChartMarkup(figure_html(clamp_figure(EVALS)))
    (svg,) = m.svgs
    bars = re.search(r"class='hcl-bars' d='([^']*)'", svg).group(1)
    assert bars.count("Z") == len(EVALS)
    assert {"0%", "10%", "20%", "30%"} <= set(m.texts)
    zero = ChartMarkup(figure_html(clamp_figure([{**e, "clamp_share": 0.0} for e in EVALS])))
    assert "0 % at every evaluation: every anchor's negatives give gradient" in zero.texts


def test_the_live_loss_figure_keeps_its_faint_raw_line_and_gaps_at_missing_values():
    x = np.arange(1, 301)
    y = 5.0 - x / 300 + 0.05 * np.sin(x)
    m = ChartMarkup(figure_html(loss_figure([Series("HCL", x, y, "#D55E00"), Series("SimCLR", x, y - 0.5, "#0072B2")])))
    (svg,) = m.svgs
    assert svg.count("stroke-opacity='0.25'") == 2 and len(paths(svg, "hcl-line")) == 4
    gap = go.Figure(go.Scatter(x=[0, 1, 2, 3], y=[1.0, None, 2.0, 3.0], mode="lines"))
    d = re.search(r"class='hcl-line' d='([^']*)'", ChartMarkup(figure_html(gap)).svgs[0]).group(1)
    assert d.count("M") == 2 and d.count("L") == 1  # broken at None


def test_text_is_escaped_and_unsupported_figures_raise_instead_of_drawing_wrong():
    fig = styled(go.Figure(go.Scatter(x=[0, 1], y=[0, 1], name="<img src=x onerror=alert(1)>")),
                 title="<script>alert(1)</script> <b>bold</b>")
    markup = figure_html(fig)
    assert "<script>" not in markup and "<img src=x" not in markup and "&lt;img src=x" in markup
    assert "bold" in ChartMarkup(markup).texts[0] and "<b>" not in markup  # Plotly's own tags are dropped
    note = figure_html(go.Figure(go.Scatter(x=[0, 1], y=[0, 1])).add_annotation(
        x=0.5, y=1, xref="paper", yref="paper", showarrow=False,
        text="<script>alert(1)</script><b>one</b><br><span style='color:red;font-size:9px' onclick=x>two</span>"))
    assert "<script>" not in note and "onclick" not in note and "color:red" not in note
    assert '<b>one</b><br><span style="font-size:9px">two</span>' in note  # the tags a note may keep
    inequality = figure_html(styled(go.Figure(go.Scatter(x=[0, 1], y=[0, 1])), title="τ < 0.5 and β > 1"))
    assert ChartMarkup(inequality).outer["data-chart"] == "τ < 0.5 and β > 1"  # not a tag: kept, escaped
    with pytest.raises(ValueError, match="heatmap"):
        figure_html(go.Figure(go.Heatmap(z=[[1, 2], [3, 4]])))
    with pytest.raises(ValueError, match="arrows"):
        figure_html(go.Figure(go.Scatter(x=[0], y=[0])).add_annotation(x=0, y=0, text="here", showarrow=True))
    with pytest.raises(ValueError, match="'circle' shape"):
        figure_html(go.Figure(go.Scatter(x=[0, 1], y=[0, 1])).add_shape(type="circle", x0=0, x1=1, y0=0, y1=1))
    with pytest.raises(ValueError, match="'line' shape"):  # a slanted line
        figure_html(go.Figure(go.Scatter(x=[0, 1], y=[0, 1])).add_shape(type="line", x0=0, x1=1, y0=0, y1=1))
    line = go.Figure(go.Scatter(x=[0, 1], y=[0, 1]))
    with pytest.raises(ValueError, match="xref='x', yref='y'"):  # a label at a data x would sit at an end
        figure_html(go.Figure(line).add_annotation(x=0.5, y=0.5, text="here", showarrow=False))
    with pytest.raises(ValueError, match="yref='paper'"):  # a data x above the plot
        figure_html(go.Figure(line).add_annotation(x=0.5, xref="x", y=1, yref="paper", text="top", showarrow=False))
    with pytest.raises(ValueError, match="linear and log axes, not 'date'"):
        figure_html(go.Figure(line).update_xaxes(type="date"))
    with pytest.raises(ValueError, match="not 'nonnegative'"):
        figure_html(go.Figure(line).update_yaxes(rangemode="nonnegative"))
    with pytest.raises(ValueError, match="shift"):
        figure_html(go.Figure(line).add_annotation(x=0, xref="paper", y=0.5, text="up", yshift=10, showarrow=False))
    with pytest.raises(ValueError, match="square markers, not 'diamond'"):
        figure_html(go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="markers", marker=dict(symbol="diamond"))))


def test_a_legend_entry_of_markers_shows_a_dot_of_their_colour_and_of_lines_a_line_of_theirs():
    fig = go.Figure([go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="line", line=dict(color="#112233")),
                     go.Scatter(x=[0, 1], y=[1, 0], mode="markers", name="dots", marker=dict(color="#445566"))])
    markup = figure_html(fig)
    assert "border-top:2.5px solid #112233" in markup and "background:#445566" in markup
    assert "solid #445566" not in markup and "#636efa" not in markup  # no stand-in colour for the dots


@pytest.mark.parametrize("position", ["top right", "bottom right", "top left", "bottom left", None])
def test_add_hlines_draws_what_add_hline_draws(position):
    from hcl_core.plots import add_hlines

    h = dict(y=0.42, line=dict(color="#009E73", dash="dot", width=1.5), opacity=0.8)
    if position:
        h.update(annotation_text="raw pixels 0.420", annotation_position=position,
                 annotation_font=dict(size=11, color="#009E73"))
    ours = add_hlines(go.Figure(go.Scatter(x=[0, 1], y=[0, 1])), [h]).layout.to_plotly_json()
    plotly = go.Figure(go.Scatter(x=[0, 1], y=[0, 1])).add_hline(**h).layout.to_plotly_json()
    assert ours["shapes"] == plotly["shapes"]
    assert ours.get("annotations", []) == plotly.get("annotations", [])


def test_vertical_bands_and_lines_sit_at_their_x_and_a_lines_label_above_the_panel():
    """What the Theory page's bound chart holds: a tinted β range, a dotted crossing with its
    label on top (add_vrect, add_vline), square markers, and a legend of dashed and dotted lines."""
    fig = go.Figure([go.Scatter(x=[0, 10], y=[0, 1], mode="lines+markers", name="sq", marker=dict(symbol="square")),
                     go.Scatter(x=[0, 10], y=[1, 0], mode="lines", name="dotted", line=dict(dash="dot"),
                                opacity=0.6)])
    fig.add_vrect(x0=2, x1=4, fillcolor="rgba(0,158,115,0.1)", line_width=0, layer="below")
    fig.add_vline(x=5, line=dict(dash="dot", color="#999999"), annotation_text="β ≈ 5", annotation_position="top")
    chart = ChartMarkup(figure_html(fig))
    band = re.search(r"class='hcl-band' d='M([-\d.]+) 0H([-\d.]+)V", chart.svg)
    x0, x1 = 10 * 0.06, 10 + 10 * 0.06  # markers: the x range is padded by 6 % on each side
    to_x = lambda v: (v + x0) / (x1 + x0) * VIEW  # noqa: E731
    assert float(band[1]) == pytest.approx(to_x(2), abs=0.1) and float(band[2]) == pytest.approx(to_x(4), abs=0.1)
    assert "fill='rgba(0,158,115,0.1)'" in chart.svg and chart.svg.index("hcl-band") < chart.svg.index("hcl-line")
    line = re.search(r"class='hcl-vline' d='M([-\d.]+) 0V", chart.svg)
    assert float(line[1]) == pytest.approx(to_x(5), abs=0.1) and "stroke-dasharray='2 4'" in chart.svg
    assert "β ≈ 5" in chart.texts
    markup = figure_html(fig)
    assert f"left:{to_x(5) / VIEW * 100:.2f}%;top:0.00%;transform:translate(-50%,-100%)" in markup
    assert "stroke-linecap='square'" in chart.svg  # the square markers
    assert "2.5px dotted" in markup and "opacity:0.6" in markup  # the dotted line's legend entry


# --------------------------------------------------------------------------------------------
# The Negatives page's figures: a grid of log-axis histograms, and three panels against β
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def negatives():
    import hcl_core.analysis.negatives as an
    from hcl_core.registry import LOSSES

    g = np.random.default_rng(0)
    labels = np.arange(120) % 6
    base = g.normal(size=(6, 16))[labels] + 0.6 * g.normal(size=(120, 16))
    z1, z2 = base + 0.2 * g.normal(size=(120, 16)), base + 0.2 * g.normal(size=(120, 16))
    stats = [an.negative_stats(z1, z2, labels, loss=loss, tau=0.5, beta=2.0, tau_plus=0.1) for loss in LOSSES]
    sweeps = {loss: an.beta_sweep(z1, z2, labels, loss=loss, tau=0.5, tau_plus=0.1) for loss in ("info_nce", "hcl")}
    return stats, sweeps


def test_a_grid_of_log_histograms_keeps_its_rows_bars_ticks_tints_and_notes(negatives):
    from hcl_core.plots.negatives import negatives_figure

    stats, _ = negatives
    fig = negatives_figure(stats, "gradient")
    markup = figure_html(fig)
    chart = ChartMarkup(markup)
    assert len(chart.panels) == 6
    tops = sorted({re.search(r"top:([\d.]+)%", p)[1] for p in chart.panels}, key=float)
    assert len(tops) == 2  # two rows of three, in reading order
    assert [re.search(r"left:([\d.]+)%", p)[1] for p in chart.panels[:3]] == ["0.00", "35.00", "70.00"]
    assert {"0.01 %", "0.1 %", "1 %", "10 %", "100 %"} <= set(chart.texts)  # tickvals/ticktext on a log axis
    assert {"← pulled closer", "pushed away →"} <= set(chart.texts)  # notes placed in each panel's domain
    assert "<b>HCL</b>" in markup and '<span style="font-size:12px">' in markup  # the panel titles' own markup
    hcl = next(i for i, s in enumerate(stats) if s.loss == "hcl")
    svg, trace = chart.svgs[hcl], next(t for t in fig.data if t.xaxis == f"x{hcl + 1}" and "other" in t.name)
    bars = [[float(v) for v in re.findall(r"[-\d.]+", b)] for b in re.findall(r"M[^MZ]*Z", re.search(
        r"class='hcl-bars' d='([^']*)'", svg)[1])]
    low, high = -2.0, 2.0  # log10 of 0.01 % .. 100 %
    assert [b[1] for b in bars] == pytest.approx([VIEW] * len(bars), abs=0.1)  # from the axis's bottom
    assert [b[3] for b in bars] == pytest.approx(list((high - np.log10(trace.y)) / (high - low) * VIEW), abs=0.1)
    x0, x1 = fig.layout[f"xaxis{hcl + 1}"].range
    assert bars[0][0] == pytest.approx((trace.x[0] - trace.width / 2 - x0) / (x1 - x0) * VIEW, abs=0.1)
    assert bars[0][2] - bars[0][0] == pytest.approx(trace.width / (x1 - x0) * VIEW, abs=0.2)  # bargap 0: full width
    assert svg.count("class='hcl-band'") == 2  # pulled (left) and pushed (right) tints


def test_three_panels_against_beta_keep_a_log_axis_a_zero_based_one_and_the_legend_at_the_right(negatives):
    from hcl_core.plots.negatives import beta_sweep_figure

    _, sweeps = negatives
    fig = beta_sweep_figure(sweeps, preview_beta=2.0, same_share=0.1, n_candidates=238)
    markup = figure_html(fig)
    chart = ChartMarkup(markup)
    share, neff, pulled = chart.svgs
    ticks = [int(t) for t in chart.texts if t.isdigit()]
    assert {10, 20, 50, 100, 200} <= set(ticks)  # the effective negatives' tickvals, on their log axis
    lines = [float(v) for v in re.findall(r"class='hcl-hline' d='M0 ([\d.]+)H", neff)]
    n_eff = np.concatenate([sweeps[k].n_eff for k in sweeps] + [[238.0]])
    lo, hi = np.log10(n_eff.min()), np.log10(n_eff.max())
    lo, hi = lo - 0.06 * (hi - lo), hi + 0.06 * (hi - lo)
    assert lines == pytest.approx([(hi - np.log10(238)) / (hi - lo) * VIEW], abs=0.1)  # the "uniform" line
    assert "0%" in chart.texts and np.max(paths(share, "hcl-line")[0][:, 1]) <= VIEW  # rangemode tozero
    assert re.search(r"stroke-dasharray='[^']*'", pulled)  # the dashed line of a loss without β
    assert "flex-direction:column;gap:4px" in markup  # RIGHT_LEGEND: a column beside the plot
    assert "preview β=2" in chart.texts and "uniform: all 238" in chart.texts


def test_a_thick_dotted_line_stays_dotted_and_unknown_dash_styles_raise():
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], line=dict(dash="dot", width=3)))
    assert "stroke-dasharray='0.01 6'" in ChartMarkup(figure_html(fig)).svg  # Plotly's 3 px dots, 3 px apart
    with pytest.raises(ValueError, match="dash styles"):
        figure_html(go.Figure(go.Scatter(x=[0, 1], y=[0, 1], line=dict(dash="5px,10px"))))
