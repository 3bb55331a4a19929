"""Where a page's rerun spends its time: cProfile of the script run, and the bytes of its charts.

``python -m bench.rerun_profile PAGE MODELS_DIR`` runs ``pages/PAGE.py`` through Streamlit's
AppTest in this fresh process (``HCL_MODELS_DIR=MODELS_DIR``): once cold, once more warm under
cProfile (what a page switch reruns), then, where the page has one, the benchmark's interaction
on its widget, found by its label (``INTERACTIONS``), also under cProfile. It prints one JSON line:
per run the wall seconds, the profile's seconds by package (own time of the functions in
``hcl_core``, ``pages``/``ui``, ``streamlit``, ``plotly``, ``numpy``, ``torch``, ``json``, builtins, other) and
its slowest functions (cumulative time), and the charts as sent to the browser (a Plotly chart's
JSON spec or a light chart's markup: bytes per chart, and how many points they hold).

The AppTest runs the script in this process, so the seconds are the server's share of an
interaction (``script_seconds``: the profile's total without compiling the script, which AppTest
does at every run and the server once); the rest of what the browser benchmark measures is the websocket, React and
plotly.js drawing the charts (which grows with the bytes below).
"""

from __future__ import annotations

import cProfile
import html
import json
import os
import pstats
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["INTERACTIONS", "PACKAGES", "by_package", "profile_page", "top_functions"]

#: The benchmark's interaction on each page, as an AppTest widget change: (kind, label prefix, change).
INTERACTIONS = {
    "negatives": ("preview_beta_step", "slider", "Preview β", lambda w: w.set_value(round(w.value + 0.1, 1))),
    "embeddings": ("epoch_step", "select_slider", "Epoch",
                   lambda w: w.set_value(w.options[-2] if str(w.value) == str(w.options[-1]) else w.options[-1])),
    "compare": ("compare_four_runs", "multiselect", "Runs to compare",
                lambda w: w.set_value([*w.value, next(o for o in w.options if o not in w.value)])),
}

#: Own time is attributed to the first of these whose marker is in the function's file name.
PACKAGES = (("hcl_core", "/hcl_core/"), ("pages+ui", "/pages/"), ("pages+ui", "/ui/"),
            ("streamlit", "/streamlit/"), ("plotly", "/plotly/"), ("numpy", "/numpy/"), ("torch", "/torch/"),
            ("pandas", "/pandas/"), ("json", "/json/"), ("narwhals", "/narwhals/"))


def by_package(stats: pstats.Stats) -> dict[str, float]:
    """Own (``tottime``) seconds of the profile, summed per package; builtins and the rest: "other"."""
    out: dict[str, float] = {}
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():
        name = "builtins" if filename == "~" else next((pkg for pkg, marker in PACKAGES if marker in filename),
                                                          "other")
        out[name] = out.get(name, 0.0) + tottime
    return {k: round(v, 4) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def top_functions(stats: pstats.Stats, n: int = 12, *, own: bool = False) -> list[dict[str, Any]]:
    """The ``n`` functions with the largest cumulative (``own``: own) time, outside AppTest's plumbing."""
    rows = []
    for (filename, line, func), (_, ncalls, tottime, cumtime, _) in stats.stats.items():
        if "/streamlit/testing/" in filename or "script_runner.py" in filename or (filename == "~" and not own):
            continue
        short = filename.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
        rows.append({"function": f"{short}:{line}({func})", "calls": ncalls, "own_s": round(tottime, 4),
                     "cumulative_s": round(cumtime, 4)})
    rows.sort(key=lambda r: -r["own_s" if own else "cumulative_s"])
    return rows[:n]


def _length(v: Any) -> int:
    """Number of values in a plotly array: a list, or a typed array ``{"dtype", "bdata"[, "shape"]}``."""
    if isinstance(v, list):
        return len(v)
    if isinstance(v, dict) and "bdata" in v:
        import base64

        import numpy as np

        if "shape" in v:
            return int(str(v["shape"]).split(",")[0])
        return len(base64.b64decode(v["bdata"])) // np.dtype(v["dtype"]).itemsize
    return 0


def _points(spec: dict[str, Any]) -> int:
    """Points drawn by the spec's traces (the length of x, else y, per trace; frames not counted)."""
    return sum(_length(t.get("x")) or _length(t.get("y")) for t in spec.get("data", []))


_MARKUP_CHART = re.compile(r'class="hcl-live-chart[^"]*"[^>]*?data-chart="([^"]*)" data-points="(\d+)"')


def charts(at: Any) -> list[dict[str, Any]]:
    """What each chart sends: a Plotly chart's JSON spec (bytes, traces, frames, points), a light
    chart's markup (``hcl_core.plots.markup``: bytes, points; ``kind`` tells them apart)."""
    out = []
    for chart in at.get("plotly_chart"):
        spec_text = chart.proto.spec
        spec = json.loads(spec_text)
        out.append({"kind": "plotly", "bytes": len(spec_text.encode()), "traces": len(spec.get("data", [])),
                    "frames": len(spec.get("frames", []) or []),
                    "title": ((spec.get("layout") or {}).get("title") or {}).get("text"),
                    "points": _points(spec)})
    for element in at.get("html"):
        if found := _MARKUP_CHART.search(element.proto.body):
            out.append({"kind": "markup", "bytes": len(element.proto.body.encode()),
                        "title": html.unescape(found[1]), "points": int(found[2])})
    return out


def _profiled(fn) -> dict[str, Any]:
    """Run ``fn`` (an AppTest run) with cProfile enabled inside the script thread AppTest starts."""
    from streamlit.runtime.scriptrunner.script_runner import ScriptRunner

    profiler = cProfile.Profile()
    original = ScriptRunner._run_script

    def run_script(self, *args, **kwargs):
        profiler.enable()
        try:
            return original(self, *args, **kwargs)
        finally:
            profiler.disable()

    ScriptRunner._run_script = run_script
    try:
        t0 = time.perf_counter()
        at = fn()
        wall = time.perf_counter() - t0
    finally:
        ScriptRunner._run_script = original
    if at.exception:
        raise RuntimeError(f"the page raised: {at.exception}")
    stats = pstats.Stats(profiler)
    sent = charts(at)
    # AppTest compiles the script at every run; the server compiles it once (ScriptCache)
    compile_s = sum(v[3] for (f, _, func), v in stats.stats.items() if f.endswith("script_cache.py")
                    and func == "get_bytecode")
    return {"seconds": round(wall, 4), "script_seconds": round(stats.total_tt - compile_s, 4),
            "compile_seconds_not_in_the_server": round(compile_s, 4),
            "own_seconds_by_package": by_package(stats), "slowest": top_functions(stats),
            "slowest_own": top_functions(stats, 8, own=True), "charts": sent,
            "chart_bytes": sum(c["bytes"] for c in sent)}


def profile_page(page: str, *, timeout: float = 300.0) -> dict[str, Any]:
    """The cold run, the warm rerun and the page's interaction (see the module docstring)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "pages" / f"{page}.py"), default_timeout=timeout)
    t0 = time.perf_counter()
    at.run()
    if at.exception:
        raise RuntimeError(f"pages/{page}.py raised: {at.exception}")
    out: dict[str, Any] = {"page": page, "cold_seconds": round(time.perf_counter() - t0, 4)}
    out["rerun"] = _profiled(lambda: at.run())
    if page in INTERACTIONS:
        name, kind, label, change = INTERACTIONS[page]
        widget = next((w for w in at.get(kind) if str(w.label).startswith(label)), None)
        if widget is None:
            out["interaction"] = {"name": name, "error": f"no {kind} labelled {label!r} on the page"}
        else:
            out["interaction"] = {"name": name, **_profiled(lambda: change(widget).run())}
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    page, models = argv[0], argv[1]
    if not Path(models).is_dir():  # the pages would show "no runs yet" and the profile measure nothing
        print(f"bench.rerun_profile: the models folder {models} does not exist: pass a folder of runs",
              file=sys.stderr)
        return 2
    os.environ["HCL_MODELS_DIR"] = models
    print(json.dumps(profile_page(page)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
