"""The app, driven like a person would: Streamlit server + Debian's chromium through Playwright.

Measures, side by side in one process:

* ``first_update_seconds``: click on Start (warm page: the page has loaded and the app's spare
  worker has finished importing) until the new run's first loss point is drawn in the browser;
* training throughput of a run started from the Train page while the page stays open and its
  live fragment refreshes, against the bare loop (:func:`bench.train_speed.bare_run`) on the same
  config; repetitions interleaved (app, bare, bare, app, ...);
* the app worker's peak RSS, and the CPU seconds the server and chromium spent during the run
  (what the training competes with on a 2-core machine).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.timing import load_average, median, r3, ratio, system_cpu_seconds
from bench.train_speed import BareRun, bare_run, events_of, summarise
from hcl_core.config import RunConfig
from hcl_core.jobs import SETTLE_S

_TESTS = Path(__file__).resolve().parent.parent / "tests"
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

import browser_harness as bh  # noqa: E402

TERMINAL = ("finished", "stopped", "failed", "interrupted")


def _status(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def _new_run_dir(models: Path, before: set[str], timeout: float) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = [p for p in models.iterdir() if p.is_dir() and p.name not in before]
        if new:
            return max(new, key=lambda p: p.stat().st_mtime)
        time.sleep(0.05)
    raise TimeoutError(f"no run folder appeared in {models} within {timeout:.0f} s")


def _chromium_pids() -> list[int]:
    import os

    return [p for p in bh._descendants(os.getpid()) if "chrom" in bh._cmdline(p)]


def app_run(server: bh.AppServer, page: Any, config: RunConfig, *, leave_page: bool = False,
            timeout: float = 600.0) -> dict[str, Any]:
    """One run started from the Train page; its throughput, first-update latency and costs.

    ``leave_page``: navigate away right after the first point (no live refresh: an alternative
    that isolates the page's cost from the worker's).
    """
    open_train_page(server, page, config)
    # A warm page: the spare worker (warmed SETTLE_S after the last run ended) has imported
    # everything and the server is idle.
    time.sleep(SETTLE_S + 0.5)
    bh.wait_until_idle([server.proc.pid, *server.workers()], quiet_s=1.0, timeout=120)
    before = {p.name for p in server.models_dir.iterdir()}
    server_cpu0 = bh.cpu_seconds(server.proc.pid)
    chrome = _chromium_pids()
    chrome_cpu0 = sum(bh.cpu_seconds(p) for p in chrome)
    spare_cpu0 = {pid: bh.cpu_seconds(pid) for pid in server.workers()}  # its imports are not the run's
    sys0, t0 = system_cpu_seconds(), time.perf_counter()
    first, _ = bh.start_and_time_first_point(page, timeout_s=120)
    if leave_page:
        page.goto("about:blank")
    run_dir = _new_run_dir(server.models_dir, before, 30)
    worker_pid = None
    peak = worker_cpu = 0.0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _status(run_dir)
        worker_pid = worker_pid or status.get("pid")
        if worker_pid:
            peak = max(peak, bh.peak_rss_mb(worker_pid))
            worker_cpu = max(worker_cpu, bh.cpu_seconds(worker_pid) - spare_cpu0.get(worker_pid, 0.0))
        if status.get("state") in TERMINAL:
            break
        time.sleep(0.2)
    else:
        raise TimeoutError(f"the app's run {run_dir.name} did not finish within {timeout:.0f} s")
    wall, system_cpu = time.perf_counter() - t0, system_cpu_seconds() - sys0
    out = summarise(events_of(run_dir / "metrics.jsonl"))
    server_cpu = bh.cpu_seconds(server.proc.pid) - server_cpu0
    chromium_cpu = sum(bh.cpu_seconds(p) for p in chrome) - chrome_cpu0
    # CPU shares (CPU seconds per wall second; 2.0 = both cores): the training worker (read just
    # before it exits, so slightly low), the server and chromium, and everything else (the
    # app's spare worker starting up, and other users' processes).
    out.update(
        state=status.get("state"), first_update_s=first, wall_s=wall, worker_peak_rss_mb=peak,
        server_cpu_s=server_cpu, chromium_cpu_s=chromium_cpu,
        worker_cpu_share=worker_cpu / wall, server_cpu_share=server_cpu / wall,
        chromium_cpu_share=chromium_cpu / wall,
        others_cpu_share=max(0.0, system_cpu - worker_cpu - server_cpu - chromium_cpu) / wall,
    )
    return out


@contextlib.contextmanager
def session(*, live_refresh_s: float | None = None, env: dict[str, str] | None = None,
            app_dir: str | None = None) -> Iterator[tuple[bh.AppServer, Any]]:
    """A server and a browser page for :func:`run` (open it early to overlap their start-up)."""
    if not bh.chromium_available():
        raise RuntimeError(bh.MISSING_CHROMIUM)
    server_kwargs = {"app_dir": app_dir} if app_dir else {}
    with bh.AppServer(live_refresh_s=live_refresh_s, env=env, **server_kwargs) as server, \
            bh.browser_page() as page:
        yield server, page


def open_train_page(server: bh.AppServer, page: Any, config: RunConfig) -> str:
    """Load the Train page for ``config``: the app's job manager starts its spare worker."""
    url = server.url + "/?" + urllib.parse.urlencode(config.to_query())
    page.goto(url, wait_until="load")
    bh.wait_for_app(page)
    return url


def run(config: RunConfig, *, reps: int, live_refresh_s: float | None = None, leave_page: bool = False,
        bare: bool = True, env: dict[str, str] | None = None, app_dir: str | None = None,
        opened: tuple[bh.AppServer, Any] | None = None, prestarted: BareRun | None = None,
        log=print) -> dict[str, Any]:
    """Interleaved app and bare runs of ``config``; medians and the ratio of medians.

    ``opened``: a ``(server, page)`` from :func:`session` to use instead of starting new ones
    (then ``live_refresh_s``, ``env`` and ``app_dir`` are those it was opened with).
    ``prestarted``: a waiting :class:`BareRun` of ``config``; it is the first bare repetition, and
    the first repetition then runs bare first.
    """
    with contextlib.ExitStack() as stack:
        server, page = opened or stack.enter_context(session(live_refresh_s=live_refresh_s, env=env,
                                                             app_dir=app_dir))
        apps, bares = _interleave(server, page, config, reps=reps, leave_page=leave_page, bare=bare,
                                  env=env, prestarted=prestarted, log=log)
    app_sps = median([a["steps_per_s"] for a in apps])
    bare_sps = median([b["steps_per_s"] for b in bares]) if bares else float("nan")
    return {
        "app_steps_per_s": r3(app_sps),
        "bare_steps_per_s": r3(bare_sps),
        "ratio": r3(ratio(app_sps, bare_sps)),
        "first_update_seconds": r3(median([a["first_update_s"] for a in apps])),
        "first_update_all": [r3(a["first_update_s"]) for a in apps],
        "app_runs": [{k: (r3(v) if isinstance(v, float) else v) for k, v in a.items()} for a in apps],
        "bare_runs": [{k: (r3(v) if isinstance(v, float) else v) for k, v in b.items()} for b in bares],
    }


def _interleave(server, page, config, *, reps, leave_page, bare, env, prestarted,
                log) -> tuple[list[dict], list[dict]]:
    apps: list[dict] = []
    bares: list[dict] = []
    first = 1 if prestarted is not None else 0
    for r in range(reps):
        order = ("app", "bare") if (r + first) % 2 == 0 else ("bare", "app")
        for side in order:
            load = load_average()
            if side == "bare" and bare:
                page.goto("about:blank")  # nothing refreshes while the bare loop runs
                # The app warms its next spare worker SETTLE_S after a run has ended (5-7 s of
                # imports), and a prestarted bare run's imports overlapped the app's start-up: wait
                # for both, or the bare loop would compete with the spare's imports.
                time.sleep(SETTLE_S + 0.5)
                bh.wait_until_idle([server.proc.pid, *server.workers()], quiet_s=0.5, timeout=120)
                if prestarted is not None:
                    res, prestarted = prestarted.finish(), None
                else:
                    res = bare_run(config, env=env)
                res["load_average"] = load  # before the run: other processes, not ours
                bares.append(res)
                log(f"  bare: {res['steps_per_s']:.1f} steps/s (second half {res['steps_per_s_second_half']:.1f}), "
                    f"peak RSS {res['peak_rss_mb']:.0f} MB, load average {load:.2f}; "
                    f"cores used: trainer {res['trainer_cpu_share']:.2f}, others {res['others_cpu_share']:.2f}")
            elif side == "app":
                res = app_run(server, page, config, leave_page=leave_page)
                res["load_average"] = load
                apps.append(res)
                log(f"  app:  {res['steps_per_s']:.1f} steps/s (second half {res['steps_per_s_second_half']:.1f}), "
                    f"first update {res['first_update_s']:.2f} s, load average {load:.2f}; "
                    f"cores used: worker {res['worker_cpu_share']:.2f}, server {res['server_cpu_share']:.2f}, "
                    f"chromium {res['chromium_cpu_share']:.2f}, others {res['others_cpu_share']:.2f}")
    page.goto("about:blank")
    return apps, bares
