"""The Train page's figures (plotly only): what each shows, checked on the figure objects."""

from __future__ import annotations

import numpy as np
import pytest

from hcl_core.plots.training import (
    MAX_POINTS,
    Series,
    clamp_figure,
    ema,
    geometry_figure,
    loss_figure,
    probe_figure,
    thinned,
)

EVALS = [{"epoch": e, "linear_probe_acc": 0.9 + e / 100, "few_shot_probe_acc": 0.8 + e / 100,
          "knn_acc": 0.85, "alignment": 0.4, "uniformity": -2.0, "clamp_share": 0.0} for e in (0, 5, 10)]
RAW = {"raw": {"linear_probe_acc": 0.967, "few_shot_probe_acc": 0.884, "knn_acc": 0.903},
       "random_init": {"linear_probe_acc": 0.95, "few_shot_probe_acc": 0.70, "knn_acc": 0.84}}


def test_thinning_keeps_the_ends_and_at_most_max_points():
    x = np.arange(10_000)
    idx = thinned(len(x))
    tx, ty = x[idx], (x * 2.0)[idx]
    assert len(tx) <= MAX_POINTS + 1 and tx[0] == 0 and tx[-1] == 9_999 and np.array_equal(ty, tx * 2.0)
    short = np.arange(5)
    assert np.array_equal(short[thinned(len(short))], short)


def test_ema_is_bias_corrected():
    assert ema([3.0, 3.0, 3.0], 0.9) == pytest.approx([3.0, 3.0, 3.0])  # no pull towards 0 at the start
    assert ema([0.0, 1.0], 0.5)[-1] == pytest.approx(2 / 3)


def test_loss_figure_draws_raw_and_smoothed_curves_with_a_legend_only_for_several_runs():
    one = loss_figure([Series("a", range(1, 11), np.linspace(2, 1, 10), "#000000")])
    assert [t.showlegend for t in one.data] == [False, None] and not one.layout.showlegend
    two = loss_figure([Series("a", [1, 2, 3], [3, 2, 1], "#000000"), Series("b", [1, 2], [1, 1], "#ff0000")])
    assert two.layout.showlegend and [t.name for t in two.data if t.showlegend is not False] == ["a", "b"]


def test_probe_figure_has_a_curve_per_probe_and_labelled_raw_baselines_on_alternating_sides():
    fig = probe_figure(EVALS, RAW)
    assert {t.name for t in fig.data} == {"few-shot probe (10 labels/class)", "kNN (k=200)",
                                          "linear probe (all labels)"}
    labels = {a.text: a for a in fig.layout.annotations}
    assert set(labels) == {"raw pixels 0.967", "raw pixels 0.903", "raw pixels 0.884"}
    # Sorted by value, the labels go above, below, above-left: close baselines do not overlap.
    assert labels["raw pixels 0.967"].yanchor == "bottom" and labels["raw pixels 0.903"].yanchor == "top"
    assert labels["raw pixels 0.884"].xanchor == "left"
    dashed = sorted(round(sh.y0, 3) for sh in fig.layout.shapes if sh.line.dash == "dash")
    assert dashed == [0.70, 0.84, 0.95], "the random encoder's accuracies as dashed reference lines"
    assert fig.layout.yaxis.range[0] == pytest.approx(0.70 - 0.05) and fig.layout.yaxis.range[1] == 1.0


def test_geometry_figure_has_a_title_and_two_panels():
    fig = geometry_figure(EVALS)
    assert "Wang & Isola" in fig.layout.title.text
    assert [a.text for a in fig.layout.annotations] == ["alignment (positives closer ↓)", "uniformity (more spread ↓)"]


def test_a_clamp_that_never_binds_is_said_in_words():
    quiet = clamp_figure(EVALS)
    assert any("every anchor's negatives give gradient" in a.text for a in quiet.layout.annotations)
    binding = clamp_figure([dict(e, clamp_share=0.25) for e in EVALS])
    assert not any("gradient" in (a.text or "") for a in binding.layout.annotations)
    assert list(binding.data[0].y) == [0.25, 0.25, 0.25]


def test_a_loss_curve_of_one_step_is_drawn_as_a_point():
    from hcl_core.plots.training import Series, loss_figure

    fig = loss_figure([Series("HCL", [1], [5.2], "#D55E00")])
    assert any(t.mode == "lines+markers" and list(t.y) == [5.2] for t in fig.data)


def test_probe_axis_fits_the_values_and_names_raw_inputs_for_non_images():
    from hcl_core.plots.training import probe_figure

    evals = [{"epoch": 0, "knn_acc": 0.30}, {"epoch": 5, "knn_acc": 0.42}]
    fig = probe_figure(evals, {"raw": {"knn_acc": 0.33}}, raw_name="raw inputs")
    low, high = fig.layout.yaxis.range
    assert 0.2 <= low <= 0.3 and 0.42 < high <= 0.6  # not stretched to 1.0
    assert "raw inputs 0.330" in [a.text for a in fig.layout.annotations]
    assert "raw inputs" in fig.layout.title.text


def test_the_smoothed_loss_of_a_long_run_is_smoothed_over_every_step_before_thinning():
    steps = np.arange(1, 6001)
    losses = np.where(steps % 2 == 0, 1.0, 3.0)  # alternating: any smoothing over k steps shows in the mean
    fig = loss_figure([Series("HCL", steps, losses, "#000")])
    raw, smooth = fig.data
    assert len(smooth.x) <= 1501 and smooth.x[-1] == 6000
    full = ema(losses, 0.8)
    np.testing.assert_allclose(smooth.y, full[np.asarray(smooth.x) - 1])
    np.testing.assert_allclose(raw.y, losses[np.asarray(raw.x) - 1])


def test_ema_matches_its_definition_step_by_step():
    y = np.array([2.0, -1.0, 4.0, 0.5, 3.0])
    w = 0.7
    expected = [sum(w ** (t - i) * y[i] for i in range(t + 1)) / sum(w ** (t - i) for i in range(t + 1))
                for t in range(len(y))]
    np.testing.assert_allclose(ema(y, w), expected, rtol=1e-12)
