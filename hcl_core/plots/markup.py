"""A Plotly figure drawn as markup: for charts that must cost the browser next to nothing.

While a run trains, its evaluation charts (probe accuracy, geometry, clamp) and Compare's overlaid
curves change at every refresh (every 2 s). Streamlit's Plotly element builds each such chart's
DOM anew, and draws it twice on mount; on two cores the CPU comes out of the training worker: a
default digits run (an evaluation every 5 epochs) trained at 0.69 of the bare loop's speed with
the page open and 1.00 with it closed (BENCHMARKS.md). :func:`figure_html` draws the same figure
as HTML + SVG, the way :mod:`.live` draws the loss. The one-click comparison shows it while its
runs train and the interactive figures once they have ended. Train (for ended runs too), Compare's
curves, Negatives and Theory draw it by default: a page switch or a β step then draws no Plotly
chart, which costs a small machine's browser about 0.1 s each; Plotly on request
(``ui.figures.interactive_charts``).

It reads the figure, so the figure builders stay the one place that decides what a chart shows:
scatter traces (lines, round or square markers, both; colour, width, dash, opacity, gaps at
``None``), bar traces (overlaid, their width and the bar gap), horizontal lines (``add_hline``),
vertical lines and bands over a panel's height (``add_vline``, ``add_vrect``), annotations at a
line's height at an end of its panel (line labels), above a vertical line, at a place in a panel
(its domain) or on the paper (subplot titles, messages; ``<b>``, ``<i>`` and ``<br>`` kept),
subplots in a grid (their domains), linear and log axes (fixed ranges, ``rangemode="tozero"``,
``tickvals``/``ticktext``, ``.0%`` tick formats, titles), the title and the legend. Anything else
(other shapes and marker symbols, other axis types, labels shifted in pixels) raises
``ValueError``, so an unsupported figure is never drawn wrong.

As in Plotly, on a log axis the range and annotations are given in log10 units and the data,
shapes and ``tickvals`` in the data's own; bars rise from the bottom of a log axis.
"""

from __future__ import annotations

import html
import math
import re
import urllib.parse
from typing import Any

import numpy as np

from .live import _BLEED, _FONT, _GRID, _TEXT, _TICK, _URL_SAFE, VIEW, _dots, _path, _percent, nice_ticks, tick_labels

__all__ = ["figure_html"]

#: Plotly's dash patterns, in units of max(line width, 3) px (plotly.js ``Drawing.dashStyle``).
_DASH = {"dot": (1, 1), "dash": (3, 3), "longdash": (5, 5), "dashdot": (3, 1, 1, 1), "longdashdot": (5, 2, 1, 2)}
_STROKE = 'fill="none" vector-effect="non-scaling-stroke" stroke-linejoin="round" stroke-linecap="round"'
_LABEL = f"position:absolute;color:{_TICK};font-size:12px;white-space:nowrap;line-height:1"
_SYMBOLS = {None: "round", "circle": "round", "square": "square"}  # marker symbol -> the dots' line cap


_PLOTLY_TAG = re.compile(r"</?(?:b|i|em|sup|sub|span|a|br)\b[^<>]*>", re.IGNORECASE)


def _plain(text: Any) -> str:
    """A Plotly text without the tags Plotly understands (<b>, <br>, ...), the rest escaped for HTML."""
    return html.escape(re.sub(r"\s+", " ", _PLOTLY_TAG.sub(" ", str(text or ""))).strip())


_KEPT_TAG = re.compile(r"&lt;(/?)(b|i|br)\s*/?&gt;", re.IGNORECASE)


_SPAN = re.compile(r"<span\b([^<>]*)>", re.IGNORECASE)
_FONT_SIZE = re.compile(r"font-size:\s*(\d+(?:\.\d+)?)px")


def _span(match: re.Match) -> str:
    """A span's opening tag, as a placeholder that survives escaping: its font size only."""
    size = _FONT_SIZE.search(match.group(1))
    return f"\x00{size.group(1) if size else ''}\x01"


def _rich(text: Any) -> str:
    """A Plotly text as HTML: bold, italics, line breaks and spans' font sizes kept, other tags
    dropped, the rest escaped."""
    given = re.sub("[\x00\x01]", "", str(text or ""))
    kept = re.sub(r"</?(?:a|sup|sub|em)\b[^<>]*>", "", _SPAN.sub(_span, given), flags=re.IGNORECASE)
    out = _KEPT_TAG.sub(lambda m: f"<{m.group(1)}{m.group(2).lower()}>", html.escape(kept))
    out = re.sub(r"&lt;/span\s*&gt;", "</span>", out, flags=re.IGNORECASE)
    return re.sub("\x00([\\d.]*)\x01", lambda m: f'<span style="font-size:{m.group(1)}px">' if m.group(1)
                  else "<span>", out)


def _values(seq: Any) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in (seq if seq is not None else ())], dtype=float)


_NESTED = re.compile(r"marker|line|font|title|legend|margin|[xy]axis\d*")


class _Spec(dict):
    """A figure's JSON (``to_plotly_json``) read the way Plotly's objects read: ``trace.marker.color``;
    a property not set is None, or an empty ``_Spec`` for one that holds others (marker, line, an
    axis, ...). Plotly's validated properties cost 60 ms per six-panel histogram, this about 1 ms.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        value = self.get(name)
        if isinstance(value, dict):
            return _Spec(value)
        if isinstance(value, list | tuple) and value and isinstance(value[0], dict):
            return [_Spec(v) for v in value]
        return _Spec() if value is None and _NESTED.fullmatch(name) else value


class _Panel:
    """One subplot: its axes' names, domains, traces, lines and labels."""

    def __init__(self, xname: str, yname: str, layout: Any):
        self.xaxis, self.yaxis = getattr(layout, _axis_key(xname)), getattr(layout, _axis_key(yname))
        self.xname, self.yname = xname, yname
        self.xdomain = tuple(self.xaxis.domain or (0.0, 1.0))
        self.ydomain = tuple(self.yaxis.domain or (0.0, 1.0))
        self.traces: list[Any] = []
        self.hlines: list[Any] = []
        self.vlines: list[Any] = []  # over the panel's height (add_vline)
        self.bands: list[Any] = []  # over the panel's height (add_vrect)
        self.labels: list[Any] = []  # at a height on the y axis, at an end of the panel
        self.x_labels: list[Any] = []  # at a data x, at a height on the panel (add_vline's label)
        self.notes: list[Any] = []  # at a place in the panel (x and y on its domain)
        self.bargap = 0.2 if layout.bargap is None else float(layout.bargap)


def _axis_key(name: str) -> str:
    """'x' -> 'xaxis', 'y2' -> 'yaxis2'."""
    return f"{name[0]}axis{name[1:]}"


def _is_log(axis: Any) -> bool:
    """Whether the axis is a log axis; raises on the types figure_html does not draw."""
    kind = axis.type or "-"
    if kind not in ("-", "linear", "log"):
        raise ValueError(f"figure_html draws linear and log axes, not {kind!r} ones")
    if axis.rangemode not in (None, "normal", "tozero") or (kind == "log" and axis.rangemode == "tozero"):
        raise ValueError(f"figure_html draws rangemode 'normal' and (linear axes) 'tozero', not {axis.rangemode!r}")
    return kind == "log"


def _units(values: Any, log: bool) -> np.ndarray:
    """Values as drawn: log10 of them on a log axis (where a value ≤ 0 has no place: NaN)."""
    v = _values(values) if not isinstance(values, np.ndarray) else values
    if not log:
        return v
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)


def _range(axis: Any, values: list[np.ndarray], *, pad: float, bars: bool = False) -> tuple[float, float]:
    """The axis range in drawn units: the fixed one, else the data's with ``pad`` of its span on
    both sides (from 0 for bars and ``rangemode="tozero"``)."""
    if axis.range is not None:
        return float(axis.range[0]), float(axis.range[1])
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.array([])
    if not len(finite):
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    if bars:
        return min(lo, 0.0), max(hi, 0.0) * 1.05 or 1.0
    span = hi - lo
    margin = span * pad if span > 0 else max(abs(hi) * 0.05, 0.5)
    if axis.rangemode == "tozero":
        return min(lo - margin, 0.0) if lo < 0 else 0.0, max(hi + margin, 0.0) if hi > 0 else 0.0
    return lo - margin, hi + margin


def _ticks(axis: Any, lo: float, hi: float, *, log: bool, integer: bool = False) -> tuple[np.ndarray, list[str]]:
    """The ticks inside ``[lo, hi]`` (drawn units) and their texts: the axis's ``tickvals`` and
    ``ticktext`` where it has them, else decades on a log axis, else round numbers."""
    if axis.tickvals is not None:
        raw = _values(axis.tickvals)
        texts = [str(t) for t in axis.ticktext] if axis.ticktext is not None else _tick_text(raw, axis.tickformat)
        at = _units(raw, log)
    elif log:
        at = np.arange(math.ceil(lo - 1e-9), math.floor(hi + 1e-9) + 1, dtype=float)
        texts = _tick_text(10.0 ** at, axis.tickformat) if axis.tickformat else [f"{10.0 ** k:g}" for k in at]
    else:
        at = nice_ticks(lo, hi, integer=integer)
        texts = _tick_text(at, axis.tickformat)
    eps = 1e-9 * (hi - lo)
    inside = [(a, _rich(t)) for a, t in zip(at, texts, strict=False) if lo - eps <= a <= hi + eps]
    return np.array([a for a, _ in inside], dtype=float), [t for _, t in inside]


def _tick_text(ticks: np.ndarray, fmt: str | None) -> list[str]:
    if fmt and fmt.endswith("%"):
        decimals = int(fmt[1:-1] or 0) if re.fullmatch(r"\.\d+%", fmt) else 0
        return [f"{t * 100:.{decimals}f}%" for t in ticks]
    return tick_labels(ticks)


def _panels(data: list[_Spec], layout: _Spec) -> list[_Panel]:
    panels: dict[tuple[str, str], _Panel] = {}
    for trace in data:
        if trace.type not in ("scatter", "bar"):
            raise ValueError(f"figure_html draws scatter and bar traces, not {trace.type!r}")
        if trace.type == "scatter" and trace.marker.symbol not in _SYMBOLS:
            raise ValueError(f"figure_html draws round and square markers, not {trace.marker.symbol!r}")
        key = (trace.xaxis or "x", trace.yaxis or "y")
        panels.setdefault(key, _Panel(*key, layout)).traces.append(trace)
    if not panels:
        panels[("x", "y")] = _Panel("x", "y", layout)
    by_y = {p.yname: p for p in panels.values()}
    by_x = {p.xname: p for p in panels.values()}
    for shape in layout.shapes or ():
        xref, yref = shape.xref or "x", shape.yref or "y"
        if shape.type == "line" and shape.y0 == shape.y1 and yref in by_y:
            by_y[yref].hlines.append(shape)
            continue
        panel = by_x.get(xref)
        tall = panel is not None and yref == f"{panel.yname} domain" and (shape.y0, shape.y1) == (0, 1)
        if tall and shape.type == "line" and shape.x0 == shape.x1:
            panel.vlines.append(shape)
        elif tall and shape.type == "rect" and not (shape.line.width or 0):
            panel.bands.append(shape)
        else:
            raise ValueError("figure_html draws horizontal lines (add_hline), and vertical lines and bands without "
                             "a border over a panel's height (add_vline, add_vrect), not this "
                             f"{shape.type!r} shape (xref={xref!r}, yref={yref!r})")
    for note in layout.annotations or ():
        if note.showarrow:
            raise ValueError("figure_html does not draw annotations with arrows")
        if note.xshift or note.yshift:
            raise ValueError("figure_html does not shift annotations (xshift, yshift)")
        xref, yref = note.xref or "x", note.yref or "y"
        if xref == "paper" and yref == "paper":
            continue  # drawn on the whole plot area by figure_html
        if xref in by_x and yref == f"{by_x[xref].yname} domain":  # a vertical line's label
            by_x[xref].x_labels.append(note)
            continue
        panel = by_x.get(xref.removesuffix(" domain"))
        if panel is not None and xref.endswith(" domain") and yref == f"{panel.yname} domain":
            panel.notes.append(note)  # at a place in the panel
            continue
        # a line's label: at the line's height on an axis, at an end of the panel
        if yref not in by_y or not (xref == "paper" or xref.endswith(" domain")):
            raise ValueError("figure_html places annotations on the paper, or at a height on a y axis and an end "
                             f"of the panel (x on the paper or an x domain), not at xref={xref!r}, yref={yref!r}")
        by_y[yref].labels.append(note)
    return sorted(panels.values(), key=lambda p: (-p.ydomain[1], p.xdomain))


def _dasharray(dash: str | None, width: float) -> str:
    """The ``stroke-dasharray`` attribute (or "") of Plotly's ``dash`` on a line ``width`` px wide.

    The lines here have round caps, which add half the width at each end of a dash: each dash is
    drawn that much shorter and each gap that much longer, so a thick dotted line stays dotted.
    """
    if dash in (None, "solid"):
        return ""
    if dash not in _DASH:
        raise ValueError(f"figure_html draws the dash styles {', '.join(_DASH)} and solid lines, not {dash!r}")
    unit = max(float(width), 3.0)
    sizes = [v * unit - width if i % 2 == 0 else v * unit + width for i, v in enumerate(_DASH[dash])]
    return ' stroke-dasharray="' + " ".join(f"{max(v, 0.01):g}" for v in sizes) + '"'


def _rule(cls: str, d: str, shape: Any) -> str:
    """A vertical or horizontal line shape as an SVG path (its colour, width, opacity and dash)."""
    width = shape.line.width or 1
    return (f'<path class="{cls}" d="{d}" stroke="{shape.line.color or _TICK}" stroke-width="{width}" '
            f'stroke-opacity="{shape.opacity if shape.opacity is not None else 1}"'
            f"{_dasharray(shape.line.dash, width)} {_STROKE}/>")


def _panel_html(p: _Panel) -> tuple[str, int]:
    """The panel's box (SVG image, ticks, line labels, axis titles) and the number of points drawn."""
    xlog, ylog = _is_log(p.xaxis), _is_log(p.yaxis)
    xs = [_units(t.x, xlog) for t in p.traces]
    ys = [_units(t.y, ylog) for t in p.traces]
    bars = any(t.type == "bar" for t in p.traces)
    markers = any("markers" in (t.mode or "") for t in p.traces if t.type == "scatter")
    tall = [_units([v for s in p.vlines + p.bands for v in (s.x0, s.x1)], xlog)]
    x0, x1 = _range(p.xaxis, xs + tall, pad=0.06 if markers else 0.0)
    width = 1.0  # of a bar: its trace's width, else the smallest gap between two bars' x
    if bars:
        at = np.unique(np.concatenate([x[np.isfinite(x)] for x in xs]))
        given = [float(t.width) for t in p.traces if t.type == "bar" and isinstance(t.width, int | float)]
        width = min(given) if given else float(np.min(np.diff(at))) if len(at) > 1 else 1.0
        if len(at) and p.xaxis.range is None:
            x0, x1 = float(at[0]) - width / 2, float(at[-1]) + width / 2
    if x1 <= x0:
        x0, x1 = x0 - 1.0, x1 + 1.0
    y0, y1 = _range(p.yaxis, ys + [_units([s.y0 for s in p.hlines], ylog)], pad=0.06, bars=bars and not ylog)
    if y1 <= y0:
        y0, y1 = y0 - 0.5, y1 + 0.5

    def to_x(v):
        return (np.asarray(v, dtype=float) - x0) / (x1 - x0) * VIEW

    def to_y(v):
        return (y1 - np.asarray(v, dtype=float)) / (y1 - y0) * VIEW

    def at_x(v):  # a value in the data's units (a shape's, a bar's edge) on the x axis
        return float(to_x(_units([v], xlog)[0]))

    y_ticks, y_texts = _ticks(p.yaxis, y0, y1, log=ylog)
    x_ticks, x_texts = _ticks(p.xaxis, x0, x1, log=xlog,
                              integer=all(np.allclose(x, np.round(x)) for x in xs if len(x)))
    parts = [f'<path class="hcl-band" d="M{at_x(b.x0):.1f} 0H{at_x(b.x1):.1f}V{VIEW:g}H{at_x(b.x0):.1f}Z" '
             f'fill="{b.fillcolor or _GRID}" fill-opacity="{b.opacity if b.opacity is not None else 1}" '
             'stroke="none"/>' for b in p.bands]
    parts.append(f'<path d="{"".join(f"M0 {v:.1f}H{VIEW:g}" for v in to_y(y_ticks))}" stroke="{_GRID}" '
                 f'stroke-width="1" {_STROKE}/>')
    parts += [_rule("hcl-vline", f"M{at_x(s.x0):.1f} 0V{VIEW:g}", s) for s in p.vlines]
    parts += [_rule("hcl-hline", f"M0 {float(to_y(_units([s.y0], ylog)[0])):.1f}H{VIEW:g}", s) for s in p.hlines]
    points = 0
    for trace, x, y in zip(p.traces, xs, ys, strict=True):
        alpha = 1.0 if trace.opacity is None else float(trace.opacity)
        ok = np.isfinite(x) & np.isfinite(y)
        points += int(ok.sum())
        if trace.type == "bar":
            color = trace.marker.color or "#636efa"
            half = width * (1 - p.bargap) / 2
            base = float(to_y(y0 if ylog else 0.0))  # on a log axis bars rise from the axis's bottom
            d = "".join(f"M{float(to_x(a - half)):.1f} {base:.1f}H{float(to_x(a + half)):.1f}"
                        f"V{float(to_y(b)):.1f}H{float(to_x(a - half)):.1f}Z"
                        for a, b in zip(x[ok], y[ok], strict=True))
            parts.append(f'<path class="hcl-bars" d="{d}" fill="{color}" fill-opacity="{alpha:g}" stroke="none"/>')
            continue
        color = trace.line.color or trace.marker.color or "#636efa"
        mode = trace.mode or "lines"
        px, py = to_x(x), to_y(y)
        if "lines" in mode:
            width = trace.line.width or 2
            parts.append(f'<path class="hcl-line" d="{_path(px, py)}" stroke="{color}" stroke-width="{width}" '
                         f'stroke-opacity="{alpha:g}"{_dasharray(trace.line.dash, width)} {_STROKE}/>')
        if "markers" in mode:
            dots = f'<path class="hcl-dots" d="{_dots(px, py)}" stroke="{trace.marker.color or color}" ' \
                   f'stroke-width="{trace.marker.size or 6}" stroke-opacity="{alpha:g}" {_STROKE}/>'
            parts.append(dots.replace('stroke-linecap="round"', f'stroke-linecap="{_SYMBOLS[trace.marker.symbol]}"'))
    box = f"{-_BLEED:g} {-_BLEED:g} {VIEW + 2 * _BLEED:g} {VIEW + 2 * _BLEED:g}"
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="{box}" preserveAspectRatio="none">'
           + "".join(parts) + "</svg>").replace('"', "'")
    labels = [f'<div style="{_LABEL};right:calc(100% + 8px);top:{_percent(v):.2f}%;'
              f'transform:translateY(-50%)">{t}</div>' for v, t in zip(to_y(y_ticks), y_texts, strict=True)]
    labels += [f'<div style="{_LABEL};top:calc(100% + 8px);left:{_percent(v):.2f}%;'
               f'transform:translateX(-50%)">{t}</div>' for v, t in zip(to_x(x_ticks), x_texts, strict=True)]
    for note in p.labels:  # labels of lines: at the line's height, at an end of the panel
        right = (note.xanchor or "center") == "right"
        above = (note.yanchor or "middle") == "bottom"
        color = (note.font.color if note.font else None) or _TEXT
        size = (note.font.size if note.font else None) or 12
        labels.append(f'<div class="hcl-note" style="{_LABEL};color:{color};font-size:{size}px;'
                      f'{"right" if right else "left"}:4px;top:{_percent(float(to_y(note.y))):.2f}%;'
                      f'transform:translateY({"-115%" if above else "15%"})">{_plain(note.text)}</div>')
    # a vertical line's label (at its data x, e.g. above the panel), then notes placed in the panel
    labels += [_placed_note(n, left=_percent(float(to_x(n.x))) / 100, top=1 - float(n.y or 0), size=12)
               for n in p.x_labels]
    labels += [_placed_note(n, left=n.x, top=1 - float(n.y or 0), size=11) for n in p.notes]
    if p.xaxis.title and p.xaxis.title.text:
        labels.append(f'<div style="position:absolute;left:0;right:0;top:calc(100% + 26px);text-align:center;'
                      f'color:{_TICK};font-size:14px">{_plain(p.xaxis.title.text)}</div>')
    if p.yaxis.title and p.yaxis.title.text:
        labels.append(f'<div style="position:absolute;right:calc(100% + 40px);top:0;bottom:0;writing-mode:vertical-rl;'
                      f'transform:rotate(180deg);text-align:center;color:{_TICK};font-size:14px">'
                      f'{_plain(p.yaxis.title.text)}</div>')
    (a, b), (c, d) = p.xdomain, p.ydomain
    img = (f'<img class="hcl-plot" alt="" src="data:image/svg+xml,{urllib.parse.quote(svg, safe=_URL_SAFE)}" '
           f'style="position:absolute;left:0;top:0;width:100%;height:100%">')
    return (f'<div class="hcl-panel" style="position:absolute;left:{a * 100:.2f}%;width:{(b - a) * 100:.2f}%;'
            f'top:{(1 - d) * 100:.2f}%;height:{(d - c) * 100:.2f}%">{img}{"".join(labels)}</div>', points)


def _placed_note(note: Any, *, left: float, top: float, size: int) -> str:
    """An annotation at ``left``, ``top`` (fractions of its box), anchored as Plotly anchors it."""
    x_shift = {"left": "0", "right": "-100%"}.get(note.xanchor or "center", "-50%")
    y_shift = {"bottom": "-100%", "top": "0"}.get(note.yanchor or "middle", "-50%")
    color = (note.font.color if note.font else None) or _TEXT
    size = (note.font.size if note.font else None) or size
    align = note.align if note.align in ("left", "right") else "center"
    return (f'<div class="hcl-note" style="position:absolute;left:{float(left or 0) * 100:.2f}%;'
            f'top:{top * 100:.2f}%;transform:translate({x_shift},{y_shift});color:{color};font-size:{size}px;'
            f'white-space:nowrap;line-height:1.3;text-align:{align}">{_rich(note.text)}</div>')


def _paper_note(note: Any) -> str:
    """An annotation placed on the whole plot area (a subplot's title, a message)."""
    return _placed_note(note, left=note.x, top=1 - float(note.y or 0), size=13)


def figure_html(fig: Any) -> str:
    """``fig`` (a Plotly figure of the kinds in the module docstring) as HTML + SVG, as tall as the figure.

    The outer box carries ``data-chart`` (the title, without tags) and ``data-points`` (every
    finite point drawn), as :func:`~hcl_core.plots.live.live_loss_html` does.
    """
    data, layout = [_Spec(t.to_plotly_json()) for t in fig.data], _Spec(fig.layout.to_plotly_json())
    panels = _panels(data, layout)
    height = int(layout.height or 300)
    title = _plain(layout.title.text if layout.title else "")
    margin = layout.margin
    left, right = margin.l if margin.l is not None else 55, margin.r if margin.r is not None else 15
    top, bottom = margin.t if margin.t is not None else 45, margin.b if margin.b is not None else 45
    legend = []
    if layout.showlegend is not False:
        for t in data:
            if t.showlegend is False or not t.name:
                continue
            dots = t.type == "bar" or "lines" not in (t.mode or "lines")  # a dot, or a square for bars
            color = (t.marker.color if dots else t.line.color) or "#636efa"
            corner = "0" if t.type == "bar" or t.marker.symbol == "square" else "50%"
            style = {None: "solid", "solid": "solid", "dot": "dotted"}.get(t.line.dash if t.type == "scatter" else None,
                                                                            "dashed")
            swatch = (f"width:9px;height:9px;border-radius:{corner};background:{color};margin:0 6px" if dots
                      else f"width:22px;height:0;border-top:2.5px {style} {color}")
            if t.opacity is not None:
                swatch += f";opacity:{float(t.opacity):g}"
            legend.append(f'<span style="display:inline-flex;align-items:center;white-space:nowrap">'
                          f'<span style="display:inline-block;{swatch};margin-right:5px"></span>'
                          f"{_plain(t.name)}</span>")
    drawn = [_panel_html(p) for p in panels]
    notes = [_paper_note(n) for n in layout.annotations or () if n.xref == "paper" and n.yref == "paper"]
    points = sum(n for _, n in drawn)
    plot = (f'<div style="position:relative;flex:1;min-width:0;min-height:0;margin:0 {right}px {bottom}px {left}px">'
            + "".join(h for h, _ in drawn) + "".join(notes) + "</div>")
    title_style = "padding-top:4px;box-sizing:border-box;font-size:15px;font-weight:600"
    if legend and layout.legend.orientation == "v" and (layout.legend.x or 0) >= 1:
        # A legend right of the plot (RIGHT_LEGEND): a column beside the plot area, from its top;
        # the plot keeps what is left of the width, as Plotly grows its right margin for it.
        head = f'<div style="flex:none;height:{top}px;{title_style}">{title}</div>'
        body = (f'<div style="display:flex;flex:1;min-height:0">{plot}<div style="flex:none;display:flex;'
                f'flex-direction:column;gap:4px;font-size:13px;line-height:18px;padding-right:6px">'
                f'{"".join(legend)}</div></div>')
    elif legend:
        # The legend under the title (or near the top without one), as styled() places it, wrapping
        # onto as many rows as it needs; the plot area starts at the top margin, or lower where the
        # legend needs it, as Plotly grows its top margin (one row: 22 px below the title's margin).
        head = (f'<div style="flex:none;min-height:{top}px"><div style="height:{min(top - 4, 41 if title else 11)}px;'
                f'{title_style}">{title}</div><div style="display:flex;flex-wrap:wrap;gap:2px 14px;font-size:13px;'
                f'line-height:18px;margin-bottom:8px">{"".join(legend)}</div></div>')
        body = plot
    else:
        head, body = f'<div style="flex:none;height:{top}px;{title_style}">{title}</div>', plot
    return (
        f'<div class="hcl-live-chart hcl-figure" role="img" aria-label="{title}: {points} points" '
        f'data-chart="{title}" data-points="{points}" '
        f'style="position:relative;height:{height}px;display:flex;flex-direction:column;'
        f'font-family:{html.escape(_FONT)};color:{_TEXT}">{head}{body}</div>'
    )

