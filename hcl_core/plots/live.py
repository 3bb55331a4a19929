"""The live loss chart: markup built on the server, drawn by the browser without plotly.js.

While a run trains, the Train page redraws its loss chart at every refresh (every 2 s). Plotly
builds a figure's whole DOM anew each time, and on two cores that CPU comes out of the training
worker (BENCHMARKS.md: the live Plotly chart cost Chromium about 0.07 cores, this chart 0.015).
A live chart changes before anyone could hover or zoom it, so nothing is lost: once the run has
ended the page shows the interactive :func:`~hcl_core.plots.training.loss_figure`, and both draw
the points of :func:`~hcl_core.plots.training.loss_points` (raw values faint, the EMA on top).

The chart is an HTML box of fixed height that fills its column: the plot area is an SVG image
(a data URI: Streamlit's ``st.html`` keeps ``<img>`` but removes inline ``<svg>``) with a
``0..1000`` view box stretched to the box (``preserveAspectRatio="none"``, strokes kept at their
width by ``vector-effect``), and the tick labels are HTML placed in percent, so text is never
stretched. The outer box carries ``data-chart`` (the title), ``data-points`` (the steps drawn)
and ``data-last-step`` for tests and benchmarks.
"""

from __future__ import annotations

import html
import math
import re
import urllib.parse
from collections.abc import Sequence

import numpy as np

from .training import loss_points

__all__ = ["VIEW", "live_loss_html", "nice_ticks", "tick_labels"]

VIEW = 1000.0  # the plot area's view box is VIEW x VIEW
_BLEED = 8.0  # view-box units around it, so strokes and dots at its edges are drawn whole
_COLOR = re.compile(r"#[0-9A-Fa-f]{3,8}|[A-Za-z]{3,20}")
_FONT = '"Source Sans", "Source Sans Pro", sans-serif'  # Streamlit's, as its Plotly theme uses
_TEXT, _TICK, _GRID = "#2F2D2B", "#808495", "#e6eaf1"  # Streamlit's Plotly theme (read from the browser)
_URL_SAFE = " =:/,.-'"  # kept as they are in the data URI (most of it); '"', '#', '<', '>' ... quoted
_MARGIN = dict(left=55, right=15, top=45, bottom=45)  # plots.styled()'s margins, in px


def _percent(v: float) -> float:
    """Where view-box coordinate ``v`` lies in the image, in percent (the image has a bleed)."""
    return (v + _BLEED) / (VIEW + 2 * _BLEED) * 100


def nice_ticks(low: float, high: float, *, target: int = 5, integer: bool = False) -> np.ndarray:
    """About ``target`` round tick values in ``[low, high]``: multiples of 1, 2 or 5 x 10^k.

    The step is the smallest of those at least ``(high - low) / target``; ``integer`` keeps it at
    least 1 (training steps). An empty or degenerate range gives the one value ``low``.
    """
    span = high - low
    if not (math.isfinite(low) and math.isfinite(high)) or span <= 0:
        return np.array([low]) if math.isfinite(low) else np.array([])
    raw = span / max(target, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    if integer:
        step = max(step, 1.0)
    first = math.ceil(low / step - 1e-9) * step
    ticks = first + step * np.arange(int(math.floor((high - first) / step + 1e-9)) + 1)
    return np.round(ticks, 12)


def tick_labels(ticks: np.ndarray) -> list[str]:
    """Labels with as many decimals as the ticks' spacing needs (0.05 -> two, 20 -> none)."""
    if len(ticks) < 2:
        return [f"{t:.4g}" for t in ticks]
    step = float(np.min(np.diff(ticks)))
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return [f"{t:.{decimals}f}" for t in ticks]


def _path(px: np.ndarray, py: np.ndarray) -> str:
    """An SVG path through the points, broken where a coordinate is not finite."""
    parts, pen_down = [], False
    for x, y in zip(px.tolist(), py.tolist(), strict=True):
        if math.isfinite(x) and math.isfinite(y):
            parts.append(f"{'L' if pen_down else 'M'}{x:.1f} {y:.1f}")
            pen_down = True
        else:
            pen_down = False
    return "".join(parts)


def _dots(px: np.ndarray, py: np.ndarray) -> str:
    """Zero-length segments drawn with round caps: dots that stay round in a stretched view box."""
    return "".join(f"M{x:.1f} {y:.1f}h0" for x, y in zip(px.tolist(), py.tolist(), strict=True)
                   if math.isfinite(x) and math.isfinite(y))


def live_loss_html(x: Sequence[float], y: Sequence[float], *, label: str, color: str, smooth: float = 0.8,
                   height: int = 300, title: str = "Training loss") -> str:
    """The loss per step as HTML + SVG (see the module docstring); ``label`` names the run.

    ``x``: step numbers, ``y``: losses, of equal length. Non-finite losses are left out of the
    axes' range and break the line. One or two points get dots on the line (one point alone is
    no line), as in :func:`~hcl_core.plots.training.loss_figure`.
    """
    if not _COLOR.fullmatch(color):
        raise ValueError(f"color must be '#rrggbb' (or a CSS colour name), got {color!r}")
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xs.shape != ys.shape:
        raise ValueError(f"x and y must have the same length, got {len(xs)} and {len(ys)}")
    finite = np.isfinite(ys) & np.isfinite(xs)
    x_drawn, raw, smoothed, few = loss_points(xs, np.where(finite, ys, np.nan), smooth)
    if finite.any():
        lo, hi = float(ys[finite].min()), float(ys[finite].max())
        x0, x1 = float(xs[finite].min()), float(xs[finite].max())
    else:
        lo, hi, x0, x1 = 0.0, 1.0, 0.0, 1.0
    pad = (hi - lo) * 0.04 if hi > lo else max(abs(hi) * 0.05, 0.05)
    lo, hi = lo - pad, hi + pad
    if x1 <= x0:
        x0, x1 = x0 - 1.0, x1 + 1.0

    if few:  # dots at the ends: keep them off the edges, as plotly pads a markers' range
        half = max((x1 - x0) * 0.06, 0.5)
        x0, x1 = x0 - half, x1 + half

    def to_x(v):
        return (np.asarray(v, dtype=float) - x0) / (x1 - x0) * VIEW

    def to_y(v):
        return (hi - np.asarray(v, dtype=float)) / (hi - lo) * VIEW

    px, raw_py, smooth_py = to_x(x_drawn), to_y(raw), to_y(smoothed)
    y_ticks = nice_ticks(lo, hi)
    x_ticks = nice_ticks(x0, x1, integer=True)
    x_ticks = x_ticks[(x_ticks >= x0) & (x_ticks <= x1)]
    stroke = 'fill="none" vector-effect="non-scaling-stroke" stroke-linejoin="round" stroke-linecap="round"'
    grid = "".join(f"M0 {v:.1f}H{VIEW:g}" for v in to_y(y_ticks))
    if few:
        lines = (f'<path class="hcl-line" d="{_path(px, smooth_py)}" stroke="{color}" stroke-width="2.5" {stroke}/>'
                 f'<path class="hcl-dots" d="{_dots(px, smooth_py)}" stroke="{color}" stroke-width="8" {stroke}/>')
    else:
        lines = (f'<path class="hcl-raw" d="{_path(px, raw_py)}" stroke="{color}" stroke-width="1" '
                 f'stroke-opacity="0.25" {stroke}/>'
                 f'<path class="hcl-line" d="{_path(px, smooth_py)}" stroke="{color}" stroke-width="2.5" {stroke}/>')
    label_css = f"position:absolute;color:{_TICK};font-size:12px;white-space:nowrap;line-height:1"
    y_labels = "".join(f'<div style="{label_css};right:calc(100% + 8px);top:{_percent(v):.2f}%;'
                       f'transform:translateY(-50%)">{t}</div>'
                       for v, t in zip(to_y(y_ticks), tick_labels(y_ticks), strict=True))
    x_labels = "".join(f'<div style="{label_css};top:calc(100% + 8px);left:{_percent(v):.2f}%;'
                       f'transform:translateX(-50%)">{t}</div>'
                       for v, t in zip(to_x(x_ticks), tick_labels(x_ticks), strict=True))
    box = f"{-_BLEED:g} {-_BLEED:g} {VIEW + 2 * _BLEED:g} {VIEW + 2 * _BLEED:g}"
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="{box}" preserveAspectRatio="none">'
           f'<path d="{grid}" stroke="{_GRID}" stroke-width="1" {stroke}/>{lines}</svg>').replace('"', "'")
    n = int(finite.sum())
    last = f", last loss {ys[finite][-1]:.4f} at step {xs[finite][-1]:g}" if n else ""
    m = _MARGIN
    return (
        f'<div class="hcl-live-chart" role="img" aria-label="{html.escape(title)} of {html.escape(label)}: '
        f'{n} steps{last}" data-chart="{html.escape(title)}" data-points="{n}" '
        f'data-last-step="{xs[finite][-1] if n else ""}" '
        f'style="position:relative;height:{height}px;font-family:{html.escape(_FONT)};color:{_TEXT}">'
        f'<div style="position:absolute;left:0;top:4px;font-size:15px;font-weight:600">{html.escape(title)}</div>'
        f'<div style="position:absolute;left:{m["left"]}px;right:{m["right"]}px;top:{m["top"]}px;'
        f'bottom:{m["bottom"]}px">'
        f'<img class="hcl-plot" alt="" src="data:image/svg+xml,{urllib.parse.quote(svg, safe=_URL_SAFE)}" '
        f'style="position:absolute;left:0;top:0;width:100%;height:100%">'
        f'{y_labels}{x_labels}</div>'
        f'<div style="position:absolute;left:{m["left"]}px;right:{m["right"]}px;bottom:2px;text-align:center;'
        f'color:{_TICK};font-size:14px">step</div>'
        f'<div style="position:absolute;left:0;top:{m["top"]}px;bottom:{m["bottom"]}px;writing-mode:vertical-rl;'
        f'transform:rotate(180deg);text-align:center;color:{_TICK};font-size:14px">loss</div>'
        f'</div>'
    )
