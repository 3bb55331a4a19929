"""The real app in Debian's chromium (Playwright): train, watch it live, stop, open every page.

Needs ``/usr/bin/chromium`` (``./run.sh setup`` installs it; CI has it), so a missing browser is
a failure with that instruction, not a skip. The server, the browser and the helpers live in
``tests/browser_harness.py``, shared with the benchmarks in ``bench/``.
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlparse

import pytest
from browser_harness import (
    EXCEPTION_SELECTOR,
    MISSING_CHROMIUM,
    AppServer,
    browser_page,
    button,
    chart_points,
    chromium_available,
    click_button,
    exceptions_on_page,
    wait_enabled,
    wait_for_app,
    wait_for_loss_points,
)
from playwright.sync_api import expect

from hcl_core.registry import LOSSES

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(180)]

#: A digits run long enough that even a fast machine is still training when Stop is pressed
#: (500 epochs of 44 steps); it is stopped after a few seconds.
RUN_QUERY = "?epochs=500&batch_size=32&snapshot_every=100"
PAGES = {"": "Hardness Explorer", "embeddings": "Embeddings", "negatives": "Negatives",
         "compare": "Compare", "theory": "Theory"}


def _progress_text(page) -> str:
    bar = page.locator('[data-testid="stProgress"]').first
    bar.wait_for(state="visible", timeout=30_000)
    return bar.inner_text()


def _assert_no_exception(page, where: str) -> None:
    errors = exceptions_on_page(page)
    assert not errors, f"{where}: Streamlit shows an exception:\n" + "\n---\n".join(errors)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    if not chromium_available():
        pytest.fail(MISSING_CHROMIUM, pytrace=False)
    models = tmp_path_factory.mktemp("models")
    with AppServer(models_dir=models) as server, browser_page() as page:
        yield server, page


def test_train_live_stop_and_every_page(app):
    server, page = app
    page.goto(server.url + "/" + RUN_QUERY, wait_until="load")
    wait_for_app(page)
    _assert_no_exception(page, "Train page")
    # The link's parameters filled the controls.
    expect(page.get_by_role("spinbutton", name="Epochs", exact=True)).to_have_value("500", timeout=10_000)

    click_button(page, "Start")
    # Live: the progress bar runs and the loss curve gains points between refreshes.
    first = wait_for_loss_points(page, 1, timeout_s=60)
    assert first["found"] and first["paths"] > 0
    later = wait_for_loss_points(page, first["points"] + 1, timeout_s=30)
    assert later["points"] > first["points"]
    text = _progress_text(page)
    assert text.startswith("Running: epoch"), text
    assert "step" in text
    # The bar jumps to each value (app.py): a transition's repaints cost the training worker CPU.
    glide = page.evaluate("""() => [...document.querySelectorAll('[data-testid="stProgress"] *')]
                                   .map(e => getComputedStyle(e).transitionDuration)""")
    assert glide and set(glide) == {"0s"}, glide

    click_button(page, "Stop", timeout_s=10)
    # The stopped state: a warning saying so, the progress line says Stopped, Start is back.
    page.get_by_text("stopped by the user").first.wait_for(timeout=15_000)
    assert _progress_text(page).startswith("Stopped"), _progress_text(page)
    try:
        wait_enabled(page, "Start", timeout_s=10)
        expect(button(page, "Stop")).to_be_disabled(timeout=5_000)
    except AssertionError as e:
        raise AssertionError(
            "after Stop the run is stopped but Start stays disabled and Stop enabled: pages/train.py "
            "draws the buttons before it handles the click (fix: st.rerun() after job.stop())"
        ) from e
    _assert_no_exception(page, "Train page after Stop")
    # The Stop reran the page, which draws the chart anew: read it once it is drawn again.
    stopped_points = wait_for_loss_points(page, 1, timeout_s=15)["points"]
    time.sleep(1.5)  # no more refreshes: the curve stays as it was
    assert chart_points(page)["points"] == stopped_points

    runs = [p for p in server.models_dir.iterdir() if (p / "status.json").exists()]
    assert len(runs) == 1, runs
    status = json.loads((runs[0] / "status.json").read_text())
    assert status["state"] == "stopped", status

    for path, title in PAGES.items():
        page.goto(f"{server.url}/{path}", wait_until="load")
        wait_for_app(page)
        page.get_by_role("heading", name=title).first.wait_for(timeout=30_000)
        time.sleep(1.0)  # late elements (fragments, toasts) have time to appear
        _assert_no_exception(page, f"page /{path}")

    # The sidebar navigates too (without a reload).
    page.locator('[data-testid="stSidebarNavLink"]', has_text="Compare").first.click()
    page.get_by_role("heading", name="Compare").first.wait_for(timeout=30_000)
    _assert_no_exception(page, "Compare via the sidebar")


def test_the_exception_check_sees_a_failing_page(app, tmp_path):
    """The check above is not vacuous: a page that raises is reported, with its message."""
    _, page = app
    (tmp_path / "app.py").write_text('import streamlit as st\nst.title("boom")\nraise ValueError("deliberate")\n')
    with AppServer(models_dir=tmp_path, app_dir=tmp_path) as failing:
        page.goto(failing.url, wait_until="load")
        wait_for_app(page)
        page.locator(EXCEPTION_SELECTOR).first.wait_for(timeout=15_000)
        errors = exceptions_on_page(page)
    assert errors and "ValueError: deliberate" in errors[0]


def test_a_deep_link_as_the_first_request_opens_the_page_inside_the_app(app, tmp_path):
    """A fresh server whose first request is ``/negatives?run=…`` shows the app's navigation
    (titles with icons, wide layout) and the linked run, not the bare pages/ scripts."""
    from page_runs import copy_runs

    _, page = app  # the module's browser; a server of this test's own
    runs = copy_runs(tmp_path)
    run_id = runs["hcl"].name
    with AppServer(models_dir=tmp_path) as server:
        page.goto(f"{server.url}/negatives?run={run_id}", wait_until="load")
        wait_for_app(page)
        page.get_by_role("heading", name="Negatives").first.wait_for(timeout=30_000)
        nav = page.locator('[data-testid="stSidebarNavLink"]')
        expect(nav.first).to_be_visible(timeout=15_000)
        assert nav.all_inner_texts()[:1] != ["app"], nav.all_inner_texts()
        assert any("Train" in t for t in nav.all_inner_texts()), nav.all_inner_texts()
        assert run_id in page.url
        assert page.get_by_role("button", name="Deploy").count() == 0  # no developer toolbar in class
        _assert_no_exception(page, "deep link")


def test_a_linked_data_folder_needs_a_click_then_download_fetches_mnist_from_a_loopback_mirror(app, tmp_path):
    """The Download button in the real app: files served on 127.0.0.1 in MNIST's real format, verified
    with their own checksums, placed in the folder the link named (after the user confirmed it)."""
    from test_download import Server, serve_mnist

    _, page = app
    server = Server()
    try:
        _, checksums = serve_mnist(server, tmp_path, n_train=200, n_test=100)
        (tmp_path / "md5.json").write_text(json.dumps(checksums))
        data = tmp_path / "data"
        env = {"HCL_DATA_MIRROR": server.url, "HCL_DATA_CHECKSUMS": str(tmp_path / "md5.json")}
        with AppServer(models_dir=tmp_path / "models", env=env) as mirror_app:
            page.goto(f"{mirror_app.url}/?dataset=mnist&data_root={data}", wait_until="load")
            wait_for_app(page)
            page.get_by_text("Read data from it?").first.wait_for(timeout=30_000)
            assert page.get_by_role("button", name="Download").count() == 0  # not before the confirmation
            click_button(page, "Use this data folder")
            click_button(page, "Download MNIST")
            page.get_by_text("downloaded and verified").first.wait_for(timeout=60_000)
            _assert_no_exception(page, "download")
    finally:
        server.close()
    assert sorted(p.name for p in (data / "MNIST" / "raw").iterdir()) == sorted(checksums)


def _sidebar_slider(page, label: str):
    return page.locator('[data-testid="stSidebar"] [data-testid="stSlider"] '
                        f'input[type="range"][aria-label^="{label}"]')


def _choose_loss(page, label: str) -> None:
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]', has_text="Loss").first.click()
    page.get_by_role("option", name=label, exact=True).first.click()
    _settle(page)


def _settle(page) -> None:
    """Until the script has not run for a second: the last rerun is on screen and a key press
    now is not lost to a rerun under way."""
    page.evaluate("() => { window.__quiet = undefined; }")
    page.wait_for_function(
        """() => { const a = document.querySelector('[data-testid="stApp"]'), now = performance.now();
                   if (window.__quiet === undefined || !a || a.getAttribute('data-test-script-state') !== 'notRunning')
                       window.__quiet = now;
                   return now - window.__quiet > 1000; }""", timeout=30_000, polling=100)


def _nudge_tau(page, key: str) -> None:
    _sidebar_slider(page, "Temperature").first.focus()
    page.keyboard.press(key)
    _settle(page)


def test_hidden_beta_and_tau_plus_come_back_with_their_values_after_a_run_of_a_loss_that_hides_them(app):
    """A SimCLR run (β and τ⁺ hidden) then HCL: the sliders show 1 and 0.1 again, and the next
    rerun (here a τ key press, in the classroom a Start) sends those values, not the sliders'
    minimum 0 (the run after a SimCLR run once trained with β = 0 and τ⁺ = 0)."""
    server, page = app
    page.goto(server.url + "/?epochs=3", wait_until="load")
    wait_for_app(page)
    _settle(page)
    _choose_loss(page, LOSSES["info_nce"].label)
    assert _sidebar_slider(page, "Hardness").count() == 0
    click_button(page, "Start")
    page.wait_for_function("() => /^Finished/.test((document.querySelector("
                           "'[data-testid=\"stMain\"] [data-testid=\"stProgress\"]') || {innerText: ''})"
                           ".innerText.trim())", timeout=120_000, polling=200)
    _settle(page)
    _choose_loss(page, LOSSES["hcl"].label)
    assert float(_sidebar_slider(page, "Hardness").first.input_value()) == 1.0
    assert float(_sidebar_slider(page, "Class prior").first.input_value()) == 0.1
    _nudge_tau(page, "ArrowRight")
    query = parse_qs(urlparse(page.url).query)
    assert query.get("tau") == ["0.55"], page.url
    assert "beta" not in query and "tau_plus" not in query, f"β or τ⁺ changed: {page.url}"
    _assert_no_exception(page, "loss switch after a run")


def test_an_ended_runs_charts_are_light_until_the_interactive_toggle_which_stays_on_across_pages(app):
    """The Train page opens on an ended run without Plotly (its charts are markup, as while it
    trained); the toggle draws them with Plotly, Theory follows the same choice, and coming back
    through Compare keeps it on."""
    from hcl_core.config import RunConfig
    from hcl_core.train import train

    server, page = app
    config = RunConfig(loss="hcl", epochs=2, max_train=200, eval_size=100, snapshot_every=1, threads=1)
    train(config, root=server.models_dir)
    page.goto(server.url + "/?" + "&".join(f"{k}={v}" for k, v in config.to_query().items()), wait_until="load")
    wait_for_app(page)
    markup, plotly = page.locator('[data-testid="stMain"] .hcl-live-chart'), page.locator(".js-plotly-plot")
    expect(markup).to_have_count(4, timeout=30_000)  # loss, probe, geometry, HCL's clamp
    assert plotly.count() == 0
    page.get_by_text("Interactive charts", exact=True).click()
    expect(plotly).to_have_count(4, timeout=30_000)
    assert markup.count() == 0
    headings = {"Theory": "Theory: hard negatives, with and without labels", "Compare": "Compare",
                "Train": "Hardness Explorer"}
    for title, heading in headings.items():
        page.locator('[data-testid="stSidebarNavLink"]', has_text=title).first.click()
        page.get_by_role("heading", name=heading).first.wait_for(timeout=30_000)
        if title == "Theory":  # its bound charts (and the margin over training where a run has snapshots)
            page.get_by_role("switch", name="Interactive charts").wait_for(timeout=30_000)
            page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 2",
                                   timeout=30_000)
            assert markup.count() == 0
            expect(page.get_by_role("switch", name="Interactive charts")).to_be_checked()
    expect(plotly).to_have_count(4, timeout=30_000)
    expect(page.get_by_role("switch", name="Interactive charts")).to_be_checked()
    _assert_no_exception(page, "Train after the interactive toggle and a page switch")
