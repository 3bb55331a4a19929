"""Figures as files: figure_bytes draws real PNG, SVG and PDF via kaleido and Chromium; buttons render on click."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from hcl_core.export import figures
from hcl_core.export.figures import FigureExportError, figure_bytes
from hcl_core.plots.training import Series, loss_figure

ROOT = Path(__file__).resolve().parent.parent
ORANGE = (0xD5, 0x5E, 0x00)  # HCL's colour: the curve's pixels


def _figure():
    """A real figure of the app: two loss curves, 300 px high (no width: plotly's 700 px)."""
    steps = list(range(1, 41))
    return loss_figure([Series("HCL β=1", steps, [5.0 - 0.05 * i for i in range(40)], "#D55E00"),
                        Series("H-SCL β=1", steps, [4.5 - 0.04 * i for i in range(40)], "#009E73")],
                       smooth=0.0, height=300)


@pytest.fixture(scope="module")
def rendered() -> dict[str, bytes]:
    fig = _figure()
    return {fmt: figure_bytes(fig, fmt) for fmt in ("png", "svg", "pdf")}


def test_png_is_a_real_image_of_the_figure_at_twice_its_size(rendered):
    data = rendered["png"]
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.size == (1400, 600), "700 x 300 CSS pixels at scale 2"
    pixels = image.convert("RGB")
    colours = pixels.getcolors(maxcolors=1 << 20)
    assert len(colours) > 50, "an almost blank image"
    near_orange = sum(n for n, c in colours if all(abs(a - b) <= 30 for a, b in zip(c, ORANGE, strict=True)))
    assert near_orange > 500, "the curve's orange line is not in the picture"


def test_svg_is_an_svg_document_with_the_figures_text(rendered):
    root = ET.fromstring(rendered["svg"])
    assert root.tag.endswith("svg")
    assert float(root.get("width")) == 700 and float(root.get("height")) == 300
    texts = " ".join(t.text or "" for t in root.iter() if t.tag.endswith("text"))
    assert "Training loss" in texts and "HCL β=1" in texts and "H-SCL β=1" in texts  # title, legend (Unicode)
    assert "#D55E00".lower() in rendered["svg"].decode().lower() or "rgb(213, 94, 0)" in rendered["svg"].decode()


def test_pdf_is_a_pdf(rendered):
    assert rendered["pdf"].startswith(b"%PDF-") and b"%%EOF" in rendered["pdf"][-64:]


def test_the_render_page_loads_nothing_from_the_network(monkeypatch):
    import kaleido

    calls = []
    monkeypatch.setattr(kaleido, "calc_fig_sync", lambda fig, opts, kopts: calls.append(kopts) or b"\x89PNG")
    figure_bytes(_figure(), "png")
    (kopts,) = calls
    assert kopts["mathjax"] is False, "kaleido would load MathJax from a CDN"
    page = kaleido.PageGenerator(mathjax=kopts["mathjax"]).generate_index()
    assert "http" not in page, page  # plotly.js from the installed package, nothing remote


def test_bad_format_or_no_browser_is_one_clear_error(monkeypatch):
    with pytest.raises(FigureExportError, match="format must be one of png, svg, pdf, got 'gif'"):
        figure_bytes(_figure(), "gif")
    monkeypatch.setenv("BROWSER_PATH", "/nonexistent/chromium")
    assert figures.chromium_path() is None
    with pytest.raises(FigureExportError, match="apt-get install chromium"):
        figure_bytes(_figure(), "svg")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "kaleido" else real(name, *a))
    with pytest.raises(FigureExportError, match=r'pip install "kaleido>=1"'):
        figure_bytes(_figure(), "png")


# --------------------------------------------------------------------------------------------
# the buttons (ui/figures.py)
# --------------------------------------------------------------------------------------------

PAGE = """
import plotly.graph_objects as go
import streamlit as st
from ui.figures import chart, figure_downloads

st.title("Figure downloads")
fig = go.Figure(go.Scatter(x=[0, 1, 2], y=[2, 0, 1], line={"color": "#D55E00"}),
                layout={"title": {"text": "A curve"}, "height": 300})
chart(fig, key="curve", name="A curve / β=1", formats=("png", "svg", "html"))
figure_downloads(fig, "same curve", formats=("pdf",))
"""


def _app(tmp_path: Path):
    from streamlit.testing.v1 import AppTest

    script = tmp_path / "figure_page.py"
    script.write_text(PAGE)
    return AppTest.from_file(str(script), default_timeout=60)


def test_the_buttons_render_nothing_until_clicked(tmp_path, monkeypatch):
    import ui.figures

    calls = []
    monkeypatch.setattr(ui.figures, "figure_bytes", lambda *a, **k: calls.append(a) or b"")
    at = _app(tmp_path).run()
    assert not at.exception, at.exception
    buttons = {b.proto.label: b.proto for b in at.get("download_button")}
    assert list(buttons) == ["⬇ PNG", "⬇ SVG", "⬇ HTML", "⬇ PDF"]
    assert all(b.deferred_file_id and not b.disabled for b in buttons.values())
    assert calls == [], "a figure was rendered while the page ran"
    assert len(at.get("plotly_chart")) == 1


def test_without_a_browser_the_static_buttons_are_disabled_and_say_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", "/nonexistent/chromium")
    at = _app(tmp_path).run()
    assert not at.exception, at.exception
    buttons = {b.proto.label: b.proto for b in at.get("download_button")}
    for label in ("⬇ PNG", "⬇ SVG", "⬇ PDF"):
        assert buttons[label].disabled and "apt-get install chromium" in buttons[label].help
    assert not buttons["⬇ HTML"].disabled


def test_a_second_click_is_served_from_the_cache(monkeypatch):
    import ui.figures

    calls = []
    monkeypatch.setattr(ui.figures, "figure_bytes", lambda fig, fmt: calls.append(fmt) or f"<{fmt}>".encode())
    ui.figures._render_json.cache_clear()
    fig = _figure()
    assert ui.figures._render(fig, "svg") == b"<svg>" == ui.figures._render(fig, "svg")
    assert calls == ["svg"]
    html = ui.figures._render(fig, "html")
    assert html.lower().startswith(b"<!doctype html>") and b"H-SCL" in html and calls == ["svg"]
    assert len(html) > 1_000_000 and b"<script src=" not in html, "plotly.js must be inside: it works offline"
    with pytest.raises(ValueError, match="formats must be among png, svg, pdf, html"):
        ui.figures.figure_downloads(fig, "x", formats=("gif",))


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_click_in_the_browser_downloads_a_png_drawn_on_the_server(tmp_path):
    from browser_harness import MISSING_CHROMIUM, AppServer, browser_page, chromium_available, wait_for_app

    if not chromium_available():
        pytest.fail(MISSING_CHROMIUM, pytrace=False)
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "app.py").write_text(PAGE)
    with AppServer(models_dir=tmp_path, app_dir=app_dir, env={"PYTHONPATH": str(ROOT)}) as server, \
            browser_page() as page:
        page.goto(server.url, wait_until="load")
        wait_for_app(page)
        with page.expect_download(timeout=60_000) as download:
            page.get_by_role("button", name="⬇ PNG").click()
        assert download.value.suggested_filename == "A-curve-beta-1.png"
        data = Path(download.value.path()).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(data))
    assert image.size == (1400, 600)
