"""What a person waits for in the browser: the app's interactions against the same ones on a floor app.

Two Streamlit servers, started the same way (``tests/browser_harness.AppServer``: same flags, the
same ``.streamlit/config.toml``), serve the real app on a models folder of four small runs and
the floor app of :mod:`bench.floor_app` (the same navigation, trivial pages). One headless
Chromium has a tab on each. Every interaction is repeated on both, interleaved (app then floor,
floor then app on the next repetition), and timed in the page's own clock from the input event
(``pointerdown`` or ``keydown``, caught before the page handles it) to the first animation frame
in which its result is on screen (``tests/browser_harness.wait_done``). "On screen" means, per
interaction:

* ``first_open`` (a new tab on the app's address; from the start of the navigation): the default
  page's heading is shown, its script has finished, and as many charts are drawn as the page
  shows once settled (Plotly charts, and the markup charts of ``hcl_core.plots.live`` / ``.markup``);
* ``switch_to_<page>`` (a click on the page's link in the sidebar): the same for that page;
* ``epoch_step`` (Embeddings: ArrowLeft/ArrowRight on the focused "Epoch" slider) and
  ``preview_beta_step`` (Negatives: ArrowRight on the "Preview β" slider, a new β each time):
  the rerun has finished and as many charts drew new data as do once the page has settled;
* ``play_frame`` (Embeddings: Play): in the app, the median time between two successive epochs
  shown by the server-side Play (one epoch control drives the chart); on the empty page, between
  two frames of a client-side plotly animation (``plotly_animatingframe``), with
  ``play_frame_draw``, the median time from a frame's start to its redraw (``plotly_afterplot``);
* ``compare_four_runs`` (Compare, three runs chosen: picking a fourth in "Runs to compare"):
  the rerun has finished and every chart that changes has drawn the new run (it is removed
  again, untimed, after each repetition);
* ``start_to_first_point`` (Train: ▶ Start): the "Training loss" chart, seen empty after the
  click, draws its first point on a line;
* ``stop_to_stopped`` (Train: ■ Stop while the run trains): "stopped by the user" is shown, a
  Start button is enabled, every Stop button is disabled, and the rerun has finished.

How many charts each page shows and redraws is read from each app once, in a warm-up pass that
also visits every page once (the first visits, with cold caches, are reported separately as
``first_visit_seconds``). Between two timed interactions the page must be idle: its script not
running and its server process without CPU use for 0.3 s.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.floor_app import write_floor_app
from bench.timing import median, r3, ratio
from hcl_core.config import RunConfig
from hcl_core.jobs import SETTLE_S

_TESTS = Path(__file__).resolve().parent.parent / "tests"
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

import browser_harness as bh  # noqa: E402

__all__ = ["Side", "prepare_runs", "run", "summary"]

#: The long run started by ``start_to_first_point`` (stopped right after its first point).
START_CONFIG = RunConfig(epochs=1000)
NAV = '[data-testid="stSidebarNavLink"]'
#: What an interaction returns per figure: its seconds and :func:`browser_harness.phases` (or None).
Step = tuple[float, dict[str, float] | None]
TIMEOUT_S = 120.0
#: Play has ended when the chart's title has not changed for this long (frames are 0.8 s apart).
PLAY_QUIET_S = 4.0


def prepare_runs(root: Path, *, epochs: int, snapshot_every: int, threads: int, **changes: Any) -> list[Path]:
    """Four finished digits runs under ``root``: the app's default comparison (its first three
    losses) and one more to add on the Compare page; trained oldest to newest in that order.
    ``changes``: other :class:`RunConfig` fields (e.g. a smaller ``eval_size``)."""
    from hcl_core.analysis.compare import DEFAULT_LOSS_ORDER
    from hcl_core.train import train

    losses = list(DEFAULT_LOSS_ORDER[3:4]) + list(DEFAULT_LOSS_ORDER[:3])
    return [train(RunConfig(loss=loss, epochs=epochs, snapshot_every=snapshot_every, threads=threads, **changes),
                  root=root).run_dir for loss in losses]


def start_preparing(root: Path, *, epochs: int, snapshot_every: int, **changes: Any) -> subprocess.Popen:
    """:func:`prepare_runs` in a child process (one torch thread), while the servers start."""
    spec = json.dumps({"epochs": epochs, "snapshot_every": snapshot_every, "threads": 1, **changes})
    return subprocess.Popen([sys.executable, "-m", "bench.interactions", str(root), spec], cwd=str(bh.ROOT),
                            env={**os.environ, "PYTHONPATH": str(bh.ROOT)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


@dataclass
class Side:
    """One app in its own tab: what was learned about it in the warm-up, and its timings."""

    name: str
    server: bh.AppServer
    page: Any
    pages: list[tuple[str, str]]  # (script path, title in the navigation)
    heading: dict[str, str] = field(default_factory=dict)  # title -> the page's h1
    charts: dict[str, int] = field(default_factory=dict)  # title -> charts drawn once settled
    redrawn: dict[str, int] = field(default_factory=dict)  # interaction -> charts it redraws
    times: dict[str, list[float]] = field(default_factory=dict)
    phases: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    first_visit: dict[str, float] = field(default_factory=dict)

    @property
    def home(self) -> str:
        return self.pages[0][1]

    def title_of(self, stem: str) -> str | None:
        return next((t for p, t in self.pages if Path(p).stem == stem), None)

    def record(self, name: str, seconds: float, phases: dict[str, float] | None = None) -> None:
        self.times.setdefault(name, []).append(seconds)
        if phases:
            self.phases.setdefault(name, []).append(phases)

    def settle(self, *, workers: bool = False, quiet_s: float = 0.3) -> None:
        """Wait until the script is not running and the server (and its workers) are idle."""
        self.page.wait_for_function(
            "() => { const a = document.querySelector('[data-testid=\"stApp\"]');"
            " return a && a.getAttribute('data-test-script-state') === 'notRunning'; }",
            timeout=TIMEOUT_S * 1000, polling=100)
        if workers:  # the app warms its spare worker SETTLE_S after a run ended: wait for it too
            time.sleep(SETTLE_S + 0.5)
        pids = [self.server.proc.pid, *(self.server.workers() if workers else [])]
        bh.wait_until_idle(pids, quiet_s=quiet_s, timeout=TIMEOUT_S)

    def check(self, where: str) -> None:
        errors = bh.exceptions_on_page(self.page)
        if errors:
            raise RuntimeError(f"{self.name} app, {where}: the page shows an exception:\n" + "\n".join(errors))


# --------------------------------------------------------------------------------------------
# the interactions: each returns {figure name: (seconds, their phases or None)}
# --------------------------------------------------------------------------------------------


def first_open(side: Side) -> dict[str, Step]:
    tab = side.page.context.new_page()
    try:
        tab.goto(side.server.url + "/", wait_until="commit")
        r = bh.wait_done(tab, {"idle": True, "heading": side.heading[side.home], "charts": side.charts[side.home]},
                         timeout_s=TIMEOUT_S, since_navigation=True)
    finally:
        tab.close()
    side.page.bring_to_front()
    return {"first_open": (r["seconds"], r["phases"])}


def switch(side: Side, title: str) -> dict[str, Step]:
    link = side.page.locator(NAV, has_text=title).first
    bh.mark(side.page)
    link.click()
    r = bh.wait_done(side.page, {"idle": True, "heading": side.heading[title], "charts": side.charts[title]},
                     timeout_s=TIMEOUT_S)
    return {f"switch_to_{title.lower()}": (r["seconds"], r["phases"])}


def _slider(side: Side, label: str) -> Any:
    return side.page.locator(f'[data-testid="stSlider"] input[type="range"][aria-label^="{label}"]').first


def _key_step(side: Side, name: str, label: str, key: str, page_title: str) -> dict[str, Step]:
    thumb = _slider(side, label)
    thumb.focus()
    bh.mark(side.page)
    side.page.keyboard.press(key)
    r = bh.wait_done(side.page, {"idle": True, "charts": side.charts[page_title],
                                 "redrawn": side.redrawn.get(name, 0)}, timeout_s=TIMEOUT_S)
    return {name: (r["seconds"], r["phases"])}


def epoch_step(side: Side) -> dict[str, Step]:
    """Between the last epoch and the one before it (ArrowLeft from the last, else ArrowRight)."""
    thumb = _slider(side, "Epoch")
    key = "ArrowLeft" if thumb.get_attribute("value") == thumb.get_attribute("max") else "ArrowRight"
    return _key_step(side, "epoch_step", "Epoch", key, side.title_of("embeddings"))


def beta_step(side: Side) -> dict[str, Step]:
    """One step (0.1) up: a β this page has not computed yet."""
    return _key_step(side, "preview_beta_step", "Preview β", "ArrowRight", side.title_of("negatives"))


_PLAY_HOOK_JS = """
() => {
  const h = window.__hcl;
  const gd = [...document.querySelectorAll('.js-plotly-plot')]
      .find(g => g.getBoundingClientRect().width > 0 && g.querySelector('.updatemenu-button'));
  if (!gd) return 0;
  h.play = {frames: [], plots: [], done: null};
  if (!gd.__hclHooked) {
    gd.__hclHooked = true;
    gd.on('plotly_animatingframe', (e) => { if (h.play) h.play.frames.push([performance.now(), e.name]); });
    gd.on('plotly_afterplot', () => { if (h.play) h.play.plots.push(performance.now()); });
    gd.on('plotly_animated', () => { if (h.play) h.play.done = performance.now(); });
  }
  return (gd._fullLayout.sliders && gd._fullLayout.sliders[0]) ? gd._fullLayout.sliders[0].steps.length : 0;
}
"""


def _server_play(side: Side) -> dict[str, Step]:
    """The app's Play: a Streamlit button that steps the one epoch control on the server.

    ``play_frame`` is the median time between two successive chart titles (each names its epoch)
    from the click until playback ends (the title holds still and the button no longer reads
    Pause). The slider is moved to the last epoch first (untimed), so Play runs through every
    epoch: three snapshots, two intervals.
    """
    page = side.page
    thumb = _slider(side, "Epoch")
    if thumb.get_attribute("value") != thumb.get_attribute("max"):  # Play at the end restarts at the first epoch
        thumb.focus()
        page.keyboard.press("End")
        side.settle()
    title = page.locator(".js-plotly-plot .gtitle").first
    seen: list[tuple[float, str]] = [(time.perf_counter(), title.text_content() or "")]
    page.get_by_role("button", name="Play").first.click()
    deadline = time.perf_counter() + TIMEOUT_S * 4
    while time.perf_counter() < deadline:  # until the title has held still for a while, with Pause gone
        now, text = time.perf_counter(), title.text_content() or ""
        if text != seen[-1][1]:
            seen.append((now, text))
        elif (len(seen) > 2 and now - seen[-1][0] > PLAY_QUIET_S
              and not page.get_by_role("button", name="Pause").count()):
            break
        time.sleep(0.02)
    intervals = [b[0] - a[0] for a, b in zip(seen[1:], seen[2:], strict=False)]
    if not intervals:
        raise RuntimeError(f"{side.name} app: Play showed fewer than two new epochs")
    return {"play_frame": (statistics.median(intervals), None)}


def play(side: Side) -> dict[str, Step]:
    if side.page.get_by_role("button", name="Play").count():
        return _server_play(side)
    frames = side.page.evaluate(_PLAY_HOOK_JS)
    if frames < 2:
        raise RuntimeError(f"{side.name} app: no animated chart with ▶ Play and 2+ frames on the Embeddings page")
    bh.mark(side.page)
    side.page.locator(".js-plotly-plot .updatemenu-button", has_text="Play").first.click()
    side.page.wait_for_function(
        "(n) => { const p = window.__hcl.play; return p && p.done !== null && p.frames.length >= n; }",
        arg=frames, timeout=(TIMEOUT_S + 2 * frames) * 1000, polling="raf")
    rec = side.page.evaluate("() => window.__hcl.play")
    starts = [t for t, _ in rec["frames"]]
    intervals = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    draws = []
    for i, t in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else rec["done"]
        after = [p for p in rec["plots"] if t <= p <= end]
        if after:
            draws.append(after[0] - t)
    out = {"play_frame": (statistics.median(intervals) / 1000.0, None)}
    if draws:
        out["play_frame_draw"] = (statistics.median(draws) / 1000.0, None)
    return out


def _runs_box(side: Side) -> Any:
    return side.page.locator('[data-testid="stMultiSelect"]', has_text="Runs to compare").first


def compare_add(side: Side, *, learn: bool = False) -> dict[str, Step]:
    """Pick the first run not chosen yet; time it; remove it again (untimed)."""
    page = side.page
    _runs_box(side).locator('input[role="combobox"]').click()
    option = page.locator('[role="option"]').first
    option.wait_for(timeout=TIMEOUT_S * 1000)
    label = option.inner_text().strip()
    bh.mark(page)
    option.click()
    if learn:
        _count_redrawn(side, "compare_four_runs")
        result = (float("nan"), None)
    else:
        r = bh.wait_done(page, {"idle": True, "redrawn": side.redrawn["compare_four_runs"]}, timeout_s=TIMEOUT_S)
        result = (r["seconds"], r["phases"])
    page.keyboard.press("Escape")
    side.settle()
    _runs_box(side).locator(f'button[aria-label="Remove {label}"]').first.click()
    side.settle()
    return {"compare_four_runs": result}


def start(side: Side) -> dict[str, Step]:
    page = side.page
    button = bh.wait_enabled(page, "Start", TIMEOUT_S)
    bh.mark(page, first_point="Training loss")
    button.click()
    r = bh.wait_done(page, {"first_point": "Training loss"}, timeout_s=TIMEOUT_S)
    return {"start_to_first_point": (r["seconds"], r["phases"])}


def stop(side: Side) -> dict[str, Step]:
    page = side.page
    if "stopped by the user" in page.locator('[data-testid="stMain"]').inner_text():
        raise RuntimeError(f"{side.name} app: 'stopped by the user' is shown before Stop was pressed")
    button = bh.wait_enabled(page, "Stop", TIMEOUT_S)
    bh.mark(page)
    button.click()
    r = bh.wait_done(page, {"idle": True, "text": "stopped by the user", "enabled": ["Start"],
                            "disabled": ["Stop"]}, timeout_s=TIMEOUT_S)
    return {"stop_to_stopped": (r["seconds"], r["phases"])}


#: The interactions of each page (by its script's name), in the order they run after the switch.
PAGE_STEPS: dict[str, list[Callable[[Side], dict[str, Step]]]] = {
    "embeddings": [epoch_step, play],
    "negatives": [beta_step],
    "compare": [compare_add],
}


# --------------------------------------------------------------------------------------------
# warm-up: visit everything once, learn what "drawn" means on each page
# --------------------------------------------------------------------------------------------


def _learn_page(side: Side, title: str, t0: float) -> None:
    seen = bh.wait_settled(side.page, [side.server.proc.pid], quiet_s=0.5, timeout_s=TIMEOUT_S)
    side.first_visit[title] = time.perf_counter() - t0
    side.check(f"page {title}")
    if not seen["heading"]:
        raise RuntimeError(f"{side.name} app: the page {title} shows no heading (h1) to recognise it by")
    side.heading[title], side.charts[title] = seen["heading"], seen["charts"]


def _learn_step(side: Side, name: str, action: Callable[[], None], *, wait_s: float = 15.0) -> None:
    """Do ``action`` and count the charts it redraws once the page has settled (at least one
    redrawn chart is waited for up to ``wait_s``: the rerun may not have started yet)."""
    bh.mark(side.page)
    action()
    _count_redrawn(side, name, wait_s=wait_s)


def _count_redrawn(side: Side, name: str, *, wait_s: float = 15.0) -> None:
    deadline = time.monotonic() + wait_s
    while bh.settled(side.page)["redrawn"] == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    side.redrawn[name] = bh.wait_settled(side.page, [side.server.proc.pid], quiet_s=0.5,
                                         timeout_s=TIMEOUT_S)["redrawn"]
    side.check(name)


def warm_up(side: Side) -> None:
    """Open the app, visit every page and do every interaction once, untimed; learn the checks."""
    page = side.page
    t0 = time.perf_counter()
    page.goto(side.server.url + "/", wait_until="commit")
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=TIMEOUT_S * 1000)
    _learn_page(side, side.home, t0)
    previous = side.heading[side.home]
    for _, title in [*side.pages[1:], side.pages[0]]:
        t0 = time.perf_counter()
        page.locator(NAV, has_text=title).first.click()
        page.wait_for_function("(h) => { const e = document.querySelector('[data-testid=\"stMain\"] h1');"
                               " return e && e.innerText.trim() !== h; }", arg=previous, timeout=TIMEOUT_S * 1000)
        _learn_page(side, title, t0)
        previous = side.heading[title]
        stem = next(Path(p).stem for p, t in side.pages if t == title)
        if stem == "embeddings":
            for key in ("ArrowLeft", "ArrowRight"):
                _slider(side, "Epoch").focus()
                _learn_step(side, "epoch_step", lambda k=key: page.keyboard.press(k))
            play(side)
        elif stem == "negatives":
            _slider(side, "Preview β").focus()
            _learn_step(side, "preview_beta_step", lambda: page.keyboard.press("ArrowRight"))
        elif stem == "compare":
            compare_add(side, learn=True)
    side.settle()


# --------------------------------------------------------------------------------------------
# the benchmark
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def sides(models: Path, floor_dir: Path, *, app_dir: Path | None = None) -> Iterator[tuple[Side, Side]]:
    """The real app (on ``models``) and the floor app (``floor_dir``), each in a tab of one browser."""
    from bench.floor_app import app_pages

    if not bh.chromium_available():
        raise RuntimeError(bh.MISSING_CHROMIUM)
    kwargs = {"app_dir": app_dir} if app_dir else {}
    real_pages = app_pages(((app_dir or bh.ROOT) / "app.py").read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="hcl-floor-models-") as floor_models, \
            bh.AppServer(models_dir=models, **kwargs) as app_server, \
            bh.AppServer(models_dir=floor_models, app_dir=floor_dir) as floor_server, \
            bh.browser_context() as context:
        bh.install_timing(context)
        page, floor_page = context.new_page(), context.new_page()
        floor_pages = app_pages((floor_dir / "app.py").read_text(encoding="utf-8"))
        yield Side("app", app_server, page, real_pages), Side("floor", floor_server, floor_page, floor_pages)


def _steps(side: Side) -> list[Callable[[Side], dict[str, Step]]]:
    steps: list[Callable[[Side], dict[str, Step]]] = [first_open]
    for path, title in [*side.pages[1:], side.pages[0]]:
        steps.append(lambda s, t=title: switch(s, t))
        steps.extend(PAGE_STEPS.get(Path(path).stem, []))
    return steps


def run(*, reps: int, start_reps: int, models: Path | None = None, run_epochs: int = 30, snapshot_every: int = 5,
        run_changes: dict[str, Any] | None = None, app_dir: Path | None = None, profile_over: float | None = 3.0,
        log=print) -> dict[str, Any]:
    """The whole benchmark: prepare four runs of ``run_epochs`` epochs with a snapshot every
    ``snapshot_every`` (``run_changes``: other config fields), unless ``models`` holds them;
    warm both apps up,
    then ``reps`` interleaved repetitions of every viewing interaction and ``start_reps`` of
    Start and Stop. Returns :func:`summary` of the timings, and under ``rerun_profiles`` the
    :mod:`bench.rerun_profile` of every page with an interaction above ``profile_over`` times
    its floor (on a copy of the four runs, so the runs Start made do not change what it sees)."""
    # The folder outlives the servers: the profiles below run on its copy of the runs once both
    # servers have ended (so they measure a quiet machine).
    with tempfile.TemporaryDirectory(prefix="hcl-bench-interactions-") as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        preparing = None
        if models is None:
            models = tmp / "models"
            preparing = start_preparing(models, epochs=run_epochs, snapshot_every=snapshot_every, **(run_changes or {}))
            stack.callback(lambda: preparing.poll() is None and preparing.kill())
        t0 = time.perf_counter()
        if preparing is None:
            from hcl_core.store import load_run

            newest = max((p for p in models.iterdir() if (p / "snapshots").is_dir()), key=lambda p: p.name)
            epochs = load_run(newest).snapshot_epochs()
        else:  # what train() saves: epoch 0, every snapshot_every-th epoch and the last
            epochs = sorted({0, *range(snapshot_every, run_epochs + 1, snapshot_every), run_epochs})
        write_floor_app(tmp / "floor", epochs=epochs, app_dir=app_dir or bh.ROOT)
        app, floor = stack.enter_context(sides(models, tmp / "floor", app_dir=app_dir))
        floor.page.bring_to_front()
        warm_up(floor)  # while the runs train
        log(f"  floor: warmed up in {time.perf_counter() - t0:.1f} s; charts per page {floor.charts}, "
            f"redrawn per interaction {floor.redrawn}")
        if preparing is not None:
            _, err = preparing.communicate()
            if preparing.returncode != 0:
                raise RuntimeError(f"preparing the four runs failed: {err[-3000:]}")
            log(f"  four runs of {run_epochs} epochs ready after {time.perf_counter() - t0:.1f} s")
        shutil.copytree(models, tmp / "profile-models")
        t0 = time.perf_counter()
        app.page.bring_to_front()
        warm_up(app)
        log(f"  app: warmed up in {time.perf_counter() - t0:.1f} s; charts per page {app.charts}, "
            f"redrawn per interaction {app.redrawn}")
        _viewing(app, floor, reps, log)
        _start_stop(app, floor, start_reps, log)
        out = summary(app, floor)
        stack.close()  # both servers and the browser end here
        if profile_over is not None:
            out["rerun_profiles"] = profiles(app, out["interaction_ratio_vs_empty_page"], profile_over,
                                             tmp / "profile-models", log=log)
    return out


def _viewing(app: Side, floor: Side, reps: int, log) -> None:
    steps = {side.name: _steps(side) for side in (app, floor)}
    for rep in range(reps):
        order = (app, floor) if rep % 2 == 0 else (floor, app)
        for i in range(len(steps["app"])):
            for side in order:
                side.page.bring_to_front()
                for name, (seconds, split) in steps[side.name][i](side).items():
                    side.record(name, seconds, split)
                side.settle()
        log(f"  repetition {rep + 1}/{reps} (app/floor): " + ", ".join(
            f"{k} {app.times[k][-1]:.2f}/{floor.times[k][-1]:.2f} s" for k in app.times))


def _start_stop(app: Side, floor: Side, reps: int, log) -> None:
    for side in (app, floor):  # a long run's configuration in the Train page's controls
        side.page.bring_to_front()
        query = "/?" + urllib.parse.urlencode(START_CONFIG.to_query()) if side is app else "/"
        side.page.goto(side.server.url + query, wait_until="load")
        side.settle(workers=True, quiet_s=1.0)
    for rep in range(reps):
        for side in ((app, floor) if rep % 2 == 0 else (floor, app)):
            side.page.bring_to_front()
            for fn in (start, stop):
                for name, (seconds, split) in fn(side).items():
                    side.record(name, seconds, split)
            side.settle(workers=True, quiet_s=1.0)
        log(f"  start/stop {rep + 1}/{reps} (app/floor): start {app.times['start_to_first_point'][-1]:.2f}/"
            f"{floor.times['start_to_first_point'][-1]:.2f} s, stop {app.times['stop_to_stopped'][-1]:.2f}/"
            f"{floor.times['stop_to_stopped'][-1]:.2f} s")


#: The page (script name) of each interaction that is not a page switch; the rest are the home page's.
STEP_PAGE = {"epoch_step": "embeddings", "play_frame": "embeddings", "play_frame_draw": "embeddings",
             "preview_beta_step": "negatives", "compare_four_runs": "compare"}


def page_of(side: Side, interaction: str) -> str | None:
    """The script (stem) whose rerun an interaction waits for."""
    if interaction.startswith("switch_to_"):
        return next((Path(p).stem for p, t in side.pages if f"switch_to_{t.lower()}" == interaction), None)
    return STEP_PAGE.get(interaction, Path(side.pages[0][0]).stem)


def profiles(app: Side, ratios: dict[str, float], over: float, models: Path, *, log=print) -> dict[str, Any]:
    """:mod:`bench.rerun_profile` of each page with an interaction above ``over`` (fresh processes)."""
    pages = sorted({page_of(app, k) for k, v in ratios.items() if v > over} - {None})
    out: dict[str, Any] = {}
    for page in pages:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "bench.rerun_profile", page, str(models)], cwd=str(bh.ROOT),
                              capture_output=True, text=True, timeout=600,
                              env={**os.environ, "PYTHONPATH": str(bh.ROOT)})
        lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
        out[page] = json.loads(lines[-1]) if proc.returncode == 0 and lines else {"error": proc.stderr[-2000:]}
        log(f"  profiled pages/{page}.py in {time.perf_counter() - t0:.1f} s")
    return out


def summary(app: Side, floor: Side) -> dict[str, Any]:
    """Medians per interaction on both sides, and ``interaction_ratio_vs_empty_page`` (ratio of medians)."""
    seconds, ratios = {}, {}
    for name, values in app.times.items():
        a, f = median(values), median(floor.times.get(name, []))
        seconds[name] = {"app": r3(a), "floor": r3(f), "app_all": [r3(v) for v in values],
                         "floor_all": [r3(v) for v in floor.times.get(name, [])]}
        ratios[name] = r3(ratio(a, f))
    worst = max(ratios, key=lambda k: ratios[k]) if ratios else None
    split = {s.name: {name: {k: r3(median([p[k] for p in runs if k in p])) for k in sorted(set().union(*runs))}
                      for name, runs in s.phases.items()} for s in (app, floor)}
    return {
        "interaction_ratio_vs_empty_page": ratios,
        "interaction_ratio_vs_empty_page_max": ratios[worst] if worst else float("nan"),
        "interaction_worst": worst,
        "interaction_seconds": seconds,
        "interaction_phases_seconds": split,
        "first_visit_seconds": {s.name: {k: r3(v) for k, v in s.first_visit.items()} for s in (app, floor)},
        "charts_per_page": {s.name: s.charts for s in (app, floor)},
        "charts_redrawn_per_interaction": {s.name: s.redrawn for s in (app, floor)},
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.interactions ROOT JSON``: :func:`prepare_runs` (JSON: its keyword arguments)."""
    argv = sys.argv[1:] if argv is None else argv
    prepare_runs(Path(argv[0]), **json.loads(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
