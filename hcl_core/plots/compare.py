"""The Compare page's pieces (no streamlit): run colours and legend names, the final-metrics table
with its baselines, PCA panels side by side, and a self-contained HTML export of the figures.

The curves themselves are :mod:`hcl_core.plots.training`'s ``loss_figure`` and ``metric_figure``.
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..config import RunConfig
from ..registry import LOSSES
from . import LOSS_COLORS, MUTED, RIGHT_LEGEND, class_color, class_symbol, styled

__all__ = [
    "FINAL_METRICS",
    "PROBE_METRICS",
    "TableEntry",
    "add_baselines",
    "default_comparison",
    "embeddings_grid_figure",
    "figures_html",
    "legend_labels",
    "metrics_table",
    "run_colors",
    "table_csv",
]

#: Okabe-Ito without its yellow (unreadable on white): used when two chosen runs share a loss.
RUN_PALETTE = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#999999")
PROBE_METRICS = ("linear_probe_acc", "few_shot_probe_acc", "knn_acc")
#: The final metrics in the table, with their column headers.
FINAL_METRICS = {
    "linear_probe_acc": "linear probe",
    "few_shot_probe_acc": "few-shot probe",
    "knn_acc": "kNN",
    "alignment": "alignment ↓",
    "uniformity": "uniformity ↓",
    "same_class_mass": "same-class mass",
    "effective_negatives": "eff. negatives",
}


def run_colors(losses: Sequence[str]) -> list[str]:
    """One colour per run: its loss's colour (as on every page) while the losses are distinct,
    otherwise a colour-blind-safe palette in order (two HCL runs must not look alike)."""
    if len(set(losses)) == len(losses):
        return [LOSS_COLORS.get(loss, MUTED) for loss in losses]
    return [RUN_PALETTE[i % len(RUN_PALETTE)] for i in range(len(losses))]


def _short_loss(loss: str) -> str:
    return LOSSES[loss].short if loss in LOSSES else loss


_VARYING = (  # (field, how it reads in a legend), appended only when the chosen runs differ in it
    ("tau", lambda c: f"τ={c.tau:g}"),
    ("tau_plus", lambda c: f"τ⁺={c.tau_plus:g}" if "tau_plus" in c.loss_params else ""),
    ("dataset", lambda c: c.dataset),
    ("encoder", lambda c: c.encoder),
    ("batch_size", lambda c: f"batch {c.batch_size}"),
    ("epochs", lambda c: f"{c.epochs} ep"),
    ("lr", lambda c: f"lr {c.lr:g}"),
    ("aug_strength", lambda c: f"aug {c.aug_strength:g}"),
    ("seed", lambda c: f"seed {c.seed}"),
)


def legend_labels(configs: Sequence[RunConfig]) -> list[str]:
    """Short, distinct names for runs shown together: the loss (and β where it reads it), then only
    the settings that differ between them; a run's own name is added when it has one.

    ``[SimCLR, HCL β=1, HCL β=2]`` rather than three full configurations; runs that are still alike
    get ``#2``, ``#3``.
    """
    labels = []
    for c in configs:
        parts = [_short_loss(c.loss) + (f" β={c.beta:g}" if "beta" in c.loss_params else "")]
        for name, fmt in _VARYING:
            if len({getattr(o, name) for o in configs}) > 1 and (text := fmt(c)):
                parts.append(text)
        if c.name:
            parts.append(f"“{c.name}”")
        labels.append(" · ".join(parts))
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if labels.count(label) == 1 else f"{label} #{seen[label]}")
    return out


@dataclass(frozen=True)
class TableEntry:
    """One run of the table: its legend ``label``, ``run_id``, config, state, final ``metrics``
    (keys of :data:`FINAL_METRICS`, missing ones left blank) and ``baseline`` (``{"raw": {...},
    "random_init": {...}}`` of probe accuracies, as train.py records it)."""

    label: str
    run_id: str
    config: RunConfig
    state: str
    metrics: Mapping[str, Any]
    baseline: Mapping[str, Any] = field(default_factory=dict)


#: The order in which a default comparison takes losses: the papers' headline trio first.
DEFAULT_LOSS_ORDER = ("info_nce", "hcl", "hard_supcon", "supcon", "dcl", "h_ucl")


def default_comparison(runs: Sequence[Any], n: int = 3) -> list[Any]:
    """Up to ``n`` finished runs to compare when the user has chosen none (``runs`` newest first).

    One run per loss, in :data:`DEFAULT_LOSS_ORDER` (SimCLR vs HCL vs H-SCL when they exist),
    all of the newest finished run's data set and seed, so that the comparison is like for like;
    topped up with the newest other finished runs when that gives fewer than ``n``.
    """
    finished = [r for r in runs if r.state == "finished"]
    if not finished:
        return []
    ref = finished[0].config
    alike = [r for r in finished if (r.config.dataset, r.config.seed) == (ref.dataset, ref.seed)]
    picks = [next(r for r in alike if r.config.loss == loss) for loss in DEFAULT_LOSS_ORDER
             if any(r.config.loss == loss for r in alike)][:n]
    picks += [r for r in finished if r not in picks][: n - len(picks)]
    return picks


def _number(v: Any) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def metrics_table(entries: Sequence[TableEntry]) -> list[dict[str, Any]]:
    """Rows for ``st.dataframe`` / CSV: one per run, then the baselines the runs were measured against.

    Columns: ``run`` (the legend label), the :data:`FINAL_METRICS` headers, ``train s``, then the
    settings (``kind`` run/baseline, loss, β, τ, τ⁺, seed, dataset, evaluated epoch, state, run id).

    Baselines: "raw pixels" (a probe on the flattened inputs) once per data set, and "random-init
    encoder" (the same probes at epoch 0, before any training) once per distinct set of values
    (runs with the same seed and encoder share it). Baseline rows leave the run-only columns blank.
    """
    rows: list[dict[str, Any]] = []
    baselines: dict[tuple, dict[str, Any]] = {}
    for e in entries:
        c = e.config
        row: dict[str, Any] = {"run": e.label}
        row.update({header: _number(e.metrics.get(key)) for key, header in FINAL_METRICS.items()})
        row.update({
            "kind": "run", "loss": c.loss, "β": c.beta if "beta" in c.loss_params else None, "τ": c.tau,
            "τ⁺": c.tau_plus if "tau_plus" in c.loss_params else None, "seed": c.seed, "dataset": c.dataset,
            "epoch": e.metrics.get("evaluated_epoch", e.metrics.get("epoch")), "state": e.state,
            "train s": _number(e.metrics.get("seconds")),
        })
        row["run id"] = e.run_id
        rows.append(row)
        for kind, name in (("raw", f"raw pixels ({c.dataset})"), ("random_init", f"random-init encoder ({c.dataset})")):
            values = {k: _number(v) for k, v in (e.baseline.get(kind) or {}).items() if k in PROBE_METRICS}
            if not any(v is not None for v in values.values()):
                continue
            key = (kind, c.dataset, tuple(sorted((k, round(v, 6)) for k, v in values.items() if v is not None)))
            if key not in baselines:
                baselines[key] = {"run": name, "kind": "baseline", "dataset": c.dataset, "seed": c.seed,
                                  "encoder": c.encoder, "values": values}
    random_names = [b["run"] for b in baselines.values() if b["run"].startswith("random")]
    for b in baselines.values():
        name = b["run"]
        if random_names.count(name) > 1:  # several random encoders of one data set: say which
            name = f"random-init encoder ({b['dataset']}, {b['encoder']}, seed {b['seed']})"
        row = {"run": name, **{FINAL_METRICS[k]: b["values"].get(k) for k in PROBE_METRICS},
               "kind": "baseline", "dataset": b["dataset"]}
        rows.append(row)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return [{k: r.get(k) for k in columns} for r in rows]


def table_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """The table as CSV text (UTF-8; empty cells for missing values), header first."""
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    return buf.getvalue()


def add_baselines(fig: go.Figure, baselines: Mapping[str, float | None]) -> go.Figure:
    """Dotted horizontal lines, e.g. ``{"raw pixels": 0.96}``, labelled at the right."""
    for name, value in baselines.items():
        if value is None:
            continue
        fig.add_hline(y=value, line=dict(color=MUTED, dash="dot", width=1.5),
                      annotation_text=f"{name} {value:.3f}", annotation_position="bottom right",
                      annotation_font=dict(size=11, color=MUTED))
    return fig


def embeddings_grid_figure(layouts: Sequence[np.ndarray], labels: Sequence[np.ndarray], titles: Sequence[str], *,
                           class_names: Sequence[str] | None = None, cols: int = 3,
                           panel_height: int = 380) -> go.Figure:
    """PCA panels side by side, one per run, points coloured (and, past ten classes, shaped) by class.

    ``layouts[i]``: ``(n_i, 2)``; ``labels[i]``: ``(n_i,)`` ints. Classes share one legend (click
    an entry to hide that class in every panel). Each panel keeps equal units on both axes.
    """
    if not layouts or not (len(layouts) == len(labels) == len(titles)):
        raise ValueError(f"need as many layouts, labels and titles; got {len(layouts)}, {len(labels)}, {len(titles)}")
    cols = min(cols, len(layouts))
    rows = math.ceil(len(layouts) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(titles), horizontal_spacing=0.04,
                        vertical_spacing=0.12 / rows)
    shown: set[int] = set()
    for i, (layout, lab) in enumerate(zip(layouts, labels, strict=True)):
        layout, lab = np.asarray(layout), np.asarray(lab)
        if layout.shape != (len(lab), 2):
            raise ValueError(f"panel {i}: layout of shape {layout.shape} for {len(lab)} labels")
        r, c = i // cols + 1, i % cols + 1
        for k in np.unique(lab).astype(int):
            rows_k = lab == k
            name = str(class_names[k]) if class_names is not None and k < len(class_names) else str(k)
            fig.add_trace(go.Scatter(
                x=layout[rows_k, 0], y=layout[rows_k, 1], mode="markers", name=name, legendgroup=name,
                showlegend=k not in shown,
                marker=dict(color=class_color(k), symbol=class_symbol(k), size=5, opacity=0.8),
                hovertemplate=f"class {name}<extra></extra>"), row=r, col=c)
            shown.add(int(k))
        axis = "" if i == 0 else str(i + 1)
        fig.update_yaxes(scaleanchor=f"x{axis}", scaleratio=1, row=r, col=c)
    fig.update_xaxes(showticklabels=False, title_text="PC 1", title_standoff=2)
    fig.update_yaxes(showticklabels=False, title_text="PC 2", title_standoff=2)
    fig.update_annotations(font_size=13, selector=dict(xref="paper"))
    fig = styled(fig, height=rows * panel_height + 40)
    fig.update_layout(legend=dict(RIGHT_LEGEND, title_text="class"),
                      margin=dict(t=40, r=80))
    return fig


def figures_html(figures: Mapping[str, go.Figure], *, title: str = "Hardness Explorer: comparison",
                 intro: str = "") -> str:
    """One self-contained HTML page holding every figure, plotly.js inlined once (works offline)."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             "<style>body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    if intro:
        parts.append(f"<p>{html.escape(intro)}</p>")
    for i, (name, fig) in enumerate(figures.items()):
        parts.append(f"<h2>{html.escape(name)}</h2>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=i == 0, config={"displaylogo": False}))
    parts.append("</body></html>")
    return "\n".join(parts)
