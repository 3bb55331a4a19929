"""Two runs of the same configuration keep their identity on every page: pickers are keyed by run id."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from page_runs import copy_runs
from streamlit.testing.v1 import AppTest

PAGES = Path(__file__).resolve().parents[1] / "pages"
pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def twins(tmp_path, monkeypatch, streamlit_caches) -> tuple[str, str]:
    """``(older id, newer id)``: the tiny HCL run and a copy of it that started a minute later."""
    older = copy_runs(tmp_path, ["hcl"])["hcl"]
    newer = tmp_path / (older.name + "-twin")
    shutil.copytree(older, newer)
    status = json.loads((newer / "status.json").read_text())
    status["started"] = status["started"] + 60
    (newer / "status.json").write_text(json.dumps(status))
    monkeypatch.setenv("HCL_MODELS_DIR", str(tmp_path))
    return older.name, newer.name


def _touch_a_control(at: AppTest, picker: str) -> None:
    """Change some control other than the run picker, as a student would."""
    for widget in [*at.slider, *at.checkbox, *at.toggle]:
        if widget.key != picker:
            if widget.type == "slider":
                widget.set_value(widget.max)
            else:
                widget.set_value(not widget.value)
            return
    for radio in at.radio:  # radios of plain strings (no formatting) take their option as the value
        if radio.key != picker and len(radio.options) > 1:
            radio.set_value(radio.options[-1])
            return
    raise AssertionError("no control to touch on this page")


@pytest.mark.parametrize(("page", "picker"), [("embeddings.py", "emb_run"), ("negatives.py", "neg_run"),
                                              ("theory.py", "theory_run")])
def test_a_linked_run_stays_chosen_when_a_control_changes_although_its_twin_reads_alike(twins, page, picker):
    older, newer = twins
    at = AppTest.from_file(str(PAGES / page), default_timeout=120)
    at.query_params["run"] = newer
    at.run()
    assert not at.exception, at.exception
    box = at.selectbox(key=picker)
    assert box.value == newer
    labels = box.options  # AppTest holds the options as shown
    assert len(set(labels)) == len(labels) == 2  # the twins' labels differ (start time)
    _touch_a_control(at, picker)
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key=picker).value == newer
    assert at.query_params["run"] == [newer] or at.query_params["run"] == newer


def test_compare_lists_twins_apart_and_keeps_a_linked_selection(twins):
    older, newer = twins
    at = AppTest.from_file(str(PAGES / "compare.py"), default_timeout=120)
    at.query_params["runs"] = newer
    at.run()
    assert not at.exception, at.exception
    chooser = at.multiselect[0]
    assert [Path(p).name for p in chooser.value] == [newer]
    labels = chooser.options
    assert len(set(labels)) == len(labels) == 2
