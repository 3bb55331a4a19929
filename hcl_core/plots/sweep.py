"""Sweep figures: a metric against beta per loss, mean over seeds with the spread as error bars.

Input: the rows of :func:`hcl_core.sweep.summarize` (one per loss and beta, with
``<metric>_mean`` and ``<metric>_std`` over seeds). A loss that reads beta is a line with error
bars (± one sample standard deviation over seeds); a loss without beta is one value, drawn as a
dashed horizontal line across the beta range with a shaded band of ± one standard deviation,
so every curve can be read against it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from ..config import FIELDS
from ..registry import LOSSES
from . import LOSS_COLORS, MUTED, styled
from .training import METRIC_LABELS

__all__ = ["beta_curve_figure", "hex_to_rgba"]


def hex_to_rgba(color: str, alpha: float) -> str:
    """``"#D55E00", 0.2`` -> ``"rgba(213,94,0,0.2)"`` (for translucent bands)."""
    c = color.lstrip("#")
    if len(c) != 6:
        raise ValueError(f"expected a colour like '#D55E00', got {color!r}")
    r, g, b = (int(c[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha:g})"


def _num(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v


def _std_or_zero(value: Any) -> float:
    v = _num(value)
    return 0.0 if math.isnan(v) else v


def _trace(row: dict[str, Any]) -> str:
    """The legend name (and key) of the curve a row belongs to: its loss, plus any other field that varies."""
    extra = [(k, row[k]) for k in row if k in FIELDS and k not in ("loss", "beta") and row[k] is not None]
    name = LOSSES[row["loss"]].label if row["loss"] in LOSSES else row["loss"]
    if extra:
        name += " (" + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in extra) + ")"
    return name


def beta_curve_figure(
    rows: Sequence[dict[str, Any]],
    metric: str = "linear_probe_acc",
    *,
    title: str | None = None,
    height: int = 460,
) -> go.Figure:
    """``metric`` against beta, one trace per loss (error bars: ± std over seeds).

    Args:
        rows: summary rows (``loss``, ``beta`` (None for a loss without beta), ``n``,
            ``<metric>_mean``, ``<metric>_std``); rows with ``n == 0`` are left out.
        metric: a summary metric, e.g. ``linear_probe_acc``, ``knn_acc``, ``few_shot_probe_acc``,
            ``alignment``, ``uniformity``, ``same_class_mass``.
        title: figure title (default: the metric's name).
        height: pixels.

    Raises:
        ValueError: when no row holds ``<metric>_mean`` (the metric name is wrong).
    """
    key = f"{metric}_mean"
    if rows and not any(key in r for r in rows):
        known = sorted(k[: -len("_mean")] for k in rows[0] if k.endswith("_mean"))
        raise ValueError(f"no column {key!r} in the sweep summary; choose one of {', '.join(known)}")
    rows = [r for r in rows if r.get("n", 0) > 0 and not math.isnan(_num(r.get(key)))]
    label = METRIC_LABELS.get(metric, metric)
    fig = go.Figure()
    curves: dict[str, list[dict[str, Any]]] = {}
    flat: dict[str, dict[str, Any]] = {}
    for r in rows:
        trace_key = _trace(r)
        if r.get("beta") is None:
            flat.setdefault(trace_key, r)
        else:
            curves.setdefault(trace_key, []).append(r)
    betas = sorted({float(r["beta"]) for pts in curves.values() for r in pts}) or [0.0, 1.0]
    x0, x1 = betas[0], betas[-1] if betas[-1] > betas[0] else betas[0] + 1.0
    for r in flat.values():
        _add_band(fig, r, key, metric, (x0, x1))
    for pts in curves.values():
        pts = sorted(pts, key=lambda r: float(r["beta"]))
        color = LOSS_COLORS.get(pts[0]["loss"], MUTED)
        name = _trace(pts[0])
        fig.add_trace(go.Scatter(
            x=[float(r["beta"]) for r in pts], y=[_num(r[key]) for r in pts], mode="lines+markers", name=name,
            line=dict(color=color, width=2.5), marker=dict(size=8, color=color),
            error_y=dict(type="data", array=[_std_or_zero(r.get(f"{metric}_std")) for r in pts],
                         visible=True, color=color, thickness=1.5, width=5),
            customdata=[[r.get("n", 0), _std_or_zero(r.get(f"{metric}_std"))] for r in pts],
            hovertemplate="β = %{x:g}<br>" + label + " %{y:.4f} ± %{customdata[1]:.4f}"
                          "<br>%{customdata[0]} seeds<extra>" + name + "</extra>",
        ))
    fig = styled(fig, title=title or f"{label} against hardness β (mean ± std over seeds)",
                 x="hardness β", y=label, height=height)
    fig.update_xaxes(tickvals=betas, range=[x0 - 0.05 * (x1 - x0), x1 + 0.05 * (x1 - x0)])
    return fig


def _add_band(fig: go.Figure, row: dict[str, Any], key: str, metric: str, span: tuple[float, float]) -> None:
    """A loss without beta: its mean as a dashed line over the beta range, ± std as a band."""
    color = LOSS_COLORS.get(row["loss"], MUTED)
    legend_key = _trace(row)
    name = legend_key + " (no β)"
    mean, std = _num(row[key]), _std_or_zero(row.get(f"{metric}_std"))
    x0, x1 = span
    if std > 0:
        fig.add_trace(go.Scatter(
            x=[x0, x1, x1, x0, x0], y=[mean - std, mean - std, mean + std, mean + std, mean - std],
            fill="toself", fillcolor=hex_to_rgba(color, 0.12), line=dict(width=0), mode="lines",
            legendgroup=legend_key, showlegend=False, hoverinfo="skip",
        ))
    fig.add_trace(go.Scatter(
        x=[x0, x1], y=[mean, mean], mode="lines", name=name, legendgroup=legend_key,
        line=dict(color=color, width=2, dash="dash"),
        hovertemplate=f"{mean:.4f} ± {std:.4f} ({row.get('n', 0)} seeds)<extra>{name}</extra>",
    ))
