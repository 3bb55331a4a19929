"""The Embeddings page's figures: the animated 2-D scatter and hover pictures (no streamlit).

Shapes: ``n`` samples of the evaluation subset; a layout is ``(n, 2)``; ``features`` are
``(n, D)``; ``labels`` are ``(n,)`` ints in ``0 .. K-1``; an image is ``(C, H, W)`` (or
``(H, W)``) with values in ``[0, 1]``.

Plotly hover labels cannot show ``<img>``, so a grayscale image becomes a small picture made of
the block characters `` ░▒▓█`` (each pixel two characters wide, so it looks square in a
monospace font); images above 12 pixels a side are averaged down to 12 x 12 first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from . import ACCENT, RIGHT_LEGEND, class_color, class_symbol, styled

#: Dark to light ink; the first is a no-break space so plotly keeps leading blanks.
SHADES = ("\u00a0", "░", "▒", "▓", "█")
#: Hover pictures of larger images are averaged down to at most this many pixels a side.
PICTURE_SIDE = 12
#: Above this many points the scatter uses WebGL (SVG slows down with thousands of markers).
WEBGL_ABOVE = 3000
HOVER_FONT = "DejaVu Sans Mono, Menlo, Consolas, monospace"


# --------------------------------------------------------------------------------------------
# images: hover pictures and upscaled thumbnails
# --------------------------------------------------------------------------------------------


def _gray(image: np.ndarray) -> np.ndarray | None:
    """``(H, W)`` float array of a grayscale image (``(1, H, W)`` or ``(H, W)``), else ``None``."""
    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    return a if a.ndim == 2 else None


def downsample(image: np.ndarray, side: int = PICTURE_SIDE) -> np.ndarray:
    """Average an ``(H, W)`` image down to at most ``side`` x ``side`` (area means, bins may differ by 1)."""
    a = np.asarray(image, dtype=np.float32)
    for axis in (0, 1):
        n = a.shape[axis]
        if n > side:
            edges = np.linspace(0, n, side + 1).round().astype(int)
            a = np.add.reduceat(a, edges[:-1], axis=axis) / np.diff(edges).reshape((-1, 1) if axis == 0 else (1, -1))
    return a


def block_picture(image: np.ndarray, side: int = PICTURE_SIDE) -> str:
    """A grayscale image as lines of `` ░▒▓█`` joined by ``<br>`` (for a plotly hover label).

    ``image``: ``(1, H, W)`` or ``(H, W)`` in ``[0, 1]``, high values = ink = ``█``. Colour
    images and vectors give ``""``. An 8x8 digit gives 8 lines of 16 characters.
    """
    gray = _gray(image)
    if gray is None:
        return ""
    levels = np.clip((downsample(gray, side) * len(SHADES)).astype(int), 0, len(SHADES) - 1)
    return "<br>".join("".join(SHADES[v] * 2 for v in row) for row in levels)


def hover_texts(labels: np.ndarray, indices: np.ndarray, class_names: Sequence[str],
                inputs: np.ndarray | None = None) -> list[str]:
    """One hover label per sample: class, test-set index and (grayscale images) a block picture.

    ``labels``, ``indices``: ``(n,)``; ``inputs``: ``(n, C, H, W)`` images, ``(n, D)`` vectors
    or ``None``.
    """
    pictures = [""] * len(labels)
    if inputs is not None and inputs.ndim == 4 and inputs.shape[1] == 1:
        pictures = [block_picture(x) for x in inputs]
    return [f"<b>class {class_names[int(k)]}</b> · test #{int(i)}" + (f"<br>{p}" if p else "")
            for k, i, p in zip(labels, indices, pictures, strict=True)]


def thumbnail(image: np.ndarray, size: int = 96) -> np.ndarray | None:
    """``uint8`` image for ``st.image``, enlarged by nearest neighbour to about ``size`` pixels a side.

    ``image``: ``(1, H, W)``, ``(H, W)`` or ``(3, H, W)`` in ``[0, 1]``; returns ``(H', W')`` or
    ``(H', W', 3)``, or ``None`` for a vector (nothing to show).
    """
    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
    if a.ndim not in (2, 3):
        return None
    k = max(1, size // max(a.shape[:2]))
    a = np.repeat(np.repeat(a, k, axis=0), k, axis=1)
    return (np.clip(a, 0, 1) * 255).round().astype(np.uint8)


# --------------------------------------------------------------------------------------------
# the animated scatter
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Highlight:
    """Points to ring in every frame: the chosen sample, its nearest neighbours, its hardest negatives."""

    sample: int
    nearest: Sequence[int] = ()
    hardest: Sequence[int] = ()


def layout_ranges(layouts: Sequence[np.ndarray], pad: float = 0.06) -> tuple[list[float], list[float]]:
    """Axis ranges holding every point of every frame, with a margin (fixed: frames never rescale)."""
    pts = np.concatenate([np.asarray(lay, dtype=np.float64) for lay in layouts])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    span = np.maximum(hi - lo, 1e-9)
    lo, hi = lo - pad * span, hi + pad * span
    return [float(lo[0]), float(hi[0])], [float(lo[1]), float(hi[1])]


def _frame_data(layout: np.ndarray, groups: list[np.ndarray], highlight: Highlight | None) -> list[dict]:
    """x/y of every trace for one layout: one trace per class, then the highlight rings."""
    data = [dict(x=layout[g, 0], y=layout[g, 1]) for g in groups]
    if highlight is not None:
        for rows in ([highlight.sample], list(highlight.nearest), list(highlight.hardest)):
            rows = np.asarray(rows, dtype=int)
            data.append(dict(x=layout[rows, 0], y=layout[rows, 1]))
    return data


def embedding_figure(
    layouts: Sequence[np.ndarray],
    epochs: Sequence[int],
    labels: np.ndarray,
    *,
    class_names: Sequence[str],
    active: int | None = None,
    hover: Sequence[str] | None = None,
    axis_titles: Sequence[tuple[str, str]] | None = None,
    titles: Sequence[str] | None = None,
    highlight: Highlight | None = None,
    show_ticks: bool = True,
    equal_aspect: bool = True,
    frame_ms: int = 600,
    height: int = 640,
    revision: str = "embeddings",
    ranges: tuple[list[float], list[float]] | None = None,
    validate: bool = False,
) -> go.Figure:
    """A scatter of ``n`` samples coloured by class, animated over epochs in the browser.

    ``layouts``: one ``(n, 2)`` array per epoch in ``epochs`` (already aligned across epochs);
    ``labels``: ``(n,)``. The figure opens at ``epochs[active]`` (default the last) and holds one
    frame per epoch, a play/pause pair and a slider: playback runs client-side, without server
    round trips. The axis ranges are fixed to hold every frame; ``equal_aspect``: a unit is as
    long on both axes (right for PCA). ``axis_titles``/``titles``: one per epoch (they follow the
    frame). ``ranges``: fixed ``(x, y)`` axis ranges, e.g. :func:`layout_ranges` of every epoch when
    the figure shows one epoch at a time (so the axes hold still between epochs). ``hover``:
    ``(n,)`` hover labels, shown in a monospace font. Every class trace
    carries ``customdata`` = row index, so a click tells which sample it was. Zoom and hidden
    classes survive a rebuild while ``revision`` stays the same.

    Built from plain dicts and, unless ``validate`` (the tests use it), without plotly's property
    validation, which costs about as much as the rest of the build on every rerun.
    """
    if not layouts or len(layouts) != len(epochs):
        raise ValueError(f"need one layout per epoch, got {len(layouts)} layouts for {len(epochs)} epochs")
    labels = np.asarray(labels)
    n = len(labels)
    layouts = [np.asarray(lay, dtype=np.float32) for lay in layouts]
    for lay in layouts:
        if lay.shape != (n, 2):
            raise ValueError(f"layout of shape {lay.shape} does not fit {n} labels: expected ({n}, 2)")
    active = len(epochs) - 1 if active is None else active
    classes = [int(k) for k in np.unique(labels)]
    groups = [np.flatnonzero(labels == k) for k in classes]
    kind = "scattergl" if n > WEBGL_ABOVE else "scatter"
    hover = np.asarray(hover if hover is not None else [f"#{i}" for i in range(n)], dtype=object)

    start = _frame_data(layouts[active], groups, highlight)
    traces = [dict(
        type=kind, **d, mode="markers", name=str(class_names[k]),
        # a list, not an array: plotly would send a typed array, and a click would return that
        customdata=[[int(i)] for i in g], hovertext=list(hover[g]), hovertemplate="%{hovertext}<extra></extra>",
        marker=dict(color=class_color(k), symbol=class_symbol(k), size=7, opacity=0.85, line=dict(width=0.5,
                                                                                                  color="white")),
        selected=dict(marker=dict(opacity=1.0)), unselected=dict(marker=dict(opacity=0.85)),
        hoverlabel=dict(bordercolor=class_color(k)),
    ) for k, g, d in zip(classes, groups, start, strict=False)]
    if highlight is not None:
        rings = (("chosen sample", "#000000", 18, 3), ("nearest neighbours", "#000000", 13, 1.5),
                 ("hardest negatives", ACCENT, 13, 2.5))
        traces += [dict(type=kind, **d, mode="markers", name=name, hoverinfo="skip",
                        marker=dict(symbol="circle-open", size=size, color=color, line=dict(width=width, color=color)))
                   for (name, color, size, width), d in zip(rings, start[len(groups):], strict=True)]

    def frame_layout(i: int) -> dict:
        out: dict = {}
        if axis_titles is not None:
            out["xaxis"] = {"title": {"text": axis_titles[i][0]}}
            out["yaxis"] = {"title": {"text": axis_titles[i][1]}}
        if titles is not None:
            out["title"] = {"text": titles[i]}
        return out

    names = [str(e) for e in epochs]
    frames = [dict(name=name, data=_frame_data(lay, groups, highlight), layout=frame_layout(i))
              for i, (name, lay) in enumerate(zip(names, layouts, strict=True))]
    fig = go.Figure(data=traces, frames=frames, _validate=validate)
    xr, yr = ranges if ranges is not None else layout_ranges(layouts)
    fig = styled(fig, title=titles[active] if titles else None, height=height)
    fig.update_layout(frame_layout(active))
    fig.update_layout(
        hovermode="closest", dragmode="zoom", uirevision=revision,
        hoverlabel=dict(font=dict(family=HOVER_FONT, size=12, color="#000000"), bgcolor="white", align="left"),
        legend=dict(RIGHT_LEGEND, title=dict(text="class"), itemsizing="constant"),
        margin=dict(r=10, b=45 if len(epochs) == 1 else 130),
    )
    fig.update_xaxes(range=xr, autorange=False, zeroline=False, showticklabels=show_ticks)
    fig.update_yaxes(range=yr, autorange=False, zeroline=False, showticklabels=show_ticks)
    if equal_aspect:  # a unit is as long on both axes, so distances on screen are distances in the plane
        fig.update_yaxes(scaleanchor="x", scaleratio=1)
    if len(epochs) > 1:
        # redraw: without it the per-frame titles stay at the first frame's (points still glide)
        step = dict(mode="immediate", frame=dict(duration=0, redraw=True), transition=dict(duration=0))
        play = dict(mode="immediate", fromcurrent=False, frame=dict(duration=frame_ms, redraw=True),
                    transition=dict(duration=int(frame_ms * 0.6), easing="cubic-in-out"))
        fig.update_layout(
            updatemenus=[dict(
                type="buttons", direction="left", showactive=False, x=0.0, xanchor="left", y=-0.13,
                yanchor="top", pad=dict(t=0, r=10),
                buttons=[dict(label="▶ Play", method="animate", args=[names, play]),  # always from the first epoch
                         dict(label="❚❚ Pause", method="animate", args=[[None], step])],
            )],
            sliders=[dict(
                active=active, x=0.3, len=0.7, xanchor="left", y=-0.11, yanchor="top", pad=dict(t=0, b=0),
                currentvalue=dict(prefix="epoch ", xanchor="right", font=dict(size=13)),
                steps=[dict(label=name, method="animate", args=[[name], step]) for name in names],
            )],
        )
    return fig
