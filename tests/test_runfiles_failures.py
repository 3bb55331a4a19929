"""Every way a run can end is recorded in its status, from the moment its folder exists; jobs can be
listed, found and stopped from any tab.

Real processes throughout: training in subprocesses that get real signals, a real full disk (a
small tmpfs in a private mount namespace; a file-size limit where namespaces are not allowed), real
permission errors (a process without root's power to ignore file modes), real worker processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hcl_core import cli
from hcl_core.config import RunConfig
from hcl_core.jobs import JobManager
from hcl_core.store import list_runs, load_run
from hcl_core.train import train

PROJECT = Path(__file__).resolve().parents[1]
#: About half a second a run on digits: 200 training samples, 3 steps an epoch, 50 embedded.
TINY = dict(threads=1, max_train=200, eval_size=50, batch_size=64, hidden_dim=32, feature_dim=16)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(PROJECT)}


def _until(predicate, timeout: float = 120.0, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached in time")
        time.sleep(every)


def _without_root_powers(argv: list[str]) -> list[str]:
    """``argv`` run so that file modes apply to it: as root, without the capabilities that bypass them."""
    if os.getuid() != 0:
        return argv
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *argv]


def _only_run(root: Path):
    runs, warnings = list_runs(root)
    assert len(runs) == 1, (runs, warnings)
    return runs[0]


# --------------------------------------------------------------------------------------------
# errors before the folder: nothing written; after it: recorded as failed with the message
# --------------------------------------------------------------------------------------------


def test_a_training_split_of_one_class_is_refused_before_any_folder_exists(tmp_path, capsys):
    from PIL import Image

    data = tmp_path / "images"
    for split, cls in (("train", "cat"), ("test", "cat"), ("test", "dog")):
        (data / split / cls).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (8, 8), color=40 * i).save(data / split / cls / f"{i}.png")
    out = tmp_path / "models"
    code = cli.main(["train", "--dataset", "image_folder", "--data-root", str(data), "--encoder", "cnn",
                     "--epochs", "1", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "single class ('cat')" in err, err
    assert not out.exists() or not any(out.iterdir())


def test_an_error_after_the_folder_exists_is_recorded_as_failed_with_its_message(tmp_path):
    def callback(event):
        if event["type"] == "start":
            raise RuntimeError("the viewer went away")

    with pytest.raises(RuntimeError, match="viewer went away"):
        train(RunConfig(epochs=2, **TINY), root=tmp_path, callback=callback)
    run = _only_run(tmp_path)
    assert run.state == "failed" and run.message == "RuntimeError: the viewer went away"
    assert run.history().end["state"] == "failed"


_FULL_DISK = """
import json, os, sys
from hcl_core.config import RunConfig
from hcl_core.store import RunWriter, list_runs, load_run
from hcl_core.train import train
root = sys.argv[1]
out = {}
try:
    train(RunConfig(epochs=2, threads=1, max_train=200, eval_size=50, hidden_dim=512, feature_dim=16),
          root=os.path.join(root, "models"))
except OSError as e:
    out["raised"] = f"{type(e).__name__}: {e.strerror}"
run = list_runs(os.path.join(root, "models"))[0][0]
out.update(state=run.state, message=run.message, snapshots=run.snapshot_epochs(),
           checkpoint=os.path.exists(run.path / "checkpoint.pt"))
print(json.dumps(out))
"""


def _on_a_small_disk(script: str, folder: Path) -> subprocess.CompletedProcess:
    """Run ``script`` with 1 MB of disk: a tmpfs mounted in a private user and mount namespace, or,
    where this machine allows no such namespace, a file-size limit of 1 MB."""
    mount = folder / "disk"
    mount.mkdir()
    shell = f'mount -t tmpfs -o size=1m tmpfs "{mount}" || exit 97; exec "{sys.executable}" -c "$1" "{mount}"'
    try:
        proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", shell, "sh", script],
                              capture_output=True, text=True, env=_env(), timeout=300)
        if proc.returncode != 97 and not proc.stderr.startswith("unshare:"):
            return proc
    except FileNotFoundError:
        pass
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024**2, 1024**2))

    return subprocess.run([sys.executable, "-c", script, str(mount)], capture_output=True, text=True, env=_env(),
                          preexec_fn=limit, timeout=300)


def test_a_full_disk_at_the_epoch_0_checkpoint_fails_the_run_with_its_message(tmp_path):
    """The epoch-0 checkpoint (2.3 MB) does not fit on the 1 MB disk: a real ENOSPC (or EFBIG)."""
    proc = _on_a_small_disk(_FULL_DISK, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    why = ("No space left on device", "File too large")
    assert out["state"] == "failed" and out["snapshots"] == [0] and not out["checkpoint"], out
    assert out["message"].startswith("OSError: [Errno") and any(w in out["message"] for w in why), out
    assert any(w in out["raised"] for w in why)


_PERMISSION = """
import json, os, sys
from hcl_core.config import RunConfig
from hcl_core.store import list_runs
from hcl_core.train import train
root = sys.argv[1]
def callback(event):
    if event["type"] == "start":
        os.chmod(os.path.join(event["run_dir"], "snapshots"), 0o555)
out = {}
try:
    train(RunConfig(epochs=2, threads=1, max_train=200, eval_size=50, hidden_dim=32, feature_dim=16), root=root,
          callback=callback)
except PermissionError as e:
    out["raised"] = str(e)
run = list_runs(root)[0][0]
out.update(state=run.state, message=run.message)
print(json.dumps(out))
"""


def test_a_permission_error_fails_the_run_with_its_message(tmp_path):
    proc = subprocess.run(_without_root_powers([sys.executable, "-c", _PERMISSION, str(tmp_path)]),
                          capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["state"] == "failed" and out["message"].startswith("PermissionError: [Errno 13] Permission denied")


_FULL_STATUS = """
import json, os, sys
from hcl_core.config import RunConfig
from hcl_core.store import RunWriter, load_run
w = RunWriter(sys.argv[1], RunConfig(), run_id="locked-folder")
os.chmod(w.path, 0o555)  # no new file can be made in it: the atomic write's temporary file fails
w.abandon("failed", "OSError: [Errno 28] No space left on device")
os.chmod(w.path, 0o755)
run = load_run(w.path)
print(json.dumps({"state": run.state, "message": run.message, "files": sorted(os.listdir(w.path))}))
"""


def test_when_no_new_file_can_be_written_the_status_is_rewritten_in_place(tmp_path):
    proc = subprocess.run(_without_root_powers([sys.executable, "-c", _FULL_STATUS, str(tmp_path)]),
                          capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out == {"state": "failed", "message": "OSError: [Errno 28] No space left on device",
                   "files": ["config.json", "metrics.jsonl", "snapshots", "status.json"]}


# --------------------------------------------------------------------------------------------
# Ctrl-C and SIGTERM record "stopped"
# --------------------------------------------------------------------------------------------


def _train_until_it_steps(argv: list[str], out: Path) -> subprocess.Popen:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=PROJECT)

    def stepping() -> bool:
        assert proc.poll() is None, proc.stderr.read()
        return any('"type": "step"' in p.read_text() for p in out.glob("*/metrics.jsonl"))

    _until(stepping, timeout=240)
    return proc


def test_ctrl_c_of_the_command_line_records_the_run_as_stopped(tmp_path):
    out = tmp_path / "models"
    args = ["train", "--epochs", "1000", "--out", str(out), "--quiet",
            *[f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]]
    proc = _train_until_it_steps([sys.executable, "-m", "hcl_core", *args], out)
    proc.send_signal(signal.SIGINT)
    proc.wait(60)
    run = _only_run(out)
    assert run.state == "stopped" and run.message.startswith("stopped by Ctrl-C at epoch"), run.status
    assert run.history().end["state"] == "stopped" and run.snapshot_epochs()[0] == 0


_UNDER_SIGTERM = """
import sys
from hcl_core.config import RunConfig
from hcl_core.train import stop_on_sigterm, train
with stop_on_sigterm():
    train(RunConfig(epochs=1000, threads=1, max_train=200, eval_size=50, batch_size=64, hidden_dim=32,
                    feature_dim=16), root=sys.argv[1])
"""


def test_sigterm_to_a_process_that_trains_under_stop_on_sigterm_records_stopped(tmp_path):
    proc = _train_until_it_steps([sys.executable, "-c", _UNDER_SIGTERM, str(tmp_path)], tmp_path)
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    run = _only_run(tmp_path)
    assert run.state == "stopped" and run.message.startswith("stopped by SIGTERM at epoch"), run.status


def test_sigterm_to_the_command_line_records_the_run_as_stopped_in_one_line(tmp_path):
    out = tmp_path / "models"
    args = ["train", "--epochs", "1000", "--out", str(out), "--quiet",
            *[f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]]
    proc = _train_until_it_steps([sys.executable, "-m", "hcl_core", *args], out)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    run = _only_run(out)
    assert run.state == "stopped" and run.message.startswith("stopped by SIGTERM at epoch"), run.status
    assert proc.returncode == 130 and "Traceback" not in err and err.strip().startswith("stopped: SIGTERM"), err


def test_the_command_line_prints_the_baseline_the_run_recorded(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hcl_core", "train", "--epochs", "1", "--out", str(tmp_path),
                           "--quiet", *[f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]],
                          capture_output=True, text=True, env=_env(), cwd=PROJECT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout.splitlines()[-1])
    run = _only_run(tmp_path)
    assert printed["baseline"] == run.baseline and set(run.baseline) == {"raw", "random_init"}
    assert printed["knn_acc"] == run.summary["knn_acc"]


# --------------------------------------------------------------------------------------------
# jobs: listed, found and stopped from any tab; a SIGTERM from outside is a stop
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    m = JobManager(tmp_path_factory.mktemp("jobs"), worker_threads=1, max_active=2)
    yield m
    m.shutdown()


@pytest.mark.slow
def test_every_running_job_is_listed_and_an_earlier_one_can_be_stopped_by_its_token(jobs):
    first = jobs.start(RunConfig(epochs=1000, seed=1, **TINY))
    _until(lambda: first.view().step > 0)
    second = jobs.start(RunConfig(epochs=1000, seed=2, **TINY))
    _until(lambda: second.view().step > 0)
    listed = jobs.active()
    assert [i.token for i in listed] == [first.token, second.token]
    assert [i.config.seed for i in listed] == [1, 2] and all(i.run_id and i.state == "running" for i in listed)
    assert listed[0].run_id == Path(first.view().run_dir).name
    assert jobs.find(first.token) is first and jobs.find(second.run_id) is second and jobs.find("nope") is None
    assert jobs.latest() is second
    assert jobs.stop(first.token)  # the earlier job, while a later one runs
    assert first.view().state == "stopped" and second.active
    assert [i.token for i in jobs.active()] == [second.token]
    assert jobs.stop(second.token) and not jobs.active()
    assert {load_run(j.view().run_dir).state for j in (first, second)} == {"stopped"}


@pytest.mark.slow
def test_a_worker_terminated_from_outside_is_recorded_as_stopped(jobs):
    job = jobs.start(RunConfig(epochs=1000, seed=3, **TINY))
    _until(lambda: job.view().step > 0)
    os.kill(job.pid, signal.SIGTERM)
    assert job.wait(30)
    s = job.view()
    assert s.state == "stopped" and "SIGTERM" in s.message
    run = load_run(s.run_dir)
    assert run.state == "stopped" and "SIGTERM" in run.message


@pytest.mark.slow
def test_a_reloaded_tab_shows_its_own_job_and_any_tab_can_stop_the_others(tmp_path, monkeypatch):
    """Two tabs of the Train page start a job each; the first tab, reloaded (its URL holds its
    configuration), shows its own job, not the newer one, and stops the other from its list."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    import ui

    monkeypatch.setenv("HCL_MODELS_DIR", str(tmp_path))
    st.cache_resource.clear()
    st.cache_data.clear()
    page = str(PROJECT / "pages" / "train.py")
    query = {"max_train": "200", "eval_size": "50", "threads": "1", "epochs": "1000", "hidden_dim": "32",
             "feature_dim": "16"}
    try:
        tabs = []
        for seed in ("1", "2"):
            at = AppTest.from_file(page, default_timeout=60)
            at.query_params.update({**query, "seed": seed})
            at.run()
            next(b for b in at.button if "Start" in b.label).click().run()
            assert not at.exception, at.exception
            tabs.append(at)
        first, second = (next(j for j in ui.job_manager().jobs() if j.config.seed == seed) for seed in (1, 2))
        _until(lambda: first.view().step > 0 and second.view().step > 0)
        assert ui.job_manager().latest() is second
        reloaded = AppTest.from_file(page, default_timeout=60)
        reloaded.query_params.update(dict(tabs[0].query_params))
        reloaded.run()
        assert not reloaded.exception, reloaded.exception
        assert reloaded.session_state["shown_job"] == first.id
        stop = [b for b in reloaded.button if b.key == f"stop_{second.id}"]
        assert len(stop) == 1, [b.key for b in reloaded.button]
        stop[0].click().run()
        assert not reloaded.exception, reloaded.exception
        _until(lambda: second.view().state == "stopped")
        assert first.active
        assert [i.token for i in ui.job_manager().active()] == [first.token]
    finally:
        ui.job_manager().shutdown()
        st.cache_resource.clear()
        st.cache_data.clear()


def test_the_job_view_counts_bad_events_from_a_worker_instead_of_failing():
    from hcl_core.jobs import JobState

    s = JobState(1, RunConfig())
    for event in ({"type": "start", "run_dir": "/x", "total_steps": 10}, {"type": "step"},
                  {"type": "step", "step": 1, "epoch": 1, "loss": 0.5}, {"type": "eval", "epoch": "one"},
                  {"type": "end", "state": "finished", "summary": {"knn_acc": 2.0}}):
        s.apply(event)
    assert s.state == "finished" and s.steps == [(1, 0.5)] and s.evals == [] and s.summary == {}
    assert len(s.history.warnings) == 2 and np.isclose(s.progress, 0.1)
