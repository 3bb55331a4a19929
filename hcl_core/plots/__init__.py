"""Figure builders shared by the app and the reports (never streamlit): Plotly figures, and for
charts redrawn at every live refresh, markup: the loss (:mod:`.live`) and any of these figures
(:mod:`.markup`).

Colours are colour-blind safe: classes use Paul Tol's "muted" scheme (10 colours) and, beyond
ten classes, cycle with distinct marker symbols; losses use the Okabe-Ito palette.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import plotly.graph_objects as go

from ..registry import LOSSES

#: Paul Tol's muted qualitative scheme plus its pale grey: distinguishable with every common
#: colour-vision deficiency.
CLASS_COLORS = ("#CC6677", "#332288", "#DDCC77", "#117733", "#88CCEE",
                "#882255", "#44AA99", "#999933", "#AA4499", "#555555")
CLASS_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "cross", "star", "pentagon")

#: Okabe-Ito, one colour per loss (the registry's), fixed so a loss looks the same on every page.
LOSS_COLORS = {name: spec.color for name, spec in LOSSES.items()}
ACCENT = "#D55E00"  # hardness, wherever it is highlighted
MUTED = "#888888"


def loss_shade(loss: str, k: int, n: int) -> str:
    """The ``k``-th of ``n`` shades of ``loss``'s colour (k = 0 is the colour itself).

    Two runs of one loss shown together keep their loss's hue, so colour always says which loss:
    later runs are mixed towards white, by at most 60 % so the lightest stays visible on white.
    """
    base = LOSS_COLORS.get(loss, MUTED).lstrip("#")
    if n <= 1 or k == 0:
        return "#" + base.upper()
    mix = 0.6 * k / (n - 1)
    rgb = (int(base[i : i + 2], 16) for i in (0, 2, 4))
    return "#" + "".join(f"{round(c + (255 - c) * mix):02X}" for c in rgb)


def class_color(k: int) -> str:
    return CLASS_COLORS[k % len(CLASS_COLORS)]


def class_symbol(k: int) -> str:
    return CLASS_SYMBOLS[(k // len(CLASS_COLORS)) % len(CLASS_SYMBOLS)]


#: A vertical legend to the right of the plot, from its top (classes, long lists of losses).
RIGHT_LEGEND = dict(orientation="v", yref="paper", y=1.0, yanchor="top", x=1.01, xanchor="left")
_TITLE_PX = 36  # the title's line, from the top of the figure, above the legend


@functools.cache
def _white_template() -> dict:
    """plotly_white as a plain dict, validated once (setting it by name validates it at every figure)."""
    import plotly.io as pio

    return pio.templates["plotly_white"].to_plotly_json()


def styled(fig: go.Figure, *, title: str | None = None, x: str | None = None, y: str | None = None,
           height: int = 320, legend: bool = True) -> go.Figure:
    """The common look: white background, labelled axes, compact margins, the legend under the title.

    Title and legend are placed in pixels from the top of the figure (``yref="container"``), and
    plotly grows the top margin to fit the legend: however many entries wrap onto new lines,
    they never cover the title or the plot.

    Returns a new figure (use the return value): the layout is merged as a dict and the figure
    rebuilt without validation, because ``update_layout`` with a template validates every
    property of the template again, 60-100 ms per figure, most of a Compare rerun (BENCHMARKS.md).
    Traces, frames and the subplot grid are carried over as they are (they were validated when built).
    """
    layout = fig.layout.to_plotly_json()
    legend_top = (_TITLE_PX if title else 6) / height
    layout.pop("title", None)
    if title:
        layout["title"] = dict(text=title, x=0, xanchor="left", yref="container", y=1.0, yanchor="top",
                               pad=dict(t=10), font=dict(size=15))
    layout.update(
        template=_white_template(),
        height=height,
        margin=dict(l=55, r=15, t=45 if title else 15, b=45),
        showlegend=legend,
        legend={**layout.get("legend", {}), **dict(orientation="h", yref="container", yanchor="top",
                                                     y=1.0 - legend_top, xanchor="left", x=0.0)},
        font={**layout.get("font", {}), "size": 13},
        hoverlabel={**layout.get("hoverlabel", {}), "font": {**layout.get("hoverlabel", {}).get("font", {}),
                                                              "size": 13}},
    )
    for letter, text in (("x", x), ("y", y)):
        if text is None:
            continue
        axes = [k for k in layout if re.fullmatch(f"{letter}axis[0-9]*", k)] or [f"{letter}axis"]
        for k in axes:
            axis = layout.setdefault(k, {})
            axis["title"] = {**axis.get("title", {}), "text": text}
    # The grid of make_subplots travels as plotly's own copies carry it, so row/col keep working.
    return go.Figure({"data": fig.data, "layout": layout, "frames": fig.frames, "_grid_ref": fig._grid_ref,
                      "_grid_str": fig._grid_str}, _validate=False)


def add_hlines(fig: go.Figure, lines: list[dict[str, Any]]) -> go.Figure:
    """Horizontal lines across the plot, as ``fig.add_hline(**line)`` draws each, in one layout update.

    Each line takes ``add_hline``'s arguments: ``y``, ``line`` (color, dash, width), ``opacity``,
    ``annotation_text``, ``annotation_position`` ("top right", "bottom left", ...) and
    ``annotation_font``. ``add_hline`` costs about 8 ms a line (plotly resolves every axis again),
    and the probe chart, rebuilt at every evaluation of a live run, draws six. Returns ``fig``.
    """
    shapes, notes = list(fig.layout.shapes), list(fig.layout.annotations)
    for h in lines:
        shapes.append(dict(type="line", xref="x domain", x0=0, x1=1, yref="y", y0=h["y"], y1=h["y"],
                           line=h.get("line", {}), **({"opacity": h["opacity"]} if "opacity" in h else {})))
        if h.get("annotation_text"):
            vertical, horizontal = h.get("annotation_position", "top right").split()
            notes.append(dict(xref="x domain", x=1 if horizontal == "right" else 0, xanchor=horizontal, yref="y",
                              y=h["y"], yanchor="bottom" if vertical == "top" else "top", showarrow=False,
                              text=h["annotation_text"], font=h.get("annotation_font", {})))
    return fig.update_layout(shapes=shapes, annotations=notes)
