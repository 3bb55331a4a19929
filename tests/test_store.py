"""Run files: atomic writes, tolerant reading, interrupted runs, corrupt folders."""

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from hcl_core.config import RunConfig
from hcl_core.store import (
    RunFileError,
    RunWriter,
    atomic_write_bytes,
    atomic_write_json,
    find_run,
    list_runs,
    load_run,
)


def test_writer_and_reader_agree(tmp_path):
    w = RunWriter(tmp_path, RunConfig(epochs=2))
    w.append_event({"type": "step", "step": 1, "loss": 1.5})
    w.append_event({"type": "eval", "epoch": 0, "knn_acc": 0.5}, flush=True)
    w.save_snapshot(0, {"features": np.ones((3, 2), np.float32)})
    w.save_snapshot(2, {"features": np.zeros((3, 2), np.float32)})
    w.close("finished", summary={"knn_acc": 0.9})
    run = load_run(w.path)
    assert run.state == "finished" and run.summary["knn_acc"] == 0.9
    assert [e["type"] for e in run.events()] == ["step", "eval"]
    assert run.events("eval")[0]["knn_acc"] == 0.5
    assert run.snapshot_epochs() == [0, 2]
    assert run.load_snapshot(2)["features"].shape == (3, 2)


def test_two_runs_with_the_same_id_get_distinct_folders(tmp_path):
    a = RunWriter(tmp_path, RunConfig(), run_id="same")
    b = RunWriter(tmp_path, RunConfig(), run_id="same")
    assert a.path != b.path and a.path.exists() and b.path.exists()


def test_a_half_written_metrics_line_is_skipped(tmp_path):
    w = RunWriter(tmp_path, RunConfig())
    w.append_event({"type": "step", "step": 1, "loss": 1.0}, flush=True)
    with open(w.path / "metrics.jsonl", "a") as f:
        f.write('{"type": "step", "st')  # the process died mid-line
    assert [e["step"] for e in load_run(w.path).events()] == [1]


def test_run_of_a_dead_process_is_interrupted(tmp_path):
    # A real child process creates the run and is killed before it can close it.
    code = ("import sys, time; from hcl_core.store import RunWriter; from hcl_core.config import RunConfig;"
            f"w = RunWriter({str(tmp_path)!r}, RunConfig()); print(w.path, flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    path = proc.stdout.readline().strip()
    assert load_run(path).state == "running"
    proc.kill()
    proc.wait()
    assert load_run(path).state == "interrupted"


def test_corrupt_and_foreign_folders_are_skipped_with_a_warning(tmp_path):
    good = RunWriter(tmp_path, RunConfig()).path
    (tmp_path / "foreign").mkdir()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    (tmp_path / "weird").mkdir()
    (tmp_path / "weird" / "config.json").write_text(json.dumps({"tau": -3}))
    runs, warnings = list_runs(tmp_path)
    assert [r.path for r in runs] == [good]
    assert len(warnings) == 3 and any("bad" in w for w in warnings) and any("tau" in w for w in warnings)


def test_find_run_by_prefix_and_errors(tmp_path):
    w = RunWriter(tmp_path, RunConfig(), run_id="abc-123")
    assert find_run("abc", tmp_path).path == w.path
    with pytest.raises(RunFileError):
        find_run("zzz", tmp_path)


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "f.json"
    atomic_write_bytes(target, b"old")

    with pytest.raises(TypeError):
        atomic_write_bytes(target, object())  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_run_files_get_the_usual_mode_not_the_temp_files_private_one(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    atomic_write_json(tmp_path / "status.json", {"state": "finished"})
    assert stat.S_IMODE((tmp_path / "status.json").stat().st_mode) == 0o666 & ~mask
