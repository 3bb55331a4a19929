"""The classroom comparison in Chromium: "SimCLR vs HCL β=1 vs HCL β=4 vs H-SCL, same seed, side by side".

``python -m bench.classroom [--out DIR]`` drives the real app (a fresh server and models folder per
workflow, the app's default data set and settings) through two workflows and counts what a user
does (clicks, choices, a slider moved: one each) and the wall time from the first interaction
until the four runs are side by side on the Compare page:

* ``one_at_a_time``: the only way before the one-click comparison existed: for each run choose
  the loss, move β, press Start and wait for it to finish (Start stayed disabled while a run
  trained), then open Compare and add the run its default selection leaves out.
* ``one_click``: open "Compare losses in one click" (its preset is this comparison), press
  "Train 4 runs side by side" (two train at once, ``HCL_MAX_JOBS``, the others queue), then the
  "Open these runs side by side in Compare" link when they are done.

Screenshots of each workflow's end go to ``--out``; the last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_TESTS = Path(__file__).resolve().parent.parent / "tests"
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

import browser_harness as bh  # noqa: E402

from hcl_core.registry import LOSSES  # noqa: E402

__all__ = ["main", "one_at_a_time", "one_click"]

#: (loss, β) of the four runs, in the order a user trains them.
RUNS = (("info_nce", None), ("hcl", 1.0), ("hcl", 4.0), ("hard_supcon", 1.0))
TIMEOUT_S = 600.0


class User:
    """A page and a count of what the user did on it."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.interactions = 0

    def click(self, locator: Any) -> None:
        locator.click()
        self.interactions += 1

    def settle(self) -> None:
        bh.wait_for_app(self.page, TIMEOUT_S)
        _quiet(self.page)


def _choose_loss(user: User, loss: str) -> None:
    page, label = user.page, LOSSES[loss].label  # as the menu shows it
    box = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]', has_text="Loss").first
    chosen = box.locator("input").first  # a selectbox shows its choice as its input's value
    if chosen.input_value() == label:
        return
    user.click(box)
    user.click(page.get_by_role("option", name=label, exact=True).first)
    user.settle()
    if chosen.input_value() != label:
        raise RuntimeError(f"the Loss menu did not take {label!r}")


def _page_beta(page: Any) -> float:
    """β as the page holds it: the page writes its configuration into the URL (β = 1 is the default,
    left out); the slider's own value can run ahead of what the server has taken."""
    from urllib.parse import parse_qs, urlparse

    return float(parse_qs(urlparse(page.url).query).get("beta", ["1.0"])[0])


def _move_beta(user: User, beta: float) -> None:
    """β's slider moved to ``beta``: one interaction (a drag), driven here by the keyboard until the
    page holds the value (key presses that arrive during a rerun can be lost)."""
    thumb = user.page.locator('[data-testid="stSidebar"] [data-testid="stSlider"] input[type="range"]'
                              '[aria-label^="Hardness"]').first
    now = _page_beta(user.page)
    if abs(now - beta) < 1e-9:
        return
    user.interactions += 1
    while abs(now - beta) > 1e-9:
        thumb.focus()
        user.page.keyboard.press("ArrowRight" if beta > now else "ArrowLeft")
        user.settle()
        now = _page_beta(user.page)


def _wait_finished(user: User) -> None:
    user.page.wait_for_function(
        "() => { const p = document.querySelector('[data-testid=\"stMain\"] [data-testid=\"stProgress\"]');"
        " return p && /^Finished/.test(p.innerText.trim()); }", timeout=TIMEOUT_S * 1000, polling=250)


def _quiet(page: Any) -> None:
    """Until the script has not run for a second: its last rerun is on screen, and a click now is
    not lost to a rerun already under way (a user waits for the page too)."""
    page.evaluate("() => { window.__hclQuiet = undefined; }")
    page.wait_for_function(
        """() => { const a = document.querySelector('[data-testid="stApp"]');
                   const now = performance.now();
                   if (window.__hclQuiet === undefined || !a
                       || a.getAttribute('data-test-script-state') !== 'notRunning') window.__hclQuiet = now;
                   return now - window.__hclQuiet > 1000; }""", timeout=TIMEOUT_S * 1000, polling=100)


def _compare_drawn(page: Any) -> None:
    """Until Compare shows its table and its charts (the runs side by side)."""
    page.wait_for_selector('[data-testid="stMultiSelect"]', timeout=TIMEOUT_S * 1000)
    page.wait_for_function("() => document.querySelectorAll('[data-testid=\"stMain\"] .js-plotly-plot').length >= 6"
                           " && document.querySelector('[data-testid=\"stDataFrame\"]')",
                           timeout=TIMEOUT_S * 1000, polling=200)
    _quiet(page)


def _open_compare(user: User) -> None:
    user.click(user.page.locator('[data-testid="stSidebarNavLink"]', has_text="Compare").first)
    _compare_drawn(user.page)


def _runs_chosen(page: Any) -> int:
    return page.locator('[data-testid="stMultiSelect"]').first.locator('button[aria-label^="Remove "]').count()


def one_at_a_time(user: User) -> None:
    for loss, beta in RUNS:
        _choose_loss(user, loss)
        if beta is not None:
            _move_beta(user, beta)
        user.click(bh.wait_enabled(user.page, "Start"))
        user.page.wait_for_function(  # this run's progress bar, not the previous run's "Finished"
            "() => !/^Finished/.test((document.querySelector('[data-testid=\"stMain\"] "
            "[data-testid=\"stProgress\"]') || {innerText: ''}).innerText.trim())",
            timeout=TIMEOUT_S * 1000, polling=100)
        _wait_finished(user)
        user.settle()  # the page reruns once when a run ends
    _open_compare(user)
    while _runs_chosen(user.page) < 4:  # the default is one run per loss: add the missing HCL run
        user.click(user.page.locator('[data-testid="stMultiSelect"]').first.locator("input").first)
        user.click(user.page.get_by_role("option").filter(has_text="HCL").first)
        user.page.keyboard.press("Escape")
        _compare_drawn(user.page)


def one_click(user: User) -> None:
    page = user.page
    user.click(page.locator('[data-testid="stExpander"] summary', has_text="Compare losses in one click").first)
    user.click(bh.wait_enabled(page, "Train 4 runs side by side"))
    link = page.locator('[data-testid="stMain"] a', has_text="Open these runs side by side in Compare").first
    link.wait_for(timeout=TIMEOUT_S * 1000)
    user.click(link)
    _compare_drawn(page)


def measure(workflow, out: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hcl-classroom-") as models, \
            bh.AppServer(models_dir=models, env={"HCL_MAX_JOBS": "2"}) as server, \
            bh.browser_page(1400, 1000) as page:
        page.goto(server.url + "/")
        bh.wait_for_app(page, TIMEOUT_S)
        user = User(page)
        t0 = time.perf_counter()
        workflow(user)
        seconds = time.perf_counter() - t0
        chosen = _runs_chosen(page)
        page.screenshot(path=str(out / f"{workflow.__name__}.png"), full_page=True)
        if chosen != 4 or bh.exceptions_on_page(page):
            raise RuntimeError(f"{workflow.__name__}: Compare shows {chosen} runs; {bh.exceptions_on_page(page)}")
        return {"interactions": user.interactions, "seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.classroom", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results/classroom"), help="folder for the screenshots")
    ap.add_argument("--only", nargs="+", choices=("one_click", "one_at_a_time"), default=["one_click", "one_at_a_time"],
                    help="the workflows to measure")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {}
    for workflow in (w for w in (one_click, one_at_a_time) if w.__name__ in args.only):
        result[workflow.__name__] = measure(workflow, args.out)
        print(f"{workflow.__name__}: {result[workflow.__name__]}", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
