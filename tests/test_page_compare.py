"""The Compare page through Streamlit's AppTest, on real tiny runs (see page_runs.py)."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import zipfile
from pathlib import Path

import pytest
from page_runs import clear_caches
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from hcl_core.store import load_run
from ui import run_files

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "compare.py")
pytestmark = pytest.mark.usefixtures("streamlit_caches")


@pytest.fixture
def downloads(monkeypatch) -> dict[str, bytes]:
    """File name -> bytes of every file the page hands to a download button."""
    files: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def record(self, path_or_data, mimetype, kind, filename=None):
        if filename is not None and isinstance(path_or_data, bytes):
            files[filename] = path_or_data
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
    return files


def run_page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    return at


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_empty_store_shows_a_helpful_message(tmp_path, monkeypatch):
    monkeypatch.setenv("HCL_MODELS_DIR", str(tmp_path))
    at = run_page()
    assert "No runs yet" in at.info[0].value and "python -m hcl_core train" in at.info[0].value
    assert not at.get("plotly_chart") and not at.dataframe


def light_charts(at: AppTest) -> list[str]:
    """The titles of the charts drawn as markup (hcl_core.plots.markup.figure_html)."""
    return [html.unescape(re.search(r'data-chart="([^"]*)"', h.proto.body).group(1))
            for h in at.get("html") if "hcl-figure" in h.proto.body]


CURVE_TITLES = ["Training loss", "linear probe (all labels)", "few-shot probe (10 labels/class)",
                "kNN (k=200)", "alignment (lower = positives closer)", "uniformity (lower = more spread)"]


def test_default_runs_curves_table_embeddings(tiny_models):
    at = run_page()
    # One run per loss, the papers' trio in its order (not simply the three newest).
    assert at.multiselect(key="cmp_runs").value == [str(tiny_models[k]) for k in ("info_nce", "hcl", "hard_supcon")]
    table = at.dataframe[0].value
    assert list(table["run"]) == ["UCL / SimCLR", "HCL β=1", "H-SCL β=1", "raw pixels (digits)",
                                  "random-init encoder (digits)"]
    assert list(table.columns[:5]) == ["run", "β", "τ", "τ⁺", "seed"]  # what tells runs apart, first
    assert at.dataframe[0].proto.placeholder == ""  # missing values blank, not a grey "None"
    assert '"%.3f"' in json.dumps(json.loads(at.dataframe[0].proto.columns)["kNN"])  # three decimals
    # Light charts by default: the six curves as markup, only the PCA panels (subplots) with Plotly.
    assert light_charts(at) == CURVE_TITLES
    assert len(charts(at)) == 1
    at.toggle(key="interactive_charts").set_value(True).run()
    assert not at.exception and not light_charts(at)
    figs = charts(at)
    assert [f["layout"]["title"]["text"] for f in figs[:-1]] == CURVE_TITLES
    loss_names = [t["name"] for t in figs[0]["data"] if t.get("showlegend") is not False]
    assert loss_names == ["UCL / SimCLR", "HCL β=1", "H-SCL β=1"]
    linear = figs[1]
    assert [len(t["x"]) for t in linear["data"]] == [2, 2, 2]  # epochs 0 and 2
    assert any("raw pixels" in a["text"] for a in linear["layout"]["annotations"])
    panels = [a["text"] for a in figs[-1]["layout"]["annotations"]]
    assert panels == ["UCL / SimCLR · epoch 2", "HCL β=1 · epoch 2", "H-SCL β=1 · epoch 2"]
    assert len({t["legendgroup"] for t in figs[-1]["data"]}) == 10  # one legend entry per digit class
    assert "buttons under each chart" in "\n".join(c.value for c in at.caption)
    assert "Sweep" in "\n".join(e.value for e in (*at.subheader, *at.info))  # the Sweeps tab rendered


def test_csv_download_holds_the_table(tiny_models, downloads):
    at = run_page()
    at.multiselect(key="cmp_runs").set_value([str(tiny_models["info_nce"]), str(tiny_models["hcl"])]).run()
    assert not at.exception
    rows = list(csv.DictReader(io.StringIO(downloads["comparison.csv"].decode())))
    assert [r["run"] for r in rows] == ["UCL / SimCLR", "HCL β=1", "raw pixels (digits)",
                                        "random-init encoder (digits)"]
    run = load_run(tiny_models["hcl"])
    summary, baseline = run.summary, run.baseline
    hcl = rows[1]
    assert hcl["loss"] == "hcl" and hcl["β"] == "1.0" and hcl["run id"] == tiny_models["hcl"].name
    assert float(hcl["linear probe"]) == pytest.approx(summary["linear_probe_acc"])
    assert float(hcl["same-class mass"]) == pytest.approx(summary["same_class_mass"])
    raw = rows[2]
    assert float(raw["kNN"]) == pytest.approx(baseline["raw"]["knn_acc"]) and raw["loss"] == ""
    assert float(rows[3]["few-shot probe"]) == pytest.approx(baseline["random_init"]["few_shot_probe_acc"])
    assert len(at.dataframe[0].value) == 4
    html_button = [b for b in at.get("download_button") if b.proto.label.endswith("(HTML)")]
    assert html_button and html_button[0].proto.deferred_file_id  # built only when clicked


def test_no_selection(tiny_models):
    at = run_page()
    at.multiselect(key="cmp_runs").set_value([]).run()
    assert not at.exception
    infos = [i.value for i in at.info]
    assert any("Pick one or more runs" in i for i in infos)
    assert not at.get("plotly_chart")


def test_run_files_download_a_bundle_that_imports_elsewhere(tiny_models, downloads, tmp_path, monkeypatch):
    at = run_page()
    at.selectbox(key="files_run").set_value(tiny_models["hcl"].name).run()
    assert not at.exception, at.exception
    button = next(b for b in at.get("download_button") if b.proto.label.endswith("(.zip)"))
    assert button.proto.deferred_file_id, "the zip is built only when clicked"
    data = run_files.bundle_bytes(tiny_models["hcl"])
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
    top = tiny_models["hcl"].name
    assert f"{top}/config.json" in names and f"{top}/snapshots/epoch_0002.npz" in names

    # The bundle imports on another machine, through the page's uploader.
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("HCL_MODELS_DIR", str(elsewhere))
    clear_caches()
    at = run_page()
    at.get("file_uploader")[0].set_value((f"{tiny_models['hcl'].name}.zip", data, "application/zip")).run()
    assert not at.exception, at.exception
    assert any("Imported as" in s.value for s in at.success), [s.value for s in at.success]
    imported = load_run(elsewhere / tiny_models["hcl"].name)
    assert imported.summary == load_run(tiny_models["hcl"]).summary
    at.run()  # a rerun with the same upload does not import it a second time
    assert [p.name for p in elsewhere.iterdir() if not p.name.startswith(".")] == [tiny_models["hcl"].name]


def test_run_files_refuse_a_bad_bundle_with_a_message(tmp_path, monkeypatch):
    monkeypatch.setenv("HCL_MODELS_DIR", str(tmp_path))
    at = run_page()
    at.get("file_uploader")[0].set_value(("evil.zip", b"not a zip at all", "application/zip")).run()
    assert not at.exception, at.exception
    assert any("not imported" in e.value and "not a zip file" in e.value for e in at.error)
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".")]


def test_a_link_followed_in_the_same_session_wins_and_the_users_own_choice_then_sticks(tiny_models):
    at = run_page()
    three = [str(tiny_models[k]) for k in ("info_nce", "hcl", "hard_supcon")]
    assert at.multiselect(key="cmp_runs").value == three
    at.query_params["runs"] = tiny_models["hcl"].name  # the one-click comparison's page link
    at.run()
    assert at.multiselect(key="cmp_runs").value == [str(tiny_models["hcl"])]
    at.multiselect(key="cmp_runs").set_value([str(tiny_models["hcl"]), str(tiny_models["info_nce"])]).run()
    at.run()
    assert at.multiselect(key="cmp_runs").value == [str(tiny_models["hcl"]), str(tiny_models["info_nce"])]
    assert at.query_params["runs"] in (f"{tiny_models['hcl'].name},{tiny_models['info_nce'].name}",
                                       [f"{tiny_models['hcl'].name},{tiny_models['info_nce'].name}"])
