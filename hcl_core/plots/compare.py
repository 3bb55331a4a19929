"""The Compare page's pieces (no streamlit): run colours and legend names, the final-metrics table
with its baselines, PCA panels side by side, and a self-contained HTML export of the figures.

The curves themselves are :mod:`hcl_core.plots.training`'s ``loss_figure`` and ``metric_figure``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..config import RunConfig
from ..registry import LOSSES
from . import MUTED, RIGHT_LEGEND, add_hlines, class_color, class_symbol, loss_shade, styled

__all__ = [
    "add_baselines",
    "embeddings_grid_figure",
    "figures_html",
    "legend_labels",
    "run_colors",
    ]

def run_colors(losses: Sequence[str]) -> list[str]:
    """One colour per run: its loss's colour (as on every page); a second run of the same loss
    gets a lighter shade of it, never another loss's colour."""
    seen: dict[str, int] = {}
    out = []
    for loss in losses:
        out.append(loss_shade(loss, seen.get(loss, 0), losses.count(loss)))
        seen[loss] = seen.get(loss, 0) + 1
    return out


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
        for _field, fmt in _VARYING:
            # Compared among the runs that read the field: a loss without τ⁺ does not make τ⁺ "differ".
            if (text := fmt(c)) and len({t for o in configs if (t := fmt(o))}) > 1:
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


def add_baselines(fig: go.Figure, baselines: Mapping[str, float | None]) -> go.Figure:
    """Dotted horizontal lines, e.g. ``{"raw pixels": 0.96}``, labelled at the right.

    Labels alternate below and above their lines (and between the right and left ends), so two
    baselines close together never print their labels on top of each other.
    """
    positions = ("bottom right", "top left", "top right", "bottom left")
    shown = [(name, value) for name, value in baselines.items() if value is not None]
    return add_hlines(fig, [dict(y=value, line=dict(color=MUTED, dash="dot", width=1.5),
                                 annotation_text=f"{name} {value:.3f}",
                                 annotation_position=positions[i % len(positions)],
                                 annotation_font=dict(size=11, color=MUTED))
                            for i, (name, value) in enumerate(sorted(shown, key=lambda nv: nv[1]))])


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
