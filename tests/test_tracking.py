"""TensorBoard logging of a real training run, read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from hcl_core.config import RunConfig
from hcl_core.registry import METRICS
from hcl_core.store import load_run
from hcl_core.tracking import TensorBoardLogger, TrackingError, add_arguments, log_run, sweep_logger, tee, train_logger
from hcl_core.train import train

CONFIG = RunConfig(dataset="digits", encoder="mlp", loss="hcl", beta=2.0, epochs=3, batch_size=64, max_train=200,
                   eval_size=50, hidden_dim=32, feature_dim=16, snapshot_every=1, threads=1, device="cpu")


def _read(folder: Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def _series(acc: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def _same(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> bool:
    """Same steps, and values equal up to TensorBoard's float32 storage."""
    return [s for s, _ in got] == [s for s, _ in want] and [v for _, v in got] == pytest.approx(
        [v for _, v in want], rel=1e-6)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A short real run trained with the logger as its callback (and a second callback beside it)."""
    tmp = tmp_path_factory.mktemp("tb")
    seen: list[dict] = []
    logger = TensorBoardLogger(tmp / "logs")
    result = train(CONFIG, callback=tee(logger, seen.append, None), root=tmp / "models")
    assert result.state == "finished"
    return tmp / "logs", load_run(result.run_dir), seen


def test_a_training_run_is_logged_in_its_own_subfolder_with_every_scalar(logged):
    logs, run, seen = logged
    assert [p.name for p in logs.iterdir()] == [run.run_id]
    acc = _read(logs / run.run_id)
    steps = run.events("step")
    assert _same(_series(acc, "loss/step"), [(e["step"], e["loss"]) for e in steps])
    assert len(steps) == 3 * (200 // 64)
    epochs = run.events("epoch")
    assert _same(_series(acc, "loss/epoch"), [(e["epoch"], e["loss"]) for e in epochs])
    assert [s for s, _ in _series(acc, "speed/steps_per_s")] == [1, 2, 3]
    evals = run.events("eval")
    assert [e["epoch"] for e in evals] == [0, 1, 2, 3]
    for key in (*METRICS, "effective_negatives", "clamp_share"):
        assert _same(_series(acc, f"eval/{key}"), [(e["epoch"], e[key]) for e in evals]), key
    baseline = run.baseline  # recorded once, in the event log
    for kind in ("raw", "random_init"):
        for key, value in baseline[kind].items():
            assert _same(_series(acc, f"baseline/{kind}/{key}"), [(0, value)])
    assert seen == run.events(), "tee handed every event to the second callback too"


def test_the_hparams_tab_gets_the_config_and_the_final_metrics(logged):
    logs, run, _ = logged
    acc = _read(logs / run.run_id)
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = {k: v.number_value if v.HasField("number_value") else v.string_value
               for k, v in start.session_start_info.hparams.items()}
    assert hparams["loss"] == "hcl" and hparams["beta"] == 2.0 and hparams["tau"] == 0.5
    assert hparams["tau_plus"] == pytest.approx(0.1) and hparams["state"] == "finished"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    metric_tags = {m.name.tag for m in experiment.experiment.metric_infos}
    assert metric_tags == {f"eval/{k}" for k in METRICS}
    text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert '"beta": 2.0' in text


def test_a_stored_run_replays_into_the_same_scalars(logged, tmp_path):
    logs, run, _ = logged
    folder = log_run(run.path, tmp_path / "replay", name="my-sweep/" + run.run_id)
    assert folder == tmp_path / "replay" / "my-sweep" / run.run_id
    live, replay = _read(logs / run.run_id), _read(folder)
    assert set(replay.Tags()["scalars"]) == set(live.Tags()["scalars"])
    for tag in live.Tags()["scalars"]:
        assert _series(replay, tag) == _series(live, tag), tag


def test_events_before_start_are_ignored_and_odd_values_are_skipped(tmp_path):
    logger = TensorBoardLogger(tmp_path, name="../odd name")
    logger({"type": "step", "step": 1, "loss": 1.0})  # no start yet: nothing to write to
    assert not any(tmp_path.iterdir())
    logger({"type": "start", "run_dir": None})
    logger({"type": "step", "step": 1, "loss": float("nan")})
    logger({"type": "step", "step": 2, "loss": 0.5})
    logger({"type": "eval", "epoch": 1, "knn_acc": "n/a", "uniformity": -1.5})
    logger({"type": "end", "state": "finished"})
    (folder,) = tmp_path.iterdir()
    assert folder.name == "odd_name", "a name cannot climb out of the log folder"
    acc = _read(folder)
    assert _series(acc, "loss/step") == [(2, 0.5)]
    assert _series(acc, "eval/uniformity") == [(1, -1.5)]
    assert "eval/knn_acc" not in acc.Tags()["scalars"]


def test_a_log_folder_that_cannot_be_written_warns_once_and_never_ends_the_run(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    warnings: list[str] = []
    logger = TensorBoardLogger(blocker / "logs", warn=warnings.append)
    logger({"type": "start", "run_dir": None})
    logger({"type": "step", "step": 1, "loss": 1.0})
    logger({"type": "end", "state": "finished"})
    assert len(warnings) == 1 and "TensorBoard logging to" in warnings[0]


def test_the_command_line_hooks_check_the_folder_first(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args([]).tensorboard is None
    assert parser.parse_args(["--tensorboard", "tb"]).tensorboard == "tb"
    assert train_logger(None) is None and sweep_logger(None, "s") is None
    assert isinstance(train_logger(tmp_path / "new" / "tb", CONFIG), TensorBoardLogger)
    assert (tmp_path / "new" / "tb").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(TrackingError, match="--tensorboard .*file/tb: the folder cannot be created"):
        train_logger(tmp_path / "file" / "tb")


def test_a_sweep_logs_each_run_as_it_comes_back(tmp_path):
    from hcl_core.sweep import run_sweep

    configs = [CONFIG.replace(loss="info_nce", epochs=1, seed=0), CONFIG.replace(loss="hard_supcon", epochs=1, seed=0)]
    seen: list[tuple[int, int]] = []
    on_result = sweep_logger(tmp_path / "tb", "my-sweep", then=lambda done, total, result: seen.append((done, total)))
    result = run_sweep(configs, tmp_path / "models" / "my-sweep", workers=1, on_result=on_result)
    assert seen == [(1, 2), (2, 2)]
    runs = sorted(Path(r["run_dir"]).name for r in result.results)
    assert sorted(p.name for p in (tmp_path / "tb" / "my-sweep").iterdir()) == runs
    for r in result.results:
        acc = _read(tmp_path / "tb" / "my-sweep" / Path(r["run_dir"]).name)
        assert len(acc.Scalars("loss/step")) == 200 // 64
        assert [e.step for e in acc.Scalars("eval/knn_acc")] == [0, 1]
