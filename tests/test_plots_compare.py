"""The Compare page's pieces: the metrics table (hcl_core.analysis.compare) and figures (hcl_core.plots.compare)."""

from __future__ import annotations

import csv
import io

import numpy as np
import plotly.graph_objects as go
import pytest

import hcl_core.analysis.compare as table
import hcl_core.plots.compare as cmp
from hcl_core.config import RunConfig
from hcl_core.plots import LOSS_COLORS

RAW = {"linear_probe_acc": 0.96, "few_shot_probe_acc": 0.88, "knn_acc": 0.90}
RANDOM = {"linear_probe_acc": 0.95, "few_shot_probe_acc": 0.80, "knn_acc": 0.85}


def entry(label: str, config: RunConfig, **metrics) -> table.TableEntry:
    return table.TableEntry(label, f"id-{label}", config, "finished", metrics, {"raw": RAW, "random_init": RANDOM})


def test_run_colors_follow_the_loss_and_a_second_run_of_a_loss_gets_a_shade_of_it():
    assert cmp.run_colors(["info_nce", "hcl"]) == [LOSS_COLORS["info_nce"], LOSS_COLORS["hcl"]]
    colors = cmp.run_colors(["hcl", "hcl", "info_nce"])
    assert len(set(colors)) == 3 and colors[0] == LOSS_COLORS["hcl"] and colors[2] == LOSS_COLORS["info_nce"]
    r0, g0, b0 = (int(colors[0][i : i + 2], 16) for i in (1, 3, 5))
    r1, g1, b1 = (int(colors[1][i : i + 2], 16) for i in (1, 3, 5))
    assert r1 >= r0 and g1 > g0 and b1 > b0  # the same hue, lighter
    assert colors[1] not in LOSS_COLORS.values()


def test_legend_labels_name_only_what_differs():
    same = [RunConfig(loss="info_nce"), RunConfig(loss="hcl", beta=1), RunConfig(loss="hard_supcon", beta=1)]
    assert cmp.legend_labels(same) == ["UCL / SimCLR", "HCL β=1", "H-SCL β=1"]
    seeds = [RunConfig(loss="hcl", seed=0), RunConfig(loss="hcl", seed=1)]
    assert cmp.legend_labels(seeds) == ["HCL β=1 · seed 0", "HCL β=1 · seed 1"]
    twins = [RunConfig(loss="dcl"), RunConfig(loss="dcl")]
    assert cmp.legend_labels(twins) == ["DCL #1", "DCL #2"]
    named = cmp.legend_labels([RunConfig(loss="supcon", name="mine"), RunConfig(loss="supcon", tau=0.2)])
    assert named == ["SCL / SupCon · τ=0.5 · “mine”", "SCL / SupCon · τ=0.2"]


def test_metrics_table_runs_then_deduplicated_baselines():
    rows = table.metrics_table([
        entry("SimCLR", RunConfig(loss="info_nce"), linear_probe_acc=0.97, evaluated_epoch=20, seconds=12.5),
        entry("HCL β=1", RunConfig(loss="hcl"), linear_probe_acc=0.98, same_class_mass=0.4),
    ])
    assert [r["run"] for r in rows] == ["SimCLR", "HCL β=1", "raw pixels (digits)", "random-init encoder (digits)"]
    assert list(rows[0])[:8] == ["run", *table.FINAL_METRICS.values()]
    assert rows[0]["β"] is None and rows[1]["β"] == 1.0 and rows[1]["τ⁺"] == 0.1 and rows[0]["epoch"] == 20
    assert rows[0]["same-class mass"] is None and rows[1]["same-class mass"] == 0.4
    assert rows[2]["kNN"] == 0.90 and rows[2]["kind"] == "baseline" and rows[2]["loss"] is None
    assert rows[3]["linear probe"] == 0.95
    text = table.table_csv(rows)
    back = list(csv.DictReader(io.StringIO(text)))
    assert len(back) == 4 and back[2]["loss"] == "" and back[0]["train s"] == "12.5"
    assert table.table_csv([]) == ""


def test_distinct_random_encoders_are_told_apart():
    a = entry("a", RunConfig(seed=0))
    b = table.TableEntry("b", "id-b", RunConfig(seed=1), "finished", {},
                       {"raw": RAW, "random_init": {**RANDOM, "knn_acc": 0.5}})
    names = [r["run"] for r in table.metrics_table([a, b])]
    assert names[2:] == ["raw pixels (digits)", "random-init encoder (digits, mlp, seed 0)",
                         "random-init encoder (digits, mlp, seed 1)"]


def test_add_baselines_draws_labelled_lines():
    fig = cmp.add_baselines(go.Figure(), {"raw pixels": 0.9, "missing": None})
    assert len(fig.layout.shapes) == 1 and fig.layout.annotations[0].text == "raw pixels 0.900"
    two = cmp.add_baselines(go.Figure(), {"raw pixels": 0.90, "random encoder": 0.901})
    positions = {a.yanchor + a.xanchor for a in two.layout.annotations}
    assert len(positions) == 2  # close lines: one label below-right, the other above-left


def test_embeddings_grid_one_panel_per_run_one_legend_per_class():
    g = np.random.default_rng(0)
    labels = [np.arange(30) % 3, np.arange(20) % 4]
    layouts = [g.normal(size=(30, 2)), g.normal(size=(20, 2))]
    fig = cmp.embeddings_grid_figure(layouts, labels, ["A", "B"])
    assert [a.text for a in fig.layout.annotations] == ["A", "B"]
    assert len(fig.data) == 3 + 4
    assert sorted(t.name for t in fig.data if t.showlegend) == ["0", "1", "2", "3"]
    assert fig.layout.yaxis2.scaleanchor == "x2"
    with pytest.raises(ValueError):
        cmp.embeddings_grid_figure([layouts[0]], [labels[1]], ["A"])


def test_figures_html_is_self_contained():
    figs = {"one": go.Figure(go.Scatter(y=[1, 2])), "two <b>": go.Figure(go.Bar(y=[3]))}
    page = cmp.figures_html(figs, intro="runs: a & b")
    assert page.count("plotly.js v") == 1  # the library, inlined once
    assert 'src="https://cdn.plot.ly' not in page and "<script src=" not in page  # no CDN loader
    assert page.count('class="plotly-graph-div"') == 2
    assert "<h2>two &lt;b&gt;</h2>" in page and "runs: a &amp; b" in page


def test_default_comparison_takes_one_run_per_loss_of_one_data_set_and_seed():
    from types import SimpleNamespace

    def run(loss, seed=0, dataset="digits", state="finished", beta=1.0):
        return SimpleNamespace(config=RunConfig(loss=loss, seed=seed, dataset=dataset, beta=beta), state=state)

    newest_first = [run("hard_supcon", beta=4), run("hard_supcon"), run("hcl", seed=1), run("supcon"),
                    run("hcl", state="stopped"), run("hcl"), run("info_nce"), run("info_nce", seed=1)]
    picks = table.default_comparison(newest_first)
    assert picks == [newest_first[6], newest_first[5], newest_first[0]]  # SimCLR, HCL, H-SCL of seed 0
    # Fewer losses than wanted: topped up with the newest other finished runs.
    only_hard = [run("hard_supcon", beta=4), run("hard_supcon"), run("hcl", seed=1)]
    assert table.default_comparison(only_hard) == [only_hard[0], only_hard[1], only_hard[2]]
    assert table.default_comparison([run("hcl", state="failed")]) == []
    assert table.default_comparison(newest_first, n=2) == [newest_first[6], newest_first[5]]
