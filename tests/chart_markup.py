"""Reading the charts the app draws as markup (``hcl_core.plots.live`` and ``.markup``) in tests."""

from __future__ import annotations

import re
import urllib.parse
from html.parser import HTMLParser

import numpy as np


class ChartMarkup(HTMLParser):
    """The outer box's attributes, each plot area's SVG (decoded from its image's data URI) and
    panel style, and every text (tick labels, titles, legend, line labels)."""

    def __init__(self, markup: str):
        super().__init__()
        self.outer: dict[str, str] = {}
        self.svgs: list[str] = []
        self.panels: list[str] = []
        self.texts: list[str] = []
        self.feed(markup)

    @property
    def svg(self) -> str:
        return self.svgs[0]

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if not self.outer:
            self.outer = a
        if "hcl-panel" in (a.get("class") or ""):
            self.panels.append(a["style"])
        if tag == "img":
            self.svgs.append(urllib.parse.unquote(a["src"].removeprefix("data:image/svg+xml,")))

    def handle_data(self, data):
        if data.strip():
            self.texts.append(data.strip())

    def path(self, cls: str) -> np.ndarray:
        """The points of the first SVG path of class ``cls`` (view-box coordinates)."""
        return paths(self.svg, cls)[0]


def paths(svg: str, cls: str) -> list[np.ndarray]:
    """The points of every path of class ``cls`` in ``svg`` (view-box coordinates), one array each;
    a dot (``M x y h0``) is its point."""
    return [np.array([[float(v) for v in p.removesuffix("h0").split()] for p in re.split(r"[ML]", d) if p])
            for d in re.findall(rf"class='{cls}' d='([^']*)'", svg)]
