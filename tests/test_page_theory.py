"""The Theory page through Streamlit's AppTest, on a real tiny run (and on an empty store)."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from page_runs import values
from streamlit.testing.v1 import AppTest

from hcl_core.config import RunConfig
from hcl_core.store import atomic_save_npz
from hcl_core.train import train

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "theory.py")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A real H-SCL run: 2 epochs, snapshots at epochs 0, 1 and 2."""
    root = tmp_path_factory.mktemp("theory_runs")
    return train(RunConfig(loss="hard_supcon", beta=1.0, epochs=2, snapshot_every=1), root=root).run_dir


@pytest.fixture(autouse=True)
def fresh_caches(monkeypatch):
    """Caches leak between AppTests (shared/docs/MEASURED.md); AppTest also replaces ``__main__``
    for good, which would break any later multiprocessing "spawn" in this pytest process."""
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def models(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HCL_MODELS_DIR", str(tmp_path))
    return tmp_path


def run_page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "error") for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def chart(at: AppTest, key: str) -> dict:
    for c in at.get("plotly_chart"):
        if c.proto.id and key in c.proto.id:
            return json.loads(c.proto.spec)
    raise AssertionError(f"no chart with key {key}")


def test_empty_store_explains_what_to_do(models):
    at = run_page()
    assert "No runs with snapshots yet" in at.info[0].value
    assert "python -m hcl_core train" in texts(at)
    assert "H-SCL ≤ H-UCL" in texts(at)  # the claim is explained even without a run
    assert not at.get("plotly_chart")


def test_a_real_run_shows_the_bound_its_reading_and_the_margin_over_training(models, trained):
    shutil.copytree(trained, models / "run")
    at = run_page()
    assert [m.label for m in at.metric] == ["β values where H-SCL ≤ H-UCL", "Verdict changes at"] * 2
    assert at.metric[0].value.endswith("of 11") and at.metric[2].value.endswith("of 11")
    # light charts first (no Plotly to draw on a page switch), the same figures with Plotly on request
    light = [re.search(r'data-chart="([^"]*)"', h.proto.body).group(1) for h in at.get("html")
             if "hcl-figure" in h.proto.body]
    assert len(light) == 4 and light[2:] == ["The margin over training: H-SCL, partner only (authors&#x27; check)",
                                             "The margin over training: H-SCL, all same-class positives"]
    assert not at.get("plotly_chart")
    at.toggle(key="interactive_charts").set_value(True).run()
    assert not at.exception and not [h for h in at.get("html") if "hcl-figure" in h.proto.body]
    # side by side: the authors' check (partner only) first, then every same-class view a positive
    for key, first in (("theory_bound_partner", "H-SCL, partner only (authors' check)"),
                       ("theory_bound_all", "H-SCL, all same-class positives")):
        bound = chart(at, key)
        assert bound["data"][0]["name"] == first and bound["data"][1]["name"] == "H-UCL (hard unsupervised)"
        assert values(bound["data"][0]["x"])[-1] == 10.0
    for key in ("theory_gap_partner", "theory_gap_all"):
        assert [t["name"] for t in chart(at, key)["data"]] == ["epoch 0", "epoch 1", "epoch 2"]
    body = texts(at)
    assert "With τ = 0.5, 256 samples of 10 classes and 510 negatives per anchor" in body
    assert "Why: H-UCL counts same-class views as negatives" in body
    assert "main/main_loss.py" in body and "with the authors' own check (partner only)" in body


def test_controls_epoch_range_negatives_and_all_runs(models, trained):
    shutil.copytree(trained, models / "run")
    at = run_page()
    at.toggle(key="interactive_charts").set_value(True).run()
    at.select_slider(key="theory_epoch").set_value(0).run()
    assert not at.exception
    assert "epoch 0" in chart(at, "theory_bound_partner")["layout"]["title"]["text"]
    at.select_slider(key="theory_beta_max").set_value(4.0).run()
    assert values(chart(at, "theory_bound_all")["data"][0]["x"])[-1] == 4.0
    at.toggle(key="theory_show_negatives").set_value(True).run()
    assert not at.exception
    assert [t["name"] for t in chart(at, "theory_negatives")["data"]] == [
        "H-UCL − H-SCL, partner only (authors' check)", "H-UCL − H-SCL, all same-class positives"]
    at.toggle(key="theory_all_runs").set_value(True).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert len(table) == 1 and list(table.columns)[:3] == ["run", "epoch", "β=0"]
    assert " partner, " in table["β=0"][0] and table["β=0"][0].endswith(" all")


def test_a_snapshot_without_projections_gives_a_message_not_a_crash(models, trained):
    run = Path(shutil.copytree(trained, models / "run"))
    snap = run / "snapshots" / "epoch_0002.npz"
    with np.load(snap) as z:
        kept = {k: z[k] for k in ("features", "labels")}
    atomic_save_npz(snap, kept)
    at = run_page()
    assert any("cannot be used" in e.value for e in at.error)
