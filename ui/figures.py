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

__all__ = ["FORMATS", "INTERACTIVE_KEY", "figure_downloads", "interactive_charts", "plotly_chart", "show_chart",
           "static_export_problem"]

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


def plotly_chart(fig: Any, *, key: str, name: str | None = None, formats: tuple[str, ...] = ("png", "svg"),
                 **kwargs: Any) -> None:
    """``st.plotly_chart(fig, key=key, ...)`` with :func:`figure_downloads` under it (file name ``name`` or ``key``)."""
    config = {"displaylogo": False, **kwargs.pop("config", {})}
    st.plotly_chart(fig, key=key, config=config, **kwargs)
    figure_downloads(fig, name or key, key=key, formats=formats)


def interactive_charts() -> bool:
    """The *Interactive charts* toggle: whether charts with a markup form are drawn with Plotly.

    One choice for every page that shows the toggle, kept across pages: Streamlit drops a
    widget's value in a run that does not draw it, so it is kept aside and put back.
    """
    saved = INTERACTIVE_KEY + "_saved"
    if INTERACTIVE_KEY in st.session_state:
        st.session_state[saved] = st.session_state[INTERACTIVE_KEY] = st.session_state[INTERACTIVE_KEY]
    elif saved in st.session_state:
        st.session_state[INTERACTIVE_KEY] = st.session_state[saved]
    return st.toggle("Interactive charts", key=INTERACTIVE_KEY,
                     help="Draw the charts below with Plotly: values on hover, zoom, legend clicks. Off: light "
                          "charts that show at once (each Plotly chart costs a small machine's browser about "
                          "0.1 s to draw, again at every visit). The downloads are the same either way.")


def show_chart(fig: Any, markup: str | None, *, interactive: bool, key: str, **kwargs: Any) -> None:
    """``fig`` with ``st.plotly_chart(fig, key=key, **kwargs)`` when ``interactive`` or when it has no
    ``markup``; otherwise its markup."""
    if interactive or markup is None:
        st.plotly_chart(fig, key=key, **kwargs)
    else:
        st.html(markup)
