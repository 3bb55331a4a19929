"""The Embeddings page through Streamlit's AppTest, on a real tiny run (and broken copies of it)."""

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import hcl_core.projection as projection
from hcl_core.config import RunConfig
from hcl_core.snapshots import lay_out_ahead, read_snapshots, umap_chain
from hcl_core.store import load_run
from hcl_core.train import train
from ui.projections import projection_service

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "embeddings.py")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A real run: 2 epochs, snapshots at epochs 0, 1, 2 of 360 digits test samples."""
    root = tmp_path_factory.mktemp("trained")
    return train(RunConfig(epochs=2, snapshot_every=1, name="tiny"), root=root).run_dir


@pytest.fixture(autouse=True)
def fresh_caches(monkeypatch):
    """Caches leak between AppTests (MEASURED.md); a fast stand-in replaces UMAP unless a test wants it."""
    st.cache_data.clear()
    st.cache_resource.clear()

    def fake_umap(x, *, init=None, **_):
        time.sleep(0.05)
        return projection.pca_2d(x)[:, ::-1].copy()  # not PCA, so the test can tell them apart

    monkeypatch.setattr(projection, "umap_2d", fake_umap)
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def models(tmp_path, monkeypatch, trained) -> Path:
    """An empty models folder (HCL_MODELS_DIR); tests copy the trained run into it as they need."""
    monkeypatch.setenv("HCL_MODELS_DIR", str(tmp_path))
    return tmp_path


def add_run(models: Path, trained: Path, name: str = "run") -> Path:
    return Path(shutil.copytree(trained, models / name))


def run_page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=30).run()
    assert not at.exception, at.exception
    return at


def spec(at: AppTest) -> dict:
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    return json.loads(charts[0].proto.spec)


def texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "error") for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def test_empty_store_says_how_to_make_a_run(models):
    at = run_page()
    assert "No runs with snapshots yet" in at.info[0].value
    assert not at.get("plotly_chart")


def test_one_epoch_control_drives_the_chart_play_steps_through_the_epochs_and_the_url_keeps_it(models, trained):
    run = add_run(models, trained)
    at = run_page()
    fig = spec(at)
    assert [f["name"] for f in fig["frames"]] == ["2"] and not fig["layout"].get("sliders")  # no second control
    assert fig["layout"]["title"]["text"] == "Backbone features of 360 test samples · epoch 2 · PCA"
    assert fig["layout"]["xaxis"]["title"]["text"].startswith("PC 1 (") and "% of variance" in fig["layout"]["xaxis"][
        "title"]["text"]
    assert [t["name"] for t in fig["data"]] == [str(k) for k in range(10)]  # legend by class
    ranges = fig["layout"]["xaxis"]["range"], fig["layout"]["yaxis"]["range"]
    at.select_slider(key=f"emb_epoch:{run.name}").set_value(1).run()
    assert not at.exception
    fig = spec(at)
    assert "epoch 1 ·" in fig["layout"]["title"]["text"] and at.query_params["epoch"] in ("1", ["1"])
    assert (fig["layout"]["xaxis"]["range"], fig["layout"]["yaxis"]["range"]) == ranges  # the axes hold still
    next(b for b in at.button if b.label == "Play").click().run()  # from epoch 1: the next frame is epoch 2
    assert at.session_state["emb_playing"]
    at.session_state[f"emb_epoch:{run.name}"] = 2  # a frame advanced (run_every does not fire in AppTest)
    at.run()
    assert "epoch 2 ·" in spec(at)["layout"]["title"]["text"]
    linked = AppTest.from_file(PAGE, default_timeout=30)
    linked.query_params.update({"run": run.name, "epoch": "1", "layout": "PCA"})
    linked.run()
    assert "epoch 1 ·" in spec(linked)["layout"]["title"]["text"]


def test_picking_a_sample_shows_its_neighbours_and_hardest_negatives(models, trained):
    run = add_run(models, trained)
    at = run_page()
    assert "Its nearest neighbours" in texts(at)
    at.selectbox(key=f"emb_sample:{run.name}").set_value(7).run()
    assert not at.exception
    shown = texts(at)
    assert "Nearest neighbours" in shown and "Hardest negatives" in shown and "test #" in shown
    assert len(at.get("image")) == 1 + 8 + 8  # the sample, 8 neighbours, 8 hardest negatives
    names = [t["name"] for t in spec(at)["data"]]
    assert names[-3:] == ["chosen sample", "nearest neighbours", "hardest negatives"]


def test_umap_shows_pca_and_a_note_until_ready_then_umap(models, trained):
    add_run(models, trained)
    at = AppTest.from_file(PAGE, default_timeout=30).run()
    at.radio(key="emb_method").set_value("UMAP").run()
    assert not at.exception
    # the (fake) fit may be quick, but the first run never waits for it
    first = spec(at)["layout"]["title"]["text"]
    if first.endswith("PCA"):
        assert "UMAP is being computed…" in texts(at)
    for _ in range(100):  # fragments with run_every do not fire in AppTest: rerun by hand
        at.run()
        if "UMAP is being computed" not in texts(at) and "of the other epochs" not in texts(at):
            break
        time.sleep(0.05)
    fig = spec(at)
    assert fig["layout"]["title"]["text"].endswith("· UMAP")
    assert [f["name"] for f in fig["frames"]] == ["2"]
    assert fig["layout"]["xaxis"]["title"]["text"] == "UMAP 1"


def test_a_single_snapshot_and_an_interrupted_run(models, trained):
    run = add_run(models, trained)
    for epoch in (1, 2):
        (run / "snapshots" / f"epoch_{epoch:04d}.npz").unlink()
    status = json.loads((run / "status.json").read_text())
    status.update(state="running", pid=2**22 + 12345)  # a process that does not exist
    (run / "status.json").write_text(json.dumps(status))
    at = run_page()
    assert "interrupted" in texts(at) and "Only one snapshot (epoch 0)" in texts(at)
    fig = spec(at)
    assert len(fig["frames"]) == 1 and not fig["layout"].get("sliders")


def test_a_corrupt_snapshot_is_left_out_with_a_message(models, trained):
    run = add_run(models, trained)
    (run / "snapshots" / "epoch_0001.npz").write_bytes(b"not a zip file")
    at = run_page()
    assert "The snapshot of epoch 1 is left out" in texts(at)
    assert at.select_slider(key=f"emb_epoch:{run.name}").options == ["0", "2"]


def test_all_snapshots_corrupt_is_an_error_not_a_crash(models, trained):
    run = add_run(models, trained)
    for p in (run / "snapshots").iterdir():
        p.write_bytes(b"")
    at = run_page()
    assert "None of this run's snapshots can be read" in at.error[0].value
    assert not at.get("plotly_chart")


def test_vectors_or_missing_inputs_show_a_table_instead_of_pictures(models, trained):
    run = add_run(models, trained)
    data = dict(np.load(run / "eval_inputs.npz"))
    data["inputs"] = data["inputs"].reshape(len(data["inputs"]), -1)  # like the synthetic data set
    np.savez(run / "eval_inputs.npz", **data)
    at = run_page()
    assert "<br>" not in spec(at)["data"][0]["hovertext"][0]
    at.selectbox(key=f"emb_sample:{run.name}").set_value(3).run()
    assert not at.exception and len(at.dataframe) == 2 and not at.get("image")
    (run / "eval_inputs.npz").unlink()
    st.cache_data.clear()
    at = run_page()
    assert spec(at)["frames"]


@pytest.mark.slow
def test_real_umap_in_the_background(models, trained, monkeypatch):
    monkeypatch.undo()  # the real umap_2d
    monkeypatch.setenv("HCL_MODELS_DIR", str(models))
    add_run(models, trained)
    at = AppTest.from_file(PAGE, default_timeout=30).run()
    at.radio(key="emb_method").set_value("UMAP").run()
    assert "UMAP is being computed…" in texts(at) and spec(at)["layout"]["title"]["text"].endswith("PCA")
    deadline = time.time() + 120
    while time.time() < deadline and not spec(at)["layout"]["title"]["text"].endswith("UMAP"):
        time.sleep(0.5)
        at.run()
    assert spec(at)["layout"]["title"]["text"].endswith("UMAP")


def test_the_legend_and_the_inspector_show_the_class_names_saved_with_the_run(models, trained):
    run = add_run(models, trained)
    data = dict(np.load(run / "eval_inputs.npz"))
    assert list(data["class_names"]) == [str(k) for k in range(10)]  # written by the training
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    data["class_names"] = np.array(words)
    np.savez(run / "eval_inputs.npz", **data)
    at = run_page()
    assert [t["name"] for t in spec(at)["data"]] == words
    at.selectbox(key=f"emb_sample:{run.name}").set_value(7).run()
    label = int(data["labels"][7])
    assert f"**class {words[label]}**" in texts(at)


def test_a_run_saved_without_class_names_falls_back_to_its_data_sets_names(models, trained):
    run = add_run(models, trained)
    data = dict(np.load(run / "eval_inputs.npz"))
    del data["class_names"]
    np.savez(run / "eval_inputs.npz", **data)
    config = json.loads((run / "config.json").read_text())
    config.update(dataset="fashion_mnist", data_root="/elsewhere", encoder="mlp")  # names from the registry
    (run / "config.json").write_text(json.dumps(config))
    names = [t["name"] for t in spec(run_page())["data"]]
    assert names[:2] == ["T-shirt/top", "Trouser"] and names[9] == "Ankle boot"
    config.update(dataset="image_folder")  # no names anywhere: the class indices
    (run / "config.json").write_text(json.dumps(config))
    st.cache_data.clear()
    assert [t["name"] for t in spec(run_page())["data"]] == [str(k) for k in range(10)]


def test_a_run_laid_out_ahead_opens_in_umap_at_once(models, trained):
    run = add_run(models, trained)
    service = projection_service()  # the app's one service, as the job manager hands ended runs to it
    assert lay_out_ahead(service, run) == 3  # epochs 2, 1, 0: the chain the page asks for
    keys = [key for key, _ in umap_chain(load_run(run), read_snapshots(load_run(run)))]
    for key in keys:
        assert service.wait(key, 30) is not None
    at = AppTest.from_file(PAGE, default_timeout=30)
    at.query_params.update({"run": run.name, "layout": "UMAP"})
    at.run()
    assert not at.exception
    assert spec(at)["layout"]["title"]["text"].endswith("· UMAP") and "being computed" not in texts(at)
    assert lay_out_ahead(service, models / "no-such-run") == 0  # skipped, never raised
