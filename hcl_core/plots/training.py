"""Curves over training: loss, probe accuracies against baselines, geometry, clamp share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..registry import METRICS
from . import ACCENT, MUTED, add_hlines, styled

#: Chart titles of the metrics (the registry's labels).
METRIC_LABELS = {key: m.label for key, m in METRICS.items()}
_PROBE_COLORS = {"few_shot_probe_acc": "#0072B2", "knn_acc": "#009E73", "linear_probe_acc": "#CC79A7"}
MAX_POINTS = 1500  # a curve is thinned to at most this many points before it is sent to the browser


@dataclass(frozen=True)
class Series:
    """One run's curve: a label, x and y values and a colour."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    color: str


def thinned(n: int, max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices of every k-th of ``n`` points, the first and last always kept, so long runs plot fast
    (at most ``max_points + 1``)."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.r_[np.linspace(0, n - 1, max_points).astype(int), n - 1])


def ema(y: Sequence[float], weight: float) -> np.ndarray:
    """Exponential moving average, bias-corrected so the start is not pulled towards 0:

        ema_t = sum_{i<=t} weight^(t-i) y_i / sum_{i<=t} weight^(t-i),

    which is pandas' ``ewm(alpha=1 - weight, adjust=True).mean()``.
    """
    return pd.Series(np.asarray(y, dtype=float)).ewm(alpha=1.0 - weight, adjust=True).mean().to_numpy()


def loss_points(x: Sequence[float], y: Sequence[float], smooth: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """What a loss chart draws: ``(x, raw, smoothed, few)`` thinned to :data:`MAX_POINTS`.

    The curve is smoothed over every step and then thinned, so the smoothed line of a long run
    means the same as a short run's (smoothing the thinned points would average over k steps per
    point). ``few``: fewer than three points, drawn unsmoothed and with markers (a line of one
    or two points is invisible).
    """
    idx = thinned(len(y))
    values = np.asarray(y, dtype=float)
    few = len(idx) < 3
    smoothed = values if few else ema(values, smooth)
    return np.asarray(x)[idx], values[idx], smoothed[idx], few


def loss_figure(series: Sequence[Series], *, smooth: float = 0.8, height: int = 300) -> go.Figure:
    """Training loss per step: raw values faint, the smoothed curve on top (:func:`loss_points`)."""
    fig = go.Figure()
    for s in series:
        if len(s.y) == 0:
            continue
        x, raw, smoothed, few = loss_points(s.x, s.y, smooth)
        fig.add_trace(go.Scatter(x=x, y=raw, mode="lines", line=dict(color=s.color, width=1), opacity=0.25,
                                 name=f"{s.label} (raw)", showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=x, y=smoothed, mode="lines+markers" if few else "lines",
                                 line=dict(color=s.color, width=2.5), marker=dict(size=8), name=s.label,
                                 hovertemplate="step %{x}<br>loss %{y:.4f}<extra>" + s.label + "</extra>"))
    return styled(fig, title="Training loss", x="step", y="loss", height=height, legend=len(series) > 1)


def probe_figure(evals: Sequence[dict[str, Any]], baseline: dict[str, Any] | None = None,
                 *, raw_name: str = "raw pixels", height: int = 300) -> go.Figure:
    """Probe accuracies per evaluated epoch, against two baselines per probe.

    Dotted, labelled: the same probe on the raw inputs (``raw_name``: "raw pixels" for images,
    "raw inputs" for vectors and signals). Dashed: the randomly initialised encoder
    (epoch 0, also each curve's first point); what lies above it is what training added.
    """
    fig = go.Figure()
    epochs = [e["epoch"] for e in evals]
    raw_lines, hlines = [], []
    for key, color in _PROBE_COLORS.items():
        ys = [e.get(key) for e in evals]
        if not any(v is not None for v in ys):
            continue
        fig.add_trace(go.Scatter(x=epochs, y=ys, mode="lines+markers", name=METRIC_LABELS[key],
                                 line=dict(color=color, width=2.5), marker=dict(size=7),
                                 hovertemplate="epoch %{x}<br>%{y:.3f}<extra>" + METRIC_LABELS[key] + "</extra>"))
        raw = ((baseline or {}).get("raw") or {}).get(key)
        if raw is not None:
            raw_lines.append((raw, color))
        random_init = ((baseline or {}).get("random_init") or {}).get(key)
        if random_init is not None:  # also the curve's epoch-0 point: a line shows what training added
            hlines.append(dict(y=random_init, line=dict(color=color, dash="dash", width=1), opacity=0.45))
    # Labels alternate above and below their lines, left and right, so close baselines stay legible.
    places = ("top right", "bottom right", "top left", "bottom left")
    for (raw, color), place in zip(sorted(raw_lines, reverse=True), places, strict=False):
        hlines.append(dict(y=raw, line=dict(color=color, dash="dot", width=1.5), opacity=0.8,
                           annotation_text=f"{raw_name} {raw:.3f}", annotation_position=place,
                           annotation_font=dict(size=11, color=color)))
    add_hlines(fig, hlines)
    fig.update_yaxes(range=_accuracy_range(evals, baseline))
    return styled(fig, title=f"Probe accuracy (dashed = random encoder, dotted = {raw_name})",
                  x="epoch", y="test accuracy", height=height)


def _accuracy_range(evals: Sequence[dict[str, Any]], baseline: dict[str, Any] | None) -> list[float]:
    """A y-range around the accuracies and baselines with a margin, at least 0.2 tall, within [0, 1]."""
    values = [e[k] for e in evals for k in _PROBE_COLORS if e.get(k) is not None]
    values += [v for kind in ("raw", "random_init") for k, v in ((baseline or {}).get(kind) or {}).items()
               if k in _PROBE_COLORS]
    low, high = min(values, default=0.0), max(values, default=1.0)
    low, high = max(0.0, low - 0.05), min(1.0, high + 0.05)
    if high - low < 0.2:
        mid = (low + high) / 2
        low, high = max(0.0, min(mid - 0.1, 0.8)), min(1.0, max(mid + 0.1, 0.2))
    return [low, high]


def metric_figure(series: Sequence[Series], metric: str, *, height: int = 300) -> go.Figure:
    """One metric per evaluated epoch, one line per run (Compare page)."""
    fig = go.Figure()
    for s in series:
        fig.add_trace(go.Scatter(x=list(s.x), y=list(s.y), mode="lines+markers", name=s.label,
                                 line=dict(color=s.color, width=2.5), marker=dict(size=6),
                                 hovertemplate="epoch %{x}<br>%{y:.3f}<extra>" + s.label + "</extra>"))
    return styled(fig, title=METRIC_LABELS.get(metric, metric), x="epoch", y=metric.replace("_", " "),
                  height=height)


def geometry_figure(evals: Sequence[dict[str, Any]], *, height: int = 300) -> go.Figure:
    """Alignment and uniformity (Wang & Isola 2020) per evaluated epoch, side by side."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.16,
                        subplot_titles=("alignment (positives closer ↓)", "uniformity (more spread ↓)"))
    epochs = [e["epoch"] for e in evals]
    for col, key, color in ((1, "alignment", "#0072B2"), (2, "uniformity", "#009E73")):
        fig.add_trace(go.Scatter(x=epochs, y=[e.get(key) for e in evals], mode="lines+markers",
                                 line=dict(color=color, width=2.5), name=key, showlegend=False,
                                 hovertemplate="epoch %{x}<br>%{y:.3f}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text="epoch", row=1, col=col)
    fig.update_annotations(font_size=13)
    fig = styled(fig, title="Geometry of the projections (Wang & Isola 2020)", height=height, legend=False)
    return fig.update_layout(margin=dict(t=70))


def clamp_figure(evals: Sequence[dict[str, Any]], *, height: int = 260) -> go.Figure:
    """Share of anchors whose debiased negative term hits DCL/HCL's lower clamp.

    Where it binds, Ng is the constant M e^{-1/tau}: those anchors' negatives give no gradient.
    """
    epochs = [e["epoch"] for e in evals if "clamp_share" in e]
    share = [e["clamp_share"] for e in evals if "clamp_share" in e]
    fig = go.Figure(go.Bar(x=epochs, y=share, marker_color=ACCENT, name="clamp binds",
                           hovertemplate="epoch %{x}<br>%{y:.1%} of anchors<extra></extra>"))
    fig.update_yaxes(range=[0, max([0.05, *share]) * 1.15], tickformat=".0%")
    add_hlines(fig, [dict(y=0, line=dict(color=MUTED, width=1))])
    if share and max(share) == 0:  # an empty chart would look broken: say what it means
        fig.add_annotation(xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                           text="0 % at every evaluation: every anchor's negatives give gradient",
                           font=dict(size=13, color=MUTED))
    return styled(fig, title="Anchors where the clamp binds (no gradient from their negatives)",
                  x="epoch", y="share of anchors", height=height, legend=False)
