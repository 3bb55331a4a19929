"""TensorBoard logging of a real training run, read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from hcl_core.config import RunConfig
from hcl_core.registry import METRICS
from hcl_core.store import load_run
from hcl_core.tracking import TensorBoardLogger, log_run, tee
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
    baseline = run.status["baseline"]
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
