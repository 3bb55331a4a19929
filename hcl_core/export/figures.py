"""A Plotly figure as a PNG, SVG or PDF file's bytes, drawn on the server by kaleido.

kaleido (>= 1) renders a figure with plotly.js inside a headless Chrome or Chromium that it
starts for the call (about two seconds, most of it the browser's start). Set-up on Debian::

    apt-get install chromium          # /usr/bin/chromium; ./run.sh setup installs it
    pip install "kaleido>=1"          # in requirements.txt

The browser is found in this order: the ``BROWSER_PATH`` variable (kaleido's own), then
``HCL_CHROMIUM`` (the browser tests' variable), then ``chromium`` / ``chromium-browser`` /
``google-chrome`` on the ``PATH``. Never ``kaleido_get_chrome``/``plotly_get_chrome``: they
download a browser.

Nothing is fetched from the network: plotly.js comes from the installed plotly package, and
MathJax (which kaleido would load from a CDN) is switched off; the app's figures write their
formulas in Unicode, not LaTeX.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from ._common import ExportError

__all__ = ["FIGURE_FORMATS", "FigureExportError", "chromium_path", "figure_bytes", "static_export_problem"]

#: Formats and their MIME types.
FIGURE_FORMATS = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf"}
_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
#: Seconds one figure may take before the render is abandoned.
RENDER_TIMEOUT_S = 60


class FigureExportError(ExportError):
    """A figure cannot be rendered here: kaleido or a browser is missing, or the render failed."""


def chromium_path() -> str | None:
    """The Chrome/Chromium kaleido will drive, or None when this machine has none."""
    for var in ("BROWSER_PATH", "HCL_CHROMIUM"):
        path = os.environ.get(var)
        if path:
            return path if os.access(path, os.X_OK) else None
    for name in _BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def static_export_problem() -> str | None:
    """Why :func:`figure_bytes` cannot work here (what to install), or None when it can.

    Cheap enough for every page run: kaleido is looked up, not imported.
    """
    import importlib.util

    if importlib.util.find_spec("kaleido") is None:
        return 'PNG and SVG need the kaleido package on the server: pip install "kaleido>=1".'
    if chromium_path() is None:
        return "PNG and SVG need Chrome or Chromium on the server: apt-get install chromium (or set BROWSER_PATH)."
    return None


def figure_bytes(fig: Any, fmt: str = "png", *, width: int | None = None, height: int | None = None,
                 scale: float | None = None) -> bytes:
    """``fig`` (a ``plotly.graph_objects.Figure`` or its dict) rendered as ``fmt`` (png, svg or pdf).

    Args:
        width, height: the size in CSS pixels; by default the figure's own layout size, else
            plotly's 700 x 500.
        scale: pixels per CSS pixel of a PNG; 2 by default (sharp on slides and high-DPI
            screens). Ignored for the vector formats.

    Raises:
        FigureExportError: a bad ``fmt``, no kaleido, no browser, or a failed render; the
            message says what to install.
    """
    if fmt not in FIGURE_FORMATS:
        raise FigureExportError(f"format must be one of {', '.join(FIGURE_FORMATS)}, got {fmt!r}")
    problem = static_export_problem()
    if problem is not None:
        raise FigureExportError(problem)
    import kaleido

    browser = chromium_path()
    layout = (fig.to_dict() if hasattr(fig, "to_dict") else dict(fig)).get("layout", {})
    opts = {
        "format": fmt,
        "width": width or layout.get("width") or 700,
        "height": height or layout.get("height") or 500,
        "scale": (scale or 2) if fmt == "png" else 1,
    }
    try:
        data = kaleido.calc_fig_sync(fig, opts=opts,
                                     kopts={"mathjax": False, "path": browser, "timeout": RENDER_TIMEOUT_S})
    except Exception as e:  # kaleido reports a dead browser, a timeout or a plotly.js error in many types
        raise FigureExportError(f"the {fmt.upper()} render failed ({type(e).__name__}: {e})") from e
    if isinstance(data, str):
        data = data.encode()
    return bytes(data)
