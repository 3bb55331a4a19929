"""Run files: atomic writes, tolerant reading, interrupted runs, corrupt folders, the files the store owns
(snapshots, stamps, the history, the baseline, class names), liveness, special files and links."""

import json
import os
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from hcl_core.config import RunConfig
from hcl_core.store import (
    RunFileError,
    RunHistory,
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


# --------------------------------------------------------------------------------------------
# the store owns its files: snapshots, stamps, the history, the baseline, class names
# --------------------------------------------------------------------------------------------

TINY = dict(threads=1, max_train=200, eval_size=50, batch_size=64, hidden_dim=32, feature_dim=16, epochs=2,
            snapshot_every=1)


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """A real run on the synthetic mixture (vectors, classes named "class 0" .. "class 9")."""
    import torch

    from hcl_core.train import train

    threads = torch.get_num_threads()
    try:
        return train(RunConfig(dataset="synthetic", **TINY), root=tmp_path_factory.mktemp("models"))
    finally:
        torch.set_num_threads(threads)


def test_a_run_records_its_baseline_once_in_its_event_log(synthetic_run):
    run = load_run(synthetic_run.run_dir)
    baselines = run.events("baseline")
    assert len(baselines) == 1
    assert set(run.baseline) == {"raw", "random_init"} and run.baseline == synthetic_run.baseline
    assert set(run.baseline["raw"]) == {"linear_probe_acc", "few_shot_probe_acc", "knn_acc"}
    on_disk = json.loads((run.path / "status.json").read_text())
    assert "baseline" not in on_disk and "baseline" not in on_disk["summary"]
    assert run.history().baseline == run.baseline


def test_the_first_loss_point_comes_before_the_epoch_0_evaluation_which_scores_the_initial_weights(tmp_path):
    """Start shows a loss point without waiting for the evaluation; the evaluation is still of the
    weights before any step: a run stopped before its first step (nothing trained) scores the same."""
    import threading

    import torch

    from hcl_core.train import train

    threads = torch.get_num_threads()
    try:
        events: list[dict] = []
        trained = train(RunConfig(dataset="synthetic", **TINY), root=tmp_path / "a", callback=events.append)
        stop = threading.Event()
        stop.set()
        untrained = train(RunConfig(dataset="synthetic", **TINY), root=tmp_path / "b", stop=stop)
    finally:
        torch.set_num_threads(threads)
    kinds = [(e["type"], e.get("step", e.get("epoch"))) for e in events]
    assert kinds[:5] == [("start", None), ("step", 1), ("eval", 0), ("baseline", None), ("step", 2)]
    assert untrained.state == "stopped" and untrained.baseline == trained.baseline
    zero = {k: v for k, v in load_run(untrained.run_dir).events("eval")[0].items() if k != "elapsed"}
    assert zero == {k: v for k, v in events[2].items() if k != "elapsed"}
    assert load_run(untrained.run_dir).snapshot_epochs() == [0] and len(load_run(trained.run_dir).events("step")) > 2


def test_class_names_are_saved_with_the_evaluation_inputs(synthetic_run):
    run = load_run(synthetic_run.run_dir)
    saved = run.load_eval_inputs()["class_names"]
    assert saved.dtype.kind == "U" and list(saved) == [f"class {i}" for i in range(10)]
    assert run.class_names(10) == tuple(f"class {i}" for i in range(10))


def test_runs_without_saved_class_names_fall_back_to_the_registry_then_to_indices(tmp_path):
    digits = RunWriter(tmp_path, RunConfig(), run_id="old-digits")
    digits.save_eval_inputs(np.zeros((3, 1, 8, 8), np.float16), np.arange(3), np.arange(3))
    assert load_run(digits.path).class_names(10) == tuple(str(i) for i in range(10))
    folder = RunWriter(tmp_path, RunConfig(dataset="image_folder", data_root="/nowhere"), run_id="old-folder")
    assert load_run(folder.path).class_names(3) == ("0", "1", "2")  # no eval inputs, no registry names
    fashion = RunWriter(tmp_path, RunConfig(dataset="fashion_mnist", data_root="/nowhere"), run_id="old-fashion")
    assert load_run(fashion.path).class_names(10)[:2] == ("T-shirt/top", "Trouser")


def test_snapshot_stamps_change_when_a_file_is_rewritten_and_odd_names_are_not_snapshots(tmp_path):
    w = RunWriter(tmp_path, RunConfig())
    w.save_snapshot(3, {"features": np.ones((4, 2), np.float32), "labels": np.arange(4)})
    (w.path / "snapshots" / "epoch_00012.npz").write_bytes(b"")  # two names for epoch 12: not one of ours
    (w.path / "snapshots" / "epoch_3.npz").write_bytes(b"")
    run = load_run(w.path)
    assert run.snapshot_epochs() == [3]
    before = run.snapshot_stamp(3)
    time.sleep(0.01)
    w.save_snapshot(3, {"features": np.zeros((5, 2), np.float32), "labels": np.arange(5)})
    assert run.snapshot_stamp(3) != before and run.load_snapshot(3)["features"].shape == (5, 2)
    assert run.snapshot_stamp(4) == (-1, -1) and run.eval_inputs_stamp() == (-1, -1)
    stamp = run.metrics_stamp()
    w.append_event({"type": "step", "step": 1, "loss": 0.5}, flush=True)
    assert run.metrics_stamp() != stamp


def test_a_snapshot_whose_arrays_do_not_fit_each_other_is_refused_with_its_name(tmp_path):
    w = RunWriter(tmp_path, RunConfig())
    w.save_snapshot(0, {"features": np.ones((4, 2), np.float32), "labels": np.arange(5)})
    w.save_snapshot(1, {"z1": np.ones((4, 2), np.float32), "z2": np.ones((4, 3), np.float32)})
    run = load_run(w.path)
    with pytest.raises(RunFileError, match="snapshots/epoch_0000.npz: features of shape"):
        run.load_snapshot(0)
    with pytest.raises(RunFileError, match="epoch_0001.npz: views"):
        run.load_snapshot(1)


def test_the_history_thins_long_series_evenly_and_keeps_the_newest_point():
    h = RunHistory(max_points=100)
    for step in range(1, 10_002):
        h.apply({"type": "step", "step": step, "epoch": 1, "loss": 1.0 / step})
    steps = h.steps
    assert 50 <= len(steps) <= 100 and steps[0] == 1 and steps[-1] == 10_001 and h.n_steps == 10_001
    gaps = set(np.diff(steps[:-1]).tolist())
    assert len(gaps) == 1, gaps  # uniform stride up to the newest point
    assert h.losses[-1] == pytest.approx(1 / 10_001)


def test_the_live_job_view_and_a_stored_run_fold_the_same_history(synthetic_run):
    from hcl_core.jobs import JobState

    run = load_run(synthetic_run.run_dir)
    live = JobState(1, run.config)
    for event in run.events():
        live.apply(event)
    stored = JobState.of_run(run)
    assert live.steps == stored.steps and live.evals == stored.evals and live.baseline == stored.baseline
    assert live.state == stored.state == "finished" and stored.summary == run.summary
    assert [e["epoch"] for e in stored.evals] == [0, 1, 2] and len(stored.steps) == stored.total_steps


# --------------------------------------------------------------------------------------------
# liveness: a pid and its process's start time
# --------------------------------------------------------------------------------------------


@pytest.fixture
def unrelated_process():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _claim(run_path, **status):
    current = json.loads((run_path / "status.json").read_text())
    current.update(state="running", host=os.uname().nodename, **status)
    (run_path / "status.json").write_text(json.dumps(current))


def test_a_live_but_unrelated_process_with_the_stored_pid_does_not_keep_a_run_running(tmp_path, unrelated_process):
    import psutil

    w = RunWriter(tmp_path, RunConfig())
    w.close("finished")
    pid = unrelated_process.pid
    born = psutil.Process(pid).create_time()
    _claim(w.path, pid=pid, pid_started=born)
    assert load_run(w.path).state == "running"  # the recorded process itself
    _claim(w.path, pid=pid, pid_started=born - 3600)  # the pid now belongs to another process
    assert load_run(w.path).state == "interrupted"
    status = json.loads((w.path / "status.json").read_text())
    del status["pid_started"]  # a run written before start times were recorded
    status["started"] = born - 3600  # ... an hour before this process was born
    (w.path / "status.json").write_text(json.dumps(status))
    assert load_run(w.path).state == "interrupted"
    status["started"] = born + 0.5
    (w.path / "status.json").write_text(json.dumps(status))
    assert load_run(w.path).state == "running"


def test_a_writer_records_its_process_start_time(tmp_path):
    from hcl_core.store import process_start_time

    w = RunWriter(tmp_path, RunConfig())
    status = json.loads((w.path / "status.json").read_text())
    assert status["pid"] == os.getpid() and status["pid_started"] == pytest.approx(process_start_time())
    assert load_run(w.path).state == "running"


# --------------------------------------------------------------------------------------------
# hygiene: special files and links in the models folder
# --------------------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.getcwd()}


def test_a_fifo_in_place_of_a_run_file_never_blocks_list_or_show(tmp_path):
    good = RunWriter(tmp_path, RunConfig(), run_id="good")
    good.append_event({"type": "step", "step": 1, "loss": 0.5}, flush=True)
    good.close("finished")
    blocked = tmp_path / "fifo-config"
    blocked.mkdir()
    os.mkfifo(blocked / "config.json")
    odd = RunWriter(tmp_path, RunConfig(seed=1), run_id="fifo-files")
    odd.close("finished")
    for name in ("status.json", "metrics.jsonl", "eval_inputs.npz"):
        (odd.path / name).unlink(missing_ok=True)
        os.mkfifo(odd.path / name)
    os.mkfifo(odd.path / "snapshots" / "epoch_0000.npz")
    os.mkfifo(tmp_path / "a-fifo")
    for command in (["list"], ["show", "fifo-files"]):
        proc = subprocess.run([sys.executable, "-m", "hcl_core", *command, "--out", str(tmp_path)],
                              capture_output=True, text=True, env=_env(), timeout=120)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    runs, warnings = list_runs(tmp_path)
    assert sorted(r.run_id for r in runs) == ["fifo-files", "good"]
    assert any(w.startswith("skipped fifo-config: config.json is not a regular file") for w in warnings), warnings
    assert any(w.startswith("skipped a-fifo: not a folder or a plain file") for w in warnings), warnings
    run = next(r for r in runs if r.run_id == "fifo-files")
    assert run.status == {} and any("status.json is not a regular file" in w for w in run.warnings)
    assert run.events() == [] and any("metrics.jsonl" in w and "not a regular file" in w for w in run.warnings)
    with pytest.raises(RunFileError, match="not a regular file"):
        run.load_snapshot(0)
    with pytest.raises(RunFileError, match="eval_inputs.npz is not a regular file"):
        run.load_eval_inputs()
    assert run.class_names(10) == tuple(str(i) for i in range(10))


def test_symbolic_links_in_the_models_folder_are_skipped_with_one_warning_each(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    RunWriter(outside, RunConfig(), run_id="elsewhere").close("finished")
    secret = outside / "secret.txt"
    secret.write_text("password")
    models = tmp_path / "models"
    models.mkdir()
    (models / "etc").symlink_to("/etc")
    (models / "linked-run").symlink_to(outside / "elsewhere")
    group = models / "demo"
    group.mkdir()
    RunWriter(group, RunConfig(seed=1), run_id="member").close("finished")
    (group / "linked-member").symlink_to(outside / "elsewhere")
    run = RunWriter(models, RunConfig(seed=2), run_id="with-links")
    run.close("finished")
    (run.path / "checkpoint.pt").symlink_to(secret)
    (run.path / "snapshots").rmdir()
    (run.path / "snapshots").symlink_to(outside / "elsewhere" / "snapshots")
    runs, warnings = list_runs(models)
    assert sorted(r.run_id for r in runs) == ["member", "with-links"]
    assert sorted(w.split(":")[0] for w in warnings if w.startswith("skipped")) == [
        "skipped demo/linked-member", "skipped etc", "skipped linked-run"], warnings
    linked = next(r for r in runs if r.run_id == "with-links")
    assert linked.snapshot_epochs() == [] and any("symbolic link" in w for w in linked.warnings)
    with pytest.raises(RunFileError, match="checkpoint.pt is a symbolic link"):
        linked.load_checkpoint()


def _without_root_powers(argv: list[str]) -> list[str]:
    """``argv`` run so that file permissions apply to it: as root, without the capabilities that bypass
    them (``setpriv``, util-linux); as any other user, as it is."""
    if os.getuid() != 0:
        return argv
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *argv]


def test_an_unreadable_snapshots_folder_is_a_warning_on_its_run_never_a_crash(tmp_path):
    code = ("import os, sys, json\nfrom hcl_core.store import RunWriter, list_runs, load_run\n"
            "from hcl_core.config import RunConfig\nimport numpy as np\n"
            "w = RunWriter(sys.argv[1], RunConfig(), run_id='locked')\n"
            "w.save_snapshot(0, {'features': np.ones((3, 2), np.float32)})\nw.close('finished')\n"
            "os.chmod(w.path / 'snapshots', 0)\nos.chmod(w.path / 'status.json', 0)\n"
            "runs, warnings = list_runs(sys.argv[1])\n"
            "print(json.dumps({'runs': [r.run_id for r in runs], 'epochs': runs[0].snapshot_epochs(),"
            " 'warnings': warnings + runs[0].warnings}))\n"
            "os.chmod(w.path / 'snapshots', 0o755)\n")
    proc = subprocess.run(_without_root_powers([sys.executable, "-c", code, str(tmp_path)]), capture_output=True,
                          text=True, env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["runs"] == ["locked"] and out["epochs"] == []
    assert any("status.json cannot be opened (Permission denied)" in w for w in out["warnings"]), out
    assert any("snapshots/ cannot be read (Permission denied)" in w for w in out["warnings"]), out
