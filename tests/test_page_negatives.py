"""The Negatives page through Streamlit's AppTest, on real tiny runs (see page_runs.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "negatives.py")
pytestmark = pytest.mark.usefixtures("streamlit_caches")


def run_page(run: Path | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    if run is not None:
        at.query_params["run"] = run.name
    at.run()
    assert not at.exception, at.exception
    return at


def numbers(at: AppTest) -> dict[str, dict]:
    """The table under the histograms, by loss label."""
    df = at.dataframe[0].value
    return {row["loss"]: row for row in df.to_dict("records")}


def spec(at: AppTest, index: int) -> dict:
    return json.loads(at.get("plotly_chart")[index].proto.spec)


def test_empty_store_says_how_to_make_a_run(tmp_path, monkeypatch):
    monkeypatch.setenv("HCL_MODELS_DIR", str(tmp_path))
    at = run_page()
    assert "No runs with snapshots yet" in at.info[0].value
    assert not at.get("plotly_chart")


def test_histograms_and_beta_curves_for_every_loss(tiny_models):
    at = run_page(tiny_models["hard_supcon"])
    charts = at.get("plotly_chart")
    assert len(charts) == 2  # histograms (small multiples) and the two β panels
    hist = spec(at, 0)
    titles = [a["text"] for a in hist["layout"]["annotations"] if a.get("xref") == "paper"]
    for name in ("UCL / SimCLR", "DCL", "HCL", "H-UCL", "SCL / SupCon", "H-SCL"):
        assert any(t.startswith(f"<b>{name}</b>") for t in titles), (name, titles)
    x_titles = {v["title"]["text"] for k, v in hist["layout"].items() if k.startswith("xaxis") and "title" in v}
    assert x_titles == {"weight ÷ uniform 1/n (log scale)"}
    table = numbers(at)
    assert len(table) == 6 and all(r["of candidates"] == 198 for r in table.values())
    # H-SCL never puts weight on same-class views, at the run's β or any other
    assert table["H-SCL (hard supervised)"]["same-class weight mass"] == "0.0 %"
    sweep = spec(at, 1)
    hscl = [t for t in sweep["data"] if t["name"] == "H-SCL" and t["xaxis"] == "x"]
    assert len(hscl) == 1 and max(hscl[0]["y"]) == 0
    assert len(hscl[0]["x"]) == 21 and hscl[0]["x"][-1] == 10
    shown = "\n".join(m.value for m in at.markdown)
    assert "β multiplies s = cos/τ" in shown and "0 by construction" in shown


def test_preview_beta_changes_the_tilted_losses_only(tiny_models):
    run = tiny_models["hcl"]
    at = run_page(run)
    slider = at.slider(key=f"neg_beta:{run.name}")
    assert slider.value == 1.0  # the run's own β
    before = numbers(at)
    slider.set_value(6.0).run()
    assert not at.exception
    after = numbers(at)
    hcl = "HCL (hard negatives)"
    assert after[hcl]["β used"] == "6" and before[hcl]["β used"] == "1"
    assert after[hcl]["effective negatives"] < before[hcl]["effective negatives"]  # weight concentrates
    assert after["UCL / SimCLR (InfoNCE)"] == before["UCL / SimCLR (InfoNCE)"]  # reads no β
    assert after["H-SCL (hard supervised)"]["same-class weight mass"] == "0.0 %"
    assert "preview β=6" in at.subheader[0].value
    sweep = spec(at, 1)
    assert any(s.get("x0") == 6.0 for s in sweep["layout"]["shapes"])  # the marker follows the slider


def test_another_tau_epoch_and_fewer_losses(tiny_models):
    run = tiny_models["info_nce"]
    at = run_page(run)
    before = numbers(at)["UCL / SimCLR (InfoNCE)"]["effective negatives"]
    at.toggle(key="neg_other_tau").set_value(True).run()
    at.slider(key=f"neg_tau:{run.name}").set_value(0.1).run()
    assert not at.exception
    assert "τ=0.1" in at.subheader[0].value
    assert numbers(at)["UCL / SimCLR (InfoNCE)"]["effective negatives"] < before  # colder: fewer negatives count
    at.select_slider(key=f"neg_epoch:{run.name}").set_value(0).run()
    assert not at.exception and "epoch 0" in at.subheader[0].value
    at.multiselect(key="neg_losses").set_value(["hcl", "hard_supcon"]).run()
    assert set(numbers(at)) == {"HCL (hard negatives)", "H-SCL (hard supervised)"}
    at.multiselect(key="neg_losses").set_value([]).run()
    assert not at.exception and "Pick at least one loss" in at.info[0].value
