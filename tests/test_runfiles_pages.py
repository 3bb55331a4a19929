"""Damaged, hostile or unreadable run files never crash a page: each becomes a warning on its run.

AppTest on real tiny runs (page_runs.py) damaged the ways the review found: a metrics line without
its fields, a string where a number belongs, a summary whose baseline is not an object, a start
time in the future (so the damaged run is the newest), a 250 MB log, an unreadable snapshots folder.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

PROJECT = Path(__file__).resolve().parents[1]
PAGES = PROJECT / "pages"
pytestmark = pytest.mark.usefixtures("streamlit_caches")


def damage(run: Path, *, future: bool = True) -> None:
    """The review's damage: bad metrics lines, a string metric, a summary baseline that is no object."""
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"type": "step"}\n{"type": "step", "step": 99, "epoch": 2, "loss": "low"}\n'
                '{"type": "eval", "epoch": 3, "knn_acc": "high"}\n{"type": "baseline", "raw": 7}\n')
    status = json.loads((run / "status.json").read_text())
    status["summary"] = {**status["summary"], "baseline": "none", "knn_acc": "0.9", "epochs": [2]}
    if future:
        status["started"] = time.time() + 365 * 86400
    (run / "status.json").write_text(json.dumps(status))


def texts(at: AppTest) -> str:
    kinds = ("markdown", "caption", "info", "warning", "error", "success")
    parts = [e.value for kind in kinds for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def run_page(name: str, query: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(PAGES / name), default_timeout=90)
    at.query_params.update(query or {})
    at.run()
    assert not at.exception, at.exception
    return at


def test_compare_shows_a_damaged_run_with_a_warning_and_keeps_its_upload_control(tiny_models):
    hcl = tiny_models["hcl"]
    damage(hcl)
    at = run_page("compare.py")
    assert str(hcl) in at.multiselect(key="cmp_runs").value
    warning = next(w.value for w in at.warning if hcl.name in w.value)
    assert "line(s) skipped" in warning and "'knn_acc'" in warning, warning
    table = at.dataframe[0].value
    row = table[table["run id"] == hcl.name].iloc[0]
    assert row["kNN"] != row["kNN"]  # the unreadable summary value is blank (NaN), not a crash
    assert at.get("file_uploader"), "the import control is still there"


def test_the_landing_page_shows_a_damaged_newest_run_without_an_exception(tiny_models, monkeypatch):
    import ui
    from hcl_core.jobs import JobManager

    damage(tiny_models["info_nce"])
    monkeypatch.setattr(ui, "JobManager", functools.partial(JobManager, warm=False))  # no spare worker needed
    try:
        at = run_page("train.py")
        assert tiny_models["info_nce"].name in texts(at)
    finally:
        ui.job_manager().shutdown()


def test_embeddings_negatives_and_theory_read_a_damaged_run(tiny_models):
    damage(tiny_models["hard_supcon"])
    for page in ("embeddings.py", "negatives.py", "theory.py"):
        at = run_page(page, {"run": tiny_models["hard_supcon"].name})
        assert at.get("plotly_chart") or [h for h in at.get("html") if "hcl-figure" in h.proto.body], page


@pytest.mark.slow
def test_a_250_mb_log_costs_the_compare_page_a_bounded_time(tiny_models):
    """The review measured 42 s and 3.7 GB per render; the history is read within its budget."""
    run = tiny_models["hcl"]
    line = b'{"type": "step", "step": 7, "epoch": 1, "loss": 0.25, "elapsed": 1.0}\n'
    with open(run / "metrics.jsonl", "ab") as f:
        block = line * 100_000
        for _ in range(250 * 1024**2 // len(block)):
            f.write(block)
    t0 = time.perf_counter()
    at = run_page("compare.py")
    assert time.perf_counter() - t0 < 30.0
    assert any("read in evenly spaced parts" in w.value for w in at.warning)


_UNREADABLE = """
import json, os, sys
from streamlit.testing.v1 import AppTest
run = sys.argv[2]
os.chmod(os.path.join(run, "snapshots"), 0)
out = {}
for page in ("compare.py", "embeddings.py", "negatives.py"):
    at = AppTest.from_file(os.path.join(sys.argv[1], page), default_timeout=90)
    at.query_params["run"] = os.path.basename(run)
    at.run()
    out[page] = {"exception": [str(e.value) for e in at.exception],
                 "text": " ".join(str(e.value) for k in ("caption", "warning", "info") for e in getattr(at, k))}
os.chmod(os.path.join(run, "snapshots"), 0o755)
print(json.dumps(out))
"""


def test_an_unreadable_snapshots_folder_is_a_note_on_every_page_never_a_crash(tiny_models):
    run = tiny_models["hard_supcon"]
    argv = [sys.executable, "-c", _UNREADABLE, str(PAGES), str(run)]
    if os.getuid() == 0:  # root reads everything: run without the capabilities that bypass file modes
        argv = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *argv]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT), str(PROJECT / "tests")]),
           "HCL_MODELS_DIR": str(run.parent)}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=PROJECT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for page, seen in out.items():
        assert seen["exception"] == [], (page, seen)
    assert "cannot be read (Permission denied)" in out["embeddings.py"]["text"], out
