"""Drive the real app: a Streamlit server on a free port and Debian's chromium through Playwright.

Shared by ``tests/test_browser.py`` and ``bench/`` (which puts ``tests/`` on ``sys.path``)::

    with AppServer(models_dir=tmp) as server, browser_page() as page:
        page.goto(server.url + "/?epochs=8")
        wait_for_app(page)
        click_button(page, "Start")
        wait_for_loss_points(page, 1)

Never ``playwright install``: the browser is Debian's ``/usr/bin/chromium`` (``./run.sh setup``
installs it), launched with the flags of ``shared/tools/screenshot.py``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("HCL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MISSING_CHROMIUM = (f"{CHROMIUM} is missing: the browser tests and benchmarks drive Debian's chromium "
                    "through Playwright. Run ./run.sh setup (it runs apt-get install chromium); "
                    "never `playwright install`.")

#: What Streamlit draws for an uncaught exception in a page.
EXCEPTION_SELECTOR = '[data-testid="stException"], .stException'

# JavaScript run in the page: the visible Plotly chart titled ``title`` and how many points it
# draws. Streamlit keeps stale copies of re-rendered charts in the DOM (hidden, zero size), so
# only charts with a non-zero box count; titles are compared without the <b> tags Streamlit adds.
# ``points`` sums each trace's computed length (``_fullData[i]._length``: what plotly.js drew,
# after decoding the typed arrays Streamlit sends); ``paths`` counts the SVG line paths with a
# non-empty ``d`` (the pixels a person sees); ``last_x`` is the largest x of the first trace.
_CHART_JS = """
(title) => {
  const out = {found: false, points: 0, paths: 0, charts: 0, last_x: null};
  for (const gd of document.querySelectorAll('.js-plotly-plot')) {
    const box = gd.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;
    out.charts += 1;
    const t = gd.layout && gd.layout.title;
    const text = (typeof t === 'string' ? t : (t && t.text) || '').replace(/<[^>]*>/g, '').trim();
    if (text !== title) continue;
    out.found = true;
    const traces = gd._fullData || [];
    for (const tr of traces) out.points += tr._length || 0;
    const cd = gd.calcdata && gd.calcdata[0];
    if (cd && cd.length) out.last_x = cd[cd.length - 1].x;
    for (const p of gd.querySelectorAll('.scatterlayer path.js-line')) {
      const d = p.getAttribute('d');
      if (d && d.length > 1) out.paths += 1;
    }
    break;
  }
  if (out.found) return out;
  // A live run's loss chart is markup with an SVG image (hcl_core/plots/live.py).
  for (const box of document.querySelectorAll('.hcl-live-chart')) {
    const rect = box.getBoundingClientRect();
    if (rect.width === 0 || rect.height === 0 || box.dataset.chart !== title) continue;
    out.found = true;
    out.points = Number(box.dataset.points);
    out.last_x = box.dataset.lastStep === '' ? null : Number(box.dataset.lastStep);
    const img = box.querySelector('img.hcl-plot');
    if (img && img.complete && img.naturalWidth > 0 && out.points > 0) out.paths = 1;
    break;
  }
  return out;
}
"""


# --------------------------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """``streamlit run app.py`` on a free port, headless, without the file watcher.

    ``models_dir`` becomes ``HCL_MODELS_DIR`` (a fresh temp folder when None, removed on exit);
    ``env`` adds variables; ``live_refresh_s`` overrides ``ui.LIVE_REFRESH_S`` (the Train page's
    refresh interval while a run is live) for benchmarks of alternatives; ``app_dir`` serves
    another checkout (e.g. a patched copy) instead of this one. Use as a context manager: ``__enter__`` waits until
    ``/_stcore/health`` answers, ``__exit__`` ends the server and every process it started
    (its process group: the training workers are started in their own sessions, so they are
    found through ``/proc`` and ended one by one).
    """

    def __init__(self, models_dir: str | os.PathLike | None = None, *, env: dict[str, str] | None = None,
                 startup_timeout: float = 60.0, python: str = sys.executable,
                 live_refresh_s: float | None = None, app_dir: str | os.PathLike = ROOT):
        self._tmp = None if models_dir is not None else tempfile.TemporaryDirectory(prefix="hcl-models-")
        self.models_dir = Path(models_dir if models_dir is not None else self._tmp.name)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.python = python
        self.live_refresh_s = live_refresh_s
        self.app_dir = Path(app_dir)
        self.proc: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile(prefix="hcl-streamlit-")  # noqa: SIM115 (closed in __exit__)

    def start(self) -> AppServer:
        env = dict(os.environ)
        env.update(HCL_MODELS_DIR=str(self.models_dir), PYTHONUNBUFFERED="1", **self.extra_env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.app_dir), env.get("PYTHONPATH")]))
        launcher = ["-m", "streamlit"]
        if self.live_refresh_s is not None:  # import ui first and patch it; pages read it at each run
            env["HCL_LIVE_REFRESH_S"] = str(self.live_refresh_s)
            launcher = ["-c", "import os, sys, ui; ui.LIVE_REFRESH_S = float(os.environ['HCL_LIVE_REFRESH_S']); "
                              "from streamlit.web.cli import main; sys.argv[0] = 'streamlit'; sys.exit(main())"]
        cmd = [self.python, *launcher, "run", str(self.app_dir / "app.py"),
               "--server.headless", "true", "--server.fileWatcherType", "none",
               "--server.port", str(self.port), "--server.address", "127.0.0.1",
               "--browser.gatherUsageStats", "false"]
        self.proc = subprocess.Popen(cmd, cwd=str(self.app_dir), env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {self.proc.returncode}:\n{self.log()}")
            if self.healthy():
                return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"streamlit did not answer {self.url}/_stcore/health within "
                           f"{self.startup_timeout:.0f} s:\n{self.log()}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/_stcore/health", timeout=1.0) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log(self, tail: int = 4000) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-tail:]

    def descendants(self) -> list[int]:
        """Pids of every live process started by the server (training workers included)."""
        if self.proc is None:
            return []
        return _descendants(self.proc.pid)

    def workers(self) -> list[int]:
        """Pids of the server's training worker processes (``python -m hcl_core.worker``)."""
        return [pid for pid in self.descendants() if "hcl_core.worker" in _cmdline(pid)]

    def stop(self) -> None:
        if self.proc is None:
            return
        children = self.descendants()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5.0)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5.0)
        for pid in children:  # workers live in their own sessions: end them one by one, by pid
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self.proc = None

    def __enter__(self) -> AppServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
        self._log.close()
        if self._tmp is not None:
            self._tmp.cleanup()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _descendants(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """The high-water mark of ``pid``'s resident memory (VmHWM), in MiB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def wait_until_idle(pids: list[int], *, quiet_s: float = 1.0, timeout: float = 60.0) -> bool:
    """Wait until none of ``pids`` used more than 5 % of a core for ``quiet_s`` (e.g. a warm worker ready)."""
    deadline = time.monotonic() + timeout
    last = sum(cpu_seconds(p) for p in pids)
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = sum(cpu_seconds(p) for p in pids)
        if now - last > 0.01:
            quiet_since = time.monotonic()
        last = now
        if time.monotonic() - quiet_since >= quiet_s:
            return True
    return False


# --------------------------------------------------------------------------------------------
# the browser
# --------------------------------------------------------------------------------------------


def chromium_available() -> bool:
    return os.access(CHROMIUM, os.X_OK)


_DRIVER: dict[str, Any] = {"playwright": None, "users": 0}


@contextlib.contextmanager
def _playwright() -> Iterator[Any]:
    """The process's one Playwright driver, shared by nested users: a second ``sync_playwright()``
    while one is open raises ("Sync API inside the asyncio loop"), e.g. a test that opens its own
    browser while a module fixture's browser is still open."""
    from playwright.sync_api import sync_playwright

    if _DRIVER["users"] == 0:
        _DRIVER["playwright"] = sync_playwright().start()
    _DRIVER["users"] += 1
    try:
        yield _DRIVER["playwright"]
    finally:
        _DRIVER["users"] -= 1
        if _DRIVER["users"] == 0:
            _DRIVER["playwright"].stop()
            _DRIVER["playwright"] = None


@contextlib.contextmanager
def browser_page(width: int = 1400, height: int = 900) -> Iterator[Any]:
    """A Playwright page in Debian's headless chromium; everything is closed on exit."""
    if not chromium_available():
        raise RuntimeError(MISSING_CHROMIUM)

    with _playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()


@contextlib.contextmanager
def browser_context(width: int = 1400, height: int = 900) -> Iterator[Any]:
    """A Playwright browser context in Debian's headless chromium: open several tabs with ``new_page()``."""
    if not chromium_available():
        raise RuntimeError(MISSING_CHROMIUM)

    with _playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield browser.new_context(viewport={"width": width, "height": height})
        finally:
            browser.close()


def wait_for_app(page: Any, timeout_s: float = 60.0) -> None:
    """Wait until the page's script has run: a heading is in the main area and Streamlit has been
    idle (no "running" indicator) for half a second."""
    page.wait_for_selector('[data-testid="stMain"] [data-testid="stHeading"]', timeout=timeout_s * 1000)
    page.wait_for_function(
        """() => {
            const running = document.querySelector('[data-testid="stStatusWidget"] '
                + '[data-testid="stStatusWidgetRunningIcon"], [data-testid="stStatusWidget"] svg')
                && /Running/i.test(document.querySelector('[data-testid="stStatusWidget"]').innerText);
            const now = performance.now();
            if (running || window.__hclIdleSince === undefined) window.__hclIdleSince = now;
            return now - window.__hclIdleSince > 500;
        }""",
        timeout=timeout_s * 1000, polling=100,
    )


def button(page: Any, label: str) -> Any:
    """The app's button (main area or sidebar) whose text contains ``label`` ("Start" for "▶ Start").

    Streamlit's own toolbar has a "Stop" button too (it interrupts a script run, and shows
    while one is running): it is never matched.
    """
    scope = '[data-testid="stMain"], [data-testid="stSidebar"]'
    return page.locator(scope).locator('[data-testid^="stBaseButton"]', has_text=label).first


def click_button(page: Any, label: str, timeout_s: float = 30.0) -> None:
    b = wait_enabled(page, label, timeout_s)
    b.click()


def wait_enabled(page: Any, label: str, timeout_s: float = 30.0) -> Any:
    """The button ``label`` once it is visible and enabled (re-rendered buttons are found again)."""
    from playwright.sync_api import expect

    b = button(page, label)
    expect(b).to_be_enabled(timeout=timeout_s * 1000)
    return b


def chart_points(page: Any, title: str = "Training loss") -> dict[str, Any]:
    """``{"found", "points", "paths", "charts", "last_x"}`` of the chart titled ``title``: a Plotly chart, or
    the live loss chart of a training run (``paths``: drawn lines; ``charts``: Plotly charts seen)."""
    return page.evaluate(_CHART_JS, title)


def wait_for_loss_points(page: Any, at_least: int = 1, *, title: str = "Training loss",
                         timeout_s: float = 30.0) -> dict[str, Any]:
    """Poll (every frame) until the chart ``title`` draws ``at_least`` points on a visible line."""
    handle = page.wait_for_function(
        f"(n) => {{ const r = ({_CHART_JS})({title!r}); return r.points >= n && r.paths > 0 ? r : null; }}",
        arg=at_least, timeout=timeout_s * 1000, polling="raf",
    )
    return handle.json_value()


def start_and_time_first_point(page: Any, *, title: str = "Training loss", timeout_s: float = 60.0
                               ) -> tuple[float, dict[str, Any]]:
    """Click Start; seconds from the click until the new run's first loss point is drawn.

    A page that shows a finished run already has a loss curve, so the first point of the *new*
    run is the first point drawn after the chart was seen empty (the new job, not started yet).
    """
    start = wait_enabled(page, "Start", timeout_s)
    page.evaluate("() => { window.__hclSeenEmpty = false; }")
    t0 = time.perf_counter()
    start.click()
    handle = page.wait_for_function(
        f"""() => {{
            const r = ({_CHART_JS})({title!r});
            if (!window.__hclSeenEmpty) {{
                if (r.points === 0) window.__hclSeenEmpty = true;
                return null;
            }}
            return r.points >= 1 && r.paths > 0 ? r : null;
        }}""",
        timeout=timeout_s * 1000, polling="raf",
    )
    return time.perf_counter() - t0, handle.json_value()


def exceptions_on_page(page: Any) -> list[str]:
    """Texts of Streamlit exception boxes (and any visible "Traceback") on the page."""
    texts = [e.inner_text()[:2000] for e in page.query_selector_all(EXCEPTION_SELECTOR)]
    body = page.inner_text("body")
    if "Traceback (most recent call last)" in body and not texts:
        texts.append(body[body.index("Traceback"):][:2000])
    return texts


# --------------------------------------------------------------------------------------------
# timing in the page: from the user's input event to the frame where the result is on screen
# --------------------------------------------------------------------------------------------

#: Installed in every document of a context (:func:`install_timing`): remembers when the first
#: input event (pointer or key) after the last :func:`mark` reached the page, in the page's own
#: clock (``performance.now()``, milliseconds since the document's navigation started).
TIMING_INIT_JS = """
(() => {
  if (window.__hcl) return;
  const h = window.__hcl = {inputAt: null, old: new WeakSet(), seenEmpty: false, play: null, messages: []};
  const note = () => { if (h.inputAt === null) h.inputAt = performance.now(); };
  window.addEventListener('pointerdown', note, true);
  window.addEventListener('keydown', note, true);
  // when each message from the server (Streamlit's websocket) reached the page
  const Native = window.WebSocket;
  function Timed(...args) {
    const ws = new Native(...args);
    ws.addEventListener('message', () => {
      h.messages.push(performance.now());
      if (h.messages.length > 4000) h.messages.splice(0, 2000);
    });
    return ws;
  }
  Timed.prototype = Native.prototype;
  for (const k of ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED']) Timed[k] = Native[k];
  window.WebSocket = Timed;
  // the page's main thread busy for 50 ms or more at a time (scripts, layout, plotly drawing)
  h.busy = [];
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) h.busy.push([e.startTime, e.duration]);
      if (h.busy.length > 4000) h.busy.splice(0, 2000);
    }).observe({type: 'longtask', buffered: true});
  } catch (e) { h.busy = null; }
})();
"""

_MARK_JS = """
(title) => {
  const h = window.__hcl;
  h.inputAt = null; h.old = new WeakSet();
  h.seenEmpty = title ? (CHART_JS)(title).points === 0 : false;
  for (const gd of document.querySelectorAll('.js-plotly-plot')) if (gd._fullData) h.old.add(gd._fullData);
  for (const el of document.querySelectorAll('.hcl-live-chart')) h.old.add(el);
  return true;
}
""".replace("CHART_JS", _CHART_JS.strip())

# ``done`` is true in the first animation frame where everything ``spec`` asks for holds:
#   heading: the main area's first h1 reads this;   text / no_text: the main area shows / lacks it;
#   idle: the app's script state is "notRunning" (the rerun the input caused has finished);
#   charts: at least this many visible charts are drawn (Plotly: data computed, svg in place; markup
#   charts, ``.hcl-live-chart``: in the page);
#   redrawn: at least this many of them drew new data since the mark (markup: a new element);
#   enabled / disabled: some / every main-area button whose text holds the label is enabled / disabled;
#   first_point: the chart with this title was seen without points after the mark, then with >= 1
#   point on a drawn line (a new run's first loss point, not the previous run's curve).
_DONE_JS = """
(spec) => {
  const h = window.__hcl;
  if (!h) return null;
  const app = document.querySelector('[data-testid="stApp"]');
  const main = document.querySelector('[data-testid="stMain"]');
  if (!app || !main) return null;
  if (spec.first_point) {
    const r = (CHART_JS)(spec.first_point);
    if (!h.seenEmpty) { if (r.points === 0) h.seenEmpty = true; return null; }
    if (!(r.points >= 1 && r.paths > 0)) return null;
  }
  if (spec.idle && app.getAttribute('data-test-script-state') !== 'notRunning') return null;
  if (spec.heading !== undefined) {
    const h1 = main.querySelector('h1');
    if (!h1 || h1.innerText.trim() !== spec.heading) return null;
  }
  const text = (spec.text || spec.no_text) ? main.innerText : '';
  if (spec.text && !text.includes(spec.text)) return null;
  if (spec.no_text && text.includes(spec.no_text)) return null;
  const buttons = (label) => [...main.querySelectorAll('[data-testid^="stBaseButton"]')]
      .filter(b => b.innerText.includes(label));
  for (const label of spec.enabled || []) if (!buttons(label).some(b => !b.disabled)) return null;
  for (const label of spec.disabled || []) if (buttons(label).some(b => !b.disabled)) return null;
  let visible = 0, drawn = 0, redrawn = 0;
  for (const gd of document.querySelectorAll('.js-plotly-plot')) {
    const box = gd.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;
    visible += 1;
    if (!gd._fullData || !gd._fullLayout || !gd.querySelector('.main-svg')) continue;
    drawn += 1;
    if (!h.old.has(gd._fullData)) redrawn += 1;
  }
  for (const el of document.querySelectorAll('.hcl-live-chart')) {  // markup: drawn once in the page
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;
    visible += 1; drawn += 1;
    if (!h.old.has(el)) redrawn += 1;
  }
  if (drawn < (spec.charts || 0) || redrawn < (spec.redrawn || 0)) return null;
  return {t: performance.now(), input: h.inputAt, charts: visible, drawn: drawn, redrawn: redrawn,
          messages: h.messages.filter(t => t >= (spec.since === undefined ? h.inputAt : spec.since))};
}
""".replace("CHART_JS", _CHART_JS.strip())

_SETTLED_JS = """
() => {
  const h = window.__hcl, main = document.querySelector('[data-testid="stMain"]');
  const h1 = main && main.querySelector('h1');
  let charts = 0, redrawn = 0;
  for (const gd of document.querySelectorAll('.js-plotly-plot')) {
    const box = gd.getBoundingClientRect();
    if (box.width === 0 || box.height === 0 || !gd._fullData) continue;
    charts += 1;
    if (h && !h.old.has(gd._fullData)) redrawn += 1;
  }
  for (const el of document.querySelectorAll('.hcl-live-chart')) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;
    charts += 1;
    if (h && !h.old.has(el)) redrawn += 1;
  }
  const app = document.querySelector('[data-testid="stApp"]');
  return {heading: h1 ? h1.innerText.trim() : null, charts: charts, redrawn: redrawn,
          state: app ? app.getAttribute('data-test-script-state') : null};
}
"""


def install_timing(context: Any) -> None:
    """Install :data:`TIMING_INIT_JS` in every document a browser context opens from now on."""
    context.add_init_script(TIMING_INIT_JS)


def mark(page: Any, *, first_point: str | None = None) -> None:
    """Forget the last input event and remember the charts drawn now (see :func:`wait_done`);
    ``first_point``: the title of the chart a ``first_point`` check will watch (if it has no
    points now, it counts as seen empty already)."""
    page.evaluate(_MARK_JS, first_point)


def wait_done(page: Any, spec: dict[str, Any], *, timeout_s: float = 60.0, since_navigation: bool = False
              ) -> dict[str, Any]:
    """Wait (checking every animation frame) until ``spec`` holds (see ``_DONE_JS``).

    Returns the in-page figures, ``seconds``: from the first input event after :func:`mark` to
    the frame where ``spec`` first held (with ``since_navigation``, from the start of the
    document's navigation instead: a page being opened), and their :func:`phases`. Both ends are
    read from the page's own clock, so Playwright's round trips are not counted.
    """
    spec = {**spec, "since": 0.0} if since_navigation else spec
    handle = page.wait_for_function(_DONE_JS, arg=spec, timeout=timeout_s * 1000, polling="raf")
    out = handle.json_value()
    start = 0.0 if since_navigation else out["input"]
    if start is None:
        raise RuntimeError(f"no input event reached the page before {spec} held: the action did not happen")
    out["seconds"] = (out["t"] - start) / 1000.0
    out["phases"] = phases(out.pop("messages"), start, out["t"])
    # long-task entries reach the observer after the fact: read them once they have arrived
    page.wait_for_timeout(250)
    busy = page.evaluate("() => window.__hcl.busy")
    if out["phases"] is not None and busy is not None:
        # long tasks clipped to [start, done]: how much of the wait the page's own work took
        out["phases"]["page_busy_s"] = sum(max(0.0, min(t + d, out["t"]) - max(t, start)) for t, d in busy) / 1000.0
    return out


def phases(messages: list[float], start: float, done: float) -> dict[str, float] | None:
    """Split ``start`` → ``done`` (page clock, ms) at the server's messages in between:
    ``to_server_s`` until the first message (the input handled, sent, and the server's first
    answer back), ``server_s`` from the first to the last message (the script run sending its
    deltas; the page takes a message only when its main thread is free, so drawing a chart
    delays the next message), ``browser_s`` from the last message on (the page drawing what it
    got); None when no message arrived in between. :func:`wait_done` adds ``page_busy_s``: the
    time the page's main thread spent in tasks of 50 ms or more within the wait."""
    between = [t for t in messages if start <= t <= done]
    if not between:
        return None
    return {"to_server_s": (between[0] - start) / 1000.0, "server_s": (between[-1] - between[0]) / 1000.0,
            "browser_s": (done - between[-1]) / 1000.0}


def settled(page: Any) -> dict[str, Any]:
    """What the page shows now: its h1, how many visible charts are drawn (and redrawn since the mark)."""
    return page.evaluate(_SETTLED_JS)


def wait_settled(page: Any, pids: list[int], *, quiet_s: float = 0.5, timeout_s: float = 120.0) -> dict[str, Any]:
    """Wait until the app's script is not running and ``pids`` (e.g. the server) used no CPU for ``quiet_s``,
    and twice in a row the page shows the same; returns :func:`settled`."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        page.wait_for_function(
            "() => { const a = document.querySelector('[data-testid=\"stApp\"]');"
            " return a && a.getAttribute('data-test-script-state') === 'notRunning'; }",
            timeout=max(1.0, deadline - time.monotonic()) * 1000, polling=100)
        wait_until_idle(pids, quiet_s=quiet_s, timeout=max(1.0, deadline - time.monotonic()))
        now = settled(page)
        if now == last and now["state"] == "notRunning":
            return now
        last = now
    raise TimeoutError(f"the page did not settle within {timeout_s:.0f} s (last seen: {last})")
