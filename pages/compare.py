"""Compare: runs side by side (curves, final metrics against baselines, embeddings) and sweeps.

Per chosen run it reads the run's history (its event log folded by the store: step losses
thinned to a fixed number of points, per-epoch evaluations, the baseline; cached while the log
is unchanged), its summary, and the last snapshot's backbone ``features`` ``(n, D)`` and
``labels`` ``(n,)`` for a PCA panel. What the store found wrong in a run's files is shown as a
warning next to it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from hcl_core.analysis.compare import (
    FINAL_METRICS,
    PROBE_METRICS,
    TableEntry,
    default_comparison,
    metrics_table,
    table_csv,
)
from hcl_core.plots.compare import add_baselines, embeddings_grid_figure, figures_html, legend_labels, run_colors
from hcl_core.plots.markup import figure_html
from hcl_core.plots.training import Series, loss_figure, metric_figure
from hcl_core.projection import pca_2d
from hcl_core.registry import raw_name
from hcl_core.store import Run, RunFileError, RunHistory
from ui import all_runs, load_snapshot, run_history, run_labels
from ui.controls import keep_across_pages
from ui.figures import chart, interactive_charts
from ui.glossary import glossary
from ui.navigation import through_app
from ui.run_files import render_run_files
from ui.sweep_view import render_sweep_section

through_app()  # first: a deep link to a fresh server must run through app.py

DEFAULT_RUNS = 3
MAX_RUNS = 8
KEY = "cmp_runs"
WRITTEN = "cmp_runs_written"  # the ?runs= the page wrote last, to tell a followed link from its own
TABLE_FORMAT = {h: st.column_config.NumberColumn(format="%.1f" if h in ("eff. negatives", "train s") else "%.3f")
                for h in (*FINAL_METRICS.values(), "train s")} | {
    h: st.column_config.NumberColumn(format="%g") for h in ("β", "τ", "τ⁺")}
#: Shown right after the run's name: what tells runs apart (the CSV keeps the table's own order).
SETTINGS_FIRST = ("run", "β", "τ", "τ⁺", "seed")
CURVES = ("linear_probe_acc", "few_shot_probe_acc", "knn_acc", "alignment", "uniformity")


@st.cache_data(max_entries=32, show_spinner=False)
def pca_of(run_path: str, epoch: int, stamp: tuple, _features: np.ndarray) -> np.ndarray:
    """``(n, 2)`` PCA layout of one snapshot's features, cached per file."""
    return pca_2d(_features)


def pick_runs(runs: list[Run]) -> list[Run]:
    """The multiselect; defaults to one finished run per loss. The choice is in the URL (``?runs=id,id``)
    so a link opens the same comparison, and survives reruns (session state)."""
    by_path = {str(r.path): r for r in runs}
    labels = run_labels(runs)
    path_of = {r.run_id: str(r.path) for r in runs}
    linked = [path_of[i] for i in st.query_params.get("runs", "").split(",") if i in path_of][:MAX_RUNS]
    keep_across_pages(KEY)
    if KEY not in st.session_state:
        st.session_state[KEY] = linked or [str(r.path) for r in default_comparison(runs, DEFAULT_RUNS)]
    elif linked and st.query_params.get("runs") != st.session_state.get(WRITTEN):
        # Not the ?runs= this page wrote last: a link just followed in this session (the one-click
        # comparison's), which wins over the earlier selection.
        st.session_state[KEY] = linked
    st.session_state[KEY] = [p for p in st.session_state[KEY] if p in by_path]  # forget deleted runs
    chosen = st.multiselect("Runs to compare", list(by_path), key=KEY, max_selections=MAX_RUNS,
                            format_func=lambda p: labels[by_path[p].run_id],
                            placeholder="Pick runs, e.g. SimCLR, HCL β=1 and H-SCL β=1 with the same seed",
                            help="Newest first. Defaults to one finished run per loss (SimCLR, HCL, H-SCL first), "
                                 "all of the newest run's data set and seed.")
    st.query_params["runs"] = st.session_state[WRITTEN] = ",".join(by_path[p].run_id for p in chosen)
    return [by_path[p] for p in chosen]


def final_metrics(run: Run, hist: RunHistory) -> dict[str, Any]:
    """The run's summary (finished runs), else its last evaluation (running or interrupted ones)."""
    return run.summary or hist.last_eval


def shared_raw_baseline(entries: list[TableEntry], metric: str) -> dict[str, float | None]:
    """The raw-input line of a probe chart, when all runs share one data set (else no line)."""
    if len({e.config.dataset for e in entries}) != 1:
        return {}
    return {raw_name(entries[0].config.dataset): (entries[0].baseline.get("raw") or {}).get(metric)}


def table_view(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The table as shown: the settings that tell runs apart right after the run's name."""
    df = pd.DataFrame(rows)
    return df[[c for c in SETTINGS_FIRST if c in df] + [c for c in df if c not in SETTINGS_FIRST]]


@st.cache_resource(max_entries=16, show_spinner=False)
def curve_figures(stamps: tuple, labels: tuple, colors: tuple, raw_lines: tuple, *, _hists: list[RunHistory]) -> dict:
    """The loss and per-metric curves of the chosen runs, each as ``(figure, markup)``, built once
    per set of metrics files (``stamps``): switching back to Compare, or a rerun for the table,
    rebuilds nothing. The figures are shared between sessions and never changed after this.

    The markup (:func:`~hcl_core.plots.markup.figure_html`) is what the page draws unless the
    reader turns on interactive charts: six Plotly charts were most of a switch to Compare in the
    browser (BENCHMARKS.md)."""
    curves = {"loss": loss_figure(
        [Series(lab, h.steps, h.losses, col) for lab, h, col in zip(labels, _hists, colors, strict=True)])}
    raw = dict(raw_lines)
    for metric in CURVES:
        series = [Series(lab, [e["epoch"] for e in h.evals if metric in e],
                         [e[metric] for e in h.evals if metric in e], col)
                  for lab, h, col in zip(labels, _hists, colors, strict=True)]
        curves[metric] = metric_figure(series, metric)
        if metric in raw:
            add_baselines(curves[metric], dict(raw[metric]))
    return {name: (fig, figure_html(fig)) for name, fig in curves.items()}


@st.cache_resource(max_entries=16, show_spinner=False)
def _grid_figure(snapshots: tuple, titles: tuple, *, _layouts: list, _classes: list):
    """The PCA panels, built once per set of snapshots (``snapshots``: folder, epoch and file stamp
    of each): the grid was half of a warm rerun's script time. Shared, never changed after this."""
    return embeddings_grid_figure(_layouts, _classes, list(titles))


def embeddings_figure(runs: list[Run], labels: list[str]):
    """PCA of each run's last snapshot, side by side (runs without a readable snapshot are skipped)."""
    layouts, classes, titles, keys = [], [], [], []
    for run, label in zip(runs, labels, strict=True):
        epochs = run.snapshot_epochs()
        if not epochs:
            continue
        try:
            snap = load_snapshot(run, epochs[-1])
            layouts.append(pca_of(str(run.path), epochs[-1], run.snapshot_stamp(epochs[-1]), snap["features"]))
        except (OSError, RunFileError, KeyError, ValueError) as e:
            st.warning(f"{label}: its last snapshot cannot be shown ({e}).")
            continue
        classes.append(snap["labels"])
        titles.append(f"{label} · epoch {epochs[-1]}")
        keys.append((str(run.path), epochs[-1], run.snapshot_stamp(epochs[-1])))
    return _grid_figure(tuple(keys), tuple(titles), _layouts=layouts, _classes=classes) if layouts else None


def runs_section() -> None:
    runs = all_runs()
    if not runs:
        st.info("No runs yet: train a few on the **Train** page (e.g. SimCLR, HCL β=1 and H-SCL β=1 with the "
                "same seed), or in a terminal: `python -m hcl_core train --loss hcl --beta 1`.")
        return
    chosen = pick_runs(runs)
    if not chosen:
        st.info("Pick one or more runs above to compare them.")
        return
    labels = legend_labels([r.config for r in chosen])
    colors = run_colors([r.config.loss for r in chosen])
    hists = [run_history(r) for r in chosen]
    entries = [TableEntry(label, r.run_id, r.config, r.state, final_metrics(r, h), h.baseline)
               for label, r, h in zip(labels, chosen, hists, strict=True)]
    for label, r, h in zip(labels, chosen, hists, strict=True):
        if problems := [*r.warnings, *h.warnings]:
            st.warning(f"**{label}** (`{r.run_id}`): " + "; ".join(problems[:4]) + (" …" if len(problems) > 4 else ""))

    st.subheader("Final metrics")
    rows = metrics_table(entries)
    st.dataframe(table_view(rows), hide_index=True, key="cmp_table", placeholder="",  # a baseline has no β: blank
                 column_config={"run": st.column_config.Column(pinned=True), **TABLE_FORMAT})
    st.caption("Accuracies on the held-out test split at the last evaluated epoch (never the best epoch). "
               "Baselines: *raw pixels* (images) or *raw inputs* (vectors, signals) is the same probe on the "
               "flattened inputs; *random-init encoder* is the "
               "untrained network (epoch 0). Alignment and uniformity: lower is better.")

    raw_lines = tuple((m, tuple(shared_raw_baseline(entries, m).items())) for m in PROBE_METRICS)
    curves = curve_figures(tuple((str(r.path), r.metrics_stamp()) for r in chosen), tuple(labels), tuple(colors),
                           raw_lines, _hists=hists)
    embeddings = embeddings_figure(chosen, labels)
    figures = {fig.layout.title.text: fig for fig, _ in curves.values()}
    if embeddings is not None:
        figures["Embeddings: PCA of the backbone features at the last snapshot"] = embeddings

    c1, c2, c3 = st.columns([1, 1, 3])
    c1.download_button("⬇ Table (CSV)", table_csv(rows), file_name="comparison.csv", mime="text/csv",
                       key="cmp_csv", on_click="ignore", width="stretch")
    c2.download_button("⬇ Figures (HTML)", lambda: figures_html(figures, intro="Runs: " + "; ".join(labels)),
                       file_name="comparison.html", mime="text/html", key="cmp_html", on_click="ignore",
                       width="stretch", help="One page with every chart below, interactive and offline "
                                                      "(plotly.js is inside the file, about 5 MB).")
    c3.caption("PNG / SVG: the buttons under each chart (drawn on the server, for slides).")

    st.subheader("Curves")
    interactive = interactive_charts()
    names = list(curves)
    for pair in zip(names[::2], names[1::2], strict=False):
        for col, name in zip(st.columns(2), pair, strict=False):
            with col:
                fig, markup = curves[name]
                chart(fig, key=f"cmp_{name}", markup=markup, interactive=interactive)
    if embeddings is not None:
        st.subheader("Embeddings")
        chart(embeddings, key="cmp_embeddings")
        st.caption("PCA of each run's backbone features on the same test samples, last snapshot; coloured by "
                   "class. Each panel has its own axes: compare the shapes (tight, separated clusters), not "
                   "positions. Click a class in the legend to hide it everywhere.")


st.title("Compare")
glossary()
runs_tab, sweeps_tab, files_tab = st.tabs(["Runs", "Sweeps", "Run files"])
with runs_tab:
    runs_section()
with sweeps_tab:
    render_sweep_section()
with files_tab:
    render_run_files()
