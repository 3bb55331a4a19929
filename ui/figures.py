"""How pages show charts: light or interactive, and download buttons that give a chart as a PNG, SVG
(or PDF, or interactive HTML) file, drawn on the server.

A chart with a markup form (:func:`hcl_core.plots.markup.figure_html`) is drawn as that unless
the reader turns on :func:`interactive_charts`: a Plotly chart costs a small machine's browser
about 0.1 s to draw (BENCHMARKS.md), and a page switch draws all of them again.

``figure_downloads(fig, name)`` puts a row of small buttons under a chart. Nothing is rendered
while the page runs: each button holds a callable that Streamlit calls only when it is clicked
(``st.download_button``'s deferred data), so a page with a dozen charts costs nothing extra until
someone wants a file. The render (:func:`hcl_core.export.figure_bytes`, kaleido driving
Chromium) takes about two seconds; the last few renders are kept, so a second click is instant.

Where kaleido or a browser is missing the buttons show disabled, with the set-up line as their
tooltip, instead of failing on click.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import streamlit as st

from hcl_core.export.figures import FIGURE_FORMATS, figure_bytes, static_export_problem
from ui.controls import keep_across_pages

__all__ = ["FORMATS", "INTERACTIVE_KEY", "chart", "figure_downloads", "interactive_charts", "static_export_problem"]

#: The *Interactive charts* toggle's key: one choice for every page that offers the toggle.
INTERACTIVE_KEY = "interactive_charts"

#: Every format a button can offer, with its MIME type.
FORMATS = {**FIGURE_FORMATS, "html": "text/html"}
_LABELS = {"png": "PNG", "svg": "SVG", "pdf": "PDF", "html": "HTML"}
_HELP = {
    "png": "The chart as a PNG image (twice the on-screen resolution), drawn on the server.",
    "svg": "The chart as an SVG vector image (for slides and papers), drawn on the server.",
    "pdf": "The chart as a one-page PDF (vector), drawn on the server.",
    "html": "The chart as an interactive HTML page that works offline (plotly.js inside, about 5 MB).",
}


_GREEK = str.maketrans({"β": "beta", "τ": "tau", "⁺": "_plus"})


def _slug(name: str) -> str:
    """A portable file name: ASCII letters, digits, ``_ . -`` (β and τ spelled out)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name.translate(_GREEK)).strip("-.") or "figure"


def _render(fig: Any, fmt: str) -> bytes:
    """The file for ``fig``; called on a click, never while the page runs."""
    return _render_json(fig.to_json(), fmt)


@functools.lru_cache(maxsize=16)
def _render_json(spec_json: str, fmt: str) -> bytes:
    """The file for a figure given as its JSON (the cache key: equal JSON, equal picture)."""
    import plotly.io as pio

    fig = pio.from_json(spec_json, skip_invalid=True)
    if fmt == "html":
        return fig.to_html(include_plotlyjs=True, full_html=True, config={"displaylogo": False}).encode()
    return figure_bytes(fig, fmt)


def figure_downloads(fig: Any, name: str, *, key: str | None = None,
                     formats: tuple[str, ...] = ("png", "svg")) -> None:
    """A row of download buttons (``formats`` of png, svg, pdf, html) for the Plotly figure ``fig``.

    Args:
        fig: the figure as shown. It is serialised only on a click (no cost while the page
            runs), so it must not be changed after this call.
        name: the file name without extension (unsafe characters become ``-``).
        key: the widget keys' stem; ``name`` by default. Two rows on one page need two keys.
        formats: the buttons, in order.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"formats must be among {', '.join(FORMATS)}, got {unknown}")
    stem = _slug(name)
    problem = static_export_problem() if any(f != "html" for f in formats) else None
    row = st.container(horizontal=True, gap="small")
    for fmt in formats:
        blocked = problem if fmt != "html" else None
        row.download_button(
            f"⬇ {_LABELS[fmt]}", functools.partial(_render, fig, fmt), file_name=f"{stem}.{fmt}",
            mime=FORMATS[fmt], key=f"figdl_{key or stem}_{fmt}", on_click="ignore", type="tertiary",
            disabled=blocked is not None, help=blocked or _HELP[fmt],
        )


def chart(fig: Any, *, key: str, name: str | None = None, markup: str | None = None, interactive: bool = False,
          downloads: bool = True, formats: tuple[str, ...] = ("png", "svg"), **kwargs: Any) -> None:
    """One chart with :func:`figure_downloads` under it: ``fig`` drawn by Plotly, or its ``markup``
    (:func:`hcl_core.plots.markup.figure_html`) when there is one and ``interactive`` is false.

    Args:
        fig: the Plotly figure; the downloads are drawn from it either way.
        key: the chart's widget key and the download buttons' stem.
        name: the file name (without extension) of the downloads and of Plotly's own camera
            button; ``key`` by default.
        markup: the light form of ``fig``, or None where it has none.
        interactive: draw ``fig`` with Plotly even where there is markup (:func:`interactive_charts`).
        downloads: False for a chart that changes at every refresh (a live run's).
        formats: the download buttons, as in :func:`figure_downloads`.
        **kwargs: passed to ``st.plotly_chart`` (``config`` is merged into the defaults).
    """
    name = name or key
    if interactive or markup is None:
        config = {"displaylogo": False, "toImageButtonOptions": {"filename": _slug(name), "scale": 2},
                  **kwargs.pop("config", {})}
        st.plotly_chart(fig, key=key, config=config, **kwargs)
    else:
        st.html(markup)
    if downloads:
        figure_downloads(fig, name, key=key, formats=formats)


def interactive_charts() -> bool:
    """The *Interactive charts* toggle: whether charts with a markup form are drawn with Plotly.

    One choice for every page that shows the toggle, kept across pages (:func:`keep_across_pages`).
    """
    keep_across_pages(INTERACTIVE_KEY)
    return st.toggle("Interactive charts", key=INTERACTIVE_KEY,
                     help="Draw the charts below with Plotly: values on hover, zoom, legend clicks. Off: light "
                          "charts that show at once (each Plotly chart costs a small machine's browser about "
                          "0.1 s to draw, again at every visit). The downloads are the same either way.")
