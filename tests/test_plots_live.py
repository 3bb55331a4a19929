"""The live loss chart (``hcl_core.plots.live``): the same line as the Plotly loss chart, as markup."""

from __future__ import annotations

import re

import numpy as np
import pytest
from chart_markup import ChartMarkup

from hcl_core.plots.live import VIEW, live_loss_html, nice_ticks, tick_labels
from hcl_core.plots.training import Series, loss_figure


def _steps(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.arange(1, n + 1)
    return x, 5.5 - (1 - np.exp(-x / 60)) + 0.1 * rng.standard_normal(n)


def test_nice_ticks_are_round_steps_that_cover_the_range():
    for low, high in ((4.21, 5.63), (0.0, 1.0), (-3e-4, 7e-4), (1.0, 1234.0), (17.5, 17.9)):
        t = nice_ticks(low, high)
        step = np.diff(t)
        assert np.allclose(step, step[0])
        mantissa = step[0] / 10 ** np.floor(np.log10(step[0]))
        assert np.isclose(mantissa, [1, 2, 5]).any(), (low, high, t)
        assert t[0] >= low - 1e-12 and t[-1] <= high + 1e-12
        assert t[0] - step[0] < low and t[-1] + step[0] > high  # no round value in the range is left out
        assert 2 <= len(t) <= 11
    assert np.array_equal(nice_ticks(1, 3, integer=True), [1, 2, 3])  # steps are whole
    assert list(nice_ticks(2.0, 2.0)) == [2.0] and len(nice_ticks(float("nan"), 1.0)) == 0


def test_tick_labels_have_the_decimals_their_spacing_needs():
    assert tick_labels(np.array([4.5, 5.0, 5.5])) == ["4.5", "5.0", "5.5"]
    assert tick_labels(np.array([0.0, 0.05, 0.1])) == ["0.00", "0.05", "0.10"]
    assert tick_labels(np.array([0.0, 200.0, 400.0])) == ["0", "200", "400"]


def test_the_live_chart_draws_the_plotly_charts_line_raw_and_smoothed():
    x, y = _steps(3000)  # long enough to be thinned
    chart = ChartMarkup(live_loss_html(x, y, label="HCL β=1", color="#D55E00"))
    fig = loss_figure([Series("HCL β=1", x, y, "#D55E00")])
    raw, smoothed = fig.data[0], fig.data[1]
    low, high = y.min(), y.max()
    pad = (high - low) * 0.04
    for cls, trace in (("hcl-raw", raw), ("hcl-line", smoothed)):
        pts = chart.path(cls)
        assert len(pts) == len(trace.x)  # the same points, thinned the same way
        # back from view-box coordinates to steps and losses (within the 0.1-unit rounding)
        steps = x[0] + pts[:, 0] / VIEW * (x[-1] - x[0])
        losses = (high + pad) - pts[:, 1] / VIEW * (high - low + 2 * pad)
        assert np.allclose(steps, trace.x, atol=0.1 / VIEW * (x[-1] - x[0]) + 1e-9)
        assert np.allclose(losses, trace.y, atol=0.1 / VIEW * (high - low + 2 * pad) + 1e-9)
    assert chart.outer["data-chart"] == "Training loss" and chart.outer["data-points"] == "3000"
    assert float(chart.outer["data-last-step"]) == 3000
    assert f"last loss {y[-1]:.4f}" in chart.outer["aria-label"] and "HCL β=1" in chart.outer["aria-label"]
    assert "stroke='#D55E00'" in chart.svg
    assert {"Training loss", "step", "loss"} <= set(chart.texts)


def test_every_tick_label_lies_inside_the_plot_and_names_a_value_in_range():
    x, y = _steps(250)
    chart = ChartMarkup(live_loss_html(x, y, label="run", color="#0072B2"))
    numbers = [float(t) for t in chart.texts if re.fullmatch(r"-?[0-9.]+", t)]
    y_ticks = [v for v in numbers if not float(v).is_integer() or v < 10]
    assert y_ticks and all(y.min() - 0.1 <= v <= y.max() + 0.1 for v in y_ticks)
    assert {50.0, 100.0, 150.0, 200.0, 250.0} <= set(numbers)  # the x ticks
    places = [float(p) for p in re.findall(r"(?:top|left):(-?[0-9.]+)%", live_loss_html(x, y, label="r",
                                                                                            color="#0072B2"))]
    assert places and all(0 <= p <= 100 for p in places)


def test_one_or_two_steps_are_drawn_as_dots_on_the_line_and_no_steps_as_an_empty_chart():
    chart = ChartMarkup(live_loss_html([1], [5.49], label="run", color="#0072B2"))
    assert "hcl-dots" in chart.svg and chart.outer["data-points"] == "1"
    assert 0 < chart.path("hcl-line")[0][0] < VIEW  # padded off the edge, not half clipped
    two = ChartMarkup(live_loss_html([1, 2], [5.49, 5.45], label="run", color="#0072B2"))
    assert len(two.path("hcl-line")) == 2 and "hcl-dots" in two.svg
    empty = ChartMarkup(live_loss_html([], [], label="run", color="#0072B2"))
    assert empty.outer["data-points"] == "0" and empty.outer["data-last-step"] == ""
    assert "hcl-raw" not in empty.svg


def test_a_non_finite_loss_breaks_the_line_and_stays_out_of_the_axes():
    x, y = _steps(40)
    y[20] = np.nan
    chart = ChartMarkup(live_loss_html(x, y, label="run", color="#0072B2"))
    d = re.search(r"class='hcl-raw' d='([^']*)'", chart.svg).group(1)
    assert d.count("M") == 2  # two pieces
    assert chart.outer["data-points"] == "39"
    assert not re.search(r"nan|inf", chart.svg, re.IGNORECASE)


def test_text_is_escaped_and_a_colour_that_is_not_one_is_refused():
    chart = ChartMarkup(live_loss_html([1, 2, 3], [3.0, 2.0, 1.0], label='<b>"x"</b>', color="#0072B2",
                                  title="Loss <i>"))
    assert chart.outer["data-chart"] == "Loss <i>" and '<b>"x"</b>' in chart.outer["aria-label"]
    markup = live_loss_html([1], [1.0], label="r", color="#0072B2", title="Loss <i>")
    assert "Loss &lt;i&gt;</div>" in markup and "<i>" not in markup
    with pytest.raises(ValueError, match="color"):
        live_loss_html([1], [1.0], label="r", color="red' onload='alert(1)")
    with pytest.raises(ValueError, match="same length"):
        live_loss_html([1, 2], [1.0], label="r", color="#0072B2")
