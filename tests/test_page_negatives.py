"""The Negatives page through Streamlit's AppTest, on real tiny runs (see page_runs.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "negatives.py")
pytestmark = pytest.mark.usefixtures("streamlit_caches")


def run_page(run: Path | None = None, *, interactive: bool = True) -> AppTest:
    """The page on ``run``; with Plotly charts (``interactive``) the tests read the figures' specs."""
    at = AppTest.from_file(PAGE, default_timeout=60)
    if run is not None:
        at.query_params["run"] = run.name
    at.session_state["interactive_charts"] = interactive
    at.run()
    assert not at.exception, at.exception
    return at


def numbers(at: AppTest) -> dict[str, dict]:
    """The table under the histograms, by loss label."""
    df = at.dataframe[0].value
    return {row["loss"]: row for row in df.to_dict("records")}


def spec(at: AppTest, index: int) -> dict:
    return json.loads(at.get("plotly_chart")[index].proto.spec)


def panel_titles(chart: dict) -> list[str]:
    return [a["text"] for a in chart["layout"]["annotations"] if a.get("xref") == "paper"]


def test_empty_store_says_how_to_make_a_run(tmp_path, monkeypatch):
    monkeypatch.setenv("HCL_MODELS_DIR", str(tmp_path))
    at = run_page()
    assert "No runs with snapshots yet" in at.info[0].value
    assert not at.get("plotly_chart")


def test_three_views_for_every_loss_each_with_its_formula(tiny_models):
    at = run_page(tiny_models["hard_supcon"])
    assert len(at.get("plotly_chart")) == 2  # the chosen view (small multiples) and the three β panels
    radio = at.radio(key="neg_view")
    assert radio.value == "importance" and list(radio.options) == [
        "Importance weight ω (the papers' hardness)", "Share of the negative term",
        "Gradient ∂L/∂s: pushed away or pulled closer"]
    for view, formula in (("importance", r"\omega_{ik}"), ("share", r"e^{(1+\beta) s_{ik}}"),
                          ("gradient", r"\frac{\partial L}{\partial s_{ik}}")):
        radio.set_value(view).run()
        assert not at.exception
        assert formula in at.get("latex")[0].proto.body
        hist = spec(at, 0)
        for name in ("UCL / SimCLR", "DCL", "HCL", "H-UCL", "SCL / SupCon", "H-SCL"):
            assert any(t.startswith(f"<b>{name}</b>") for t in panel_titles(hist)), (name, view)
    assert "pulled closer" in panel_titles(spec(at, 0))[2]
    table = numbers(at)
    assert len(table) == 6 and all(r["of candidates"] == 198 for r in table.values())
    hscl = table["H-SCL (hard supervised)"]
    assert hscl["same-class share"] == "0.0 %" and hscl["same-class pulled closer"] == "100.0 %"
    assert table["UCL / SimCLR (InfoNCE)"]["true negatives pulled closer"] == "0.0 %"
    sweep = spec(at, 1)
    pulled = [t for t in sweep["data"] if t["name"] == "H-SCL" and t["xaxis"] == "x3"]
    assert len(pulled) == 1 and len(pulled[0]["x"]) == 21 and pulled[0]["x"][-1] == 10
    shown = "\n".join(m.value for m in at.markdown)
    assert "β multiplies s = cos/τ" in shown and "0 by construction" in shown and "pulled closer" in shown


def test_the_charts_are_light_until_interactive_charts_is_on_and_show_the_same_panels(tiny_models):
    at = run_page(tiny_models["hcl"], interactive=False)
    light = [h.proto.body for h in at.get("html") if "hcl-figure" in h.proto.body]
    assert len(light) == 2 and not at.get("plotly_chart")  # the view's small multiples and the β panels
    for name in ("UCL / SimCLR", "DCL", "HCL", "H-UCL", "SCL / SupCon", "H-SCL"):
        assert f"<b>{name}</b>" in light[0]
    assert "Same-class share (false negatives)" in light[1] and "preview β=1" in light[1]
    at.toggle(key="interactive_charts").set_value(True).run()
    assert not at.exception and len(at.get("plotly_chart")) == 2
    assert not [h for h in at.get("html") if "hcl-figure" in h.proto.body]


def test_preview_beta_changes_the_tilted_losses_only_and_detach_stops_the_pull(tiny_models):
    run = tiny_models["hcl"]
    at = run_page(run)
    slider = at.slider(key=f"neg_beta:{run.name}")
    assert slider.value == 1.0  # the run's own β
    at.radio(key="neg_view").set_value("gradient").run()
    before, fig_before = numbers(at), spec(at, 0)
    slider.set_value(6.0).run()
    assert not at.exception
    after, fig_after = numbers(at), spec(at, 0)
    hcl = "HCL (hard negatives)"
    assert after[hcl]["β used"] == "6" and before[hcl]["β used"] == "1"
    assert after[hcl]["effective negatives"] < before[hcl]["effective negatives"]  # weight concentrates
    pulled = float(after[hcl]["true negatives pulled closer"].rstrip(" %"))
    assert pulled > float(before[hcl]["true negatives pulled closer"].rstrip(" %")) >= 0  # 2 epochs: barely any
    assert after["UCL / SimCLR (InfoNCE)"] == before["UCL / SimCLR (InfoNCE)"]  # reads no β
    # the panels of the losses without β are the same figure: same bars, same axes
    for a, b in zip(fig_before["data"], fig_after["data"], strict=False):
        if a["xaxis"] in ("x", "x2", "x5"):  # UCL, DCL, SupCon
            assert a["y"] == b["y"]
    assert fig_before["layout"]["xaxis3"]["range"] == fig_after["layout"]["xaxis3"]["range"]
    assert "preview β=6" in at.subheader[0].value
    assert any(s.get("x0") == 6.0 for s in spec(at, 1)["layout"]["shapes"])  # the marker follows the slider
    at.toggle(key="neg_detach").set_value(True).run()
    assert not at.exception and "detached" in at.subheader[0].value
    detached = numbers(at)
    assert detached[hcl]["detached"] == "yes" and detached[hcl]["true negatives pulled closer"] == "0.0 %"
    assert detached["H-UCL (HCL without debiasing)"]["detached"] == "–"  # H-UCL has no such switch


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


def test_a_prepared_link_opens_the_preview_beta_and_the_view_it_names(tiny_models, streamlit_caches):
    from streamlit.testing.v1 import AppTest

    page = str(Path(__file__).resolve().parents[1] / "pages" / "negatives.py")
    at = AppTest.from_file(page, default_timeout=120)
    at.query_params.update({"run": tiny_models["hcl"].name, "beta": "3.5", "view": "gradient"})
    at.run()
    assert not at.exception, at.exception
    assert at.slider(key=f"neg_beta:{tiny_models['hcl'].name}").value == 3.5
    assert at.radio(key="neg_view").value == "gradient"
    assert at.query_params["beta"] in ("3.5", ["3.5"])
