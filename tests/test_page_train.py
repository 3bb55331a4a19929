"""The Train page through Streamlit's AppTest: the widgets configure and start a real training run.

The page's own job manager (``ui.job_manager``, one per process in ``st.cache_resource``) starts
real worker processes on digits; ``run_every`` fragments do not fire by themselves in AppTest
(MEASURED.md), so each test calls ``at.run()`` when it wants the page redrawn.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import streamlit as st
from page_runs import values
from streamlit.testing.v1 import AppTest

import ui
from hcl_core.config import RunConfig
from hcl_core.store import list_runs

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "train.py")
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def models(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HCL_MODELS_DIR", str(tmp_path))
    st.cache_resource.clear()
    st.cache_data.clear()
    yield tmp_path
    ui.job_manager().shutdown()
    st.cache_resource.clear()
    st.cache_data.clear()


def open_page(query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params.update(query or {})
    at.run()
    assert not at.exception, at.exception
    return at


def button(at: AppTest, label: str):
    return next(b for b in at.button if label in b.label)


def labels(at: AppTest, kind: str) -> list[str]:
    return [w.label for w in getattr(at.sidebar, kind)]


def texts(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "info", "warning", "error", "success")
                     for e in getattr(at, kind))


def loss_curve(at: AppTest) -> dict:
    chart = next(c for c in at.get("plotly_chart") if "loss" in json.loads(c.proto.spec)["layout"]["yaxis"]
                 ["title"]["text"].lower())
    return json.loads(chart.proto.spec)


def markup_charts(at: AppTest) -> list[str]:
    """The bodies of the page's markup charts (hcl_core.plots.live and .markup), in page order."""
    return [h.proto.body for h in at.get("html") if "hcl-live-chart" in h.proto.body]


def chart_title(body: str) -> str:
    return re.search(r'data-chart="([^"]*)"', body).group(1)


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_controls_follow_the_loss_and_its_formula(models):
    at = open_page()
    assert at.sidebar.selectbox(key="cfg_loss").value == "hcl"
    assert {"Hardness β", "Temperature τ", "Class prior τ⁺"} <= set(labels(at, "slider"))
    assert r"\beta" in at.latex[0].value and "N_g" in at.latex[0].value
    assert "No runs" not in texts(at) and "Press **Start**" in texts(at)

    at.sidebar.selectbox(key="cfg_loss").set_value("info_nce").run()
    assert "Hardness β" not in labels(at, "slider") and "Class prior τ⁺" not in labels(at, "slider")
    assert any("does not use β or τ⁺" in c.value for c in at.sidebar.caption)
    assert r"\beta" not in at.latex[0].value
    assert at.query_params["loss"] == "info_nce", "the URL must hold the configuration"

    at.sidebar.selectbox(key="cfg_loss").set_value("hard_supcon").run()
    assert "Hardness β" in labels(at, "slider") and "Class prior τ⁺" not in labels(at, "slider")
    assert "y_k" in at.latex[0].value  # negatives are only other-class views


def test_a_link_fills_the_controls_and_reset_restores_the_defaults(models):
    at = open_page({"loss": "supcon", "tau": "0.2", "epochs": "7", "seed": "3"})
    assert at.sidebar.selectbox(key="cfg_loss").value == "supcon"
    assert at.sidebar.slider(key="cfg_tau").value == pytest.approx(0.2)
    assert at.sidebar.number_input(key="cfg_epochs").value == 7
    assert not at.warning
    button(at, "Reset").click().run()
    assert not at.exception, at.exception
    default = RunConfig()
    assert at.sidebar.selectbox(key="cfg_loss").value == default.loss
    assert at.sidebar.number_input(key="cfg_epochs").value == default.epochs
    assert "loss" not in at.query_params


def test_a_link_with_values_between_the_slider_steps_keeps_them_across_reruns(models):
    at = open_page({"batch_size": "100", "lr": "0.002", "seed": "4"})
    at.sidebar.number_input(key="cfg_epochs").set_value(4).run()  # any later rerun
    at.sidebar.selectbox(key="cfg_loss").set_value("supcon").run()
    assert not at.exception, at.exception
    assert at.sidebar.select_slider(key="cfg_batch_size").value == 100
    assert at.sidebar.select_slider(key="cfg_lr").value == pytest.approx(0.002)
    assert at.query_params["batch_size"] == "100" and at.query_params["lr"] == "0.002"


def test_start_trains_in_the_background_then_the_page_shows_the_finished_run(models):
    # The run is tiny through the link (200 training samples); the widgets set the rest.
    at = open_page({"max_train": "200", "eval_size": "100", "threads": "1"})
    at.sidebar.selectbox(key="cfg_loss").set_value("hard_supcon").run()
    at.sidebar.slider(key="cfg_beta").set_value(2.0).run()
    at.sidebar.number_input(key="cfg_epochs").set_value(4).run()
    at.sidebar.number_input(key="cfg_snapshot_every").set_value(2).run()
    assert not at.exception, at.exception

    button(at, "Start").click().run()
    assert not at.exception, at.exception
    # Straight after the click: Start is disabled, Stop enabled, the progress bar is there.
    assert button(at, "Start").disabled and not button(at, "Stop").disabled
    assert at.get("progress"), "a progress bar while the job starts"
    job = ui.job_manager().latest()
    assert job is not None and job.view().config.loss == "hard_supcon"
    assert job.view().config.beta == 2.0 and job.view().config.epochs == 4
    assert job.wait(120), "the tiny run did not finish"
    at.run()
    assert not at.exception, at.exception
    state = job.view()
    assert state.state == "finished", state.message
    assert "Finished in" in texts(at)
    assert not button(at, "Start").disabled and button(at, "Stop").disabled
    # An ended run's charts are markup, as while it trained, until the reader asks for Plotly.
    assert not at.get("plotly_chart") and len(markup_charts(at)) == 3  # loss, probe, geometry (no clamp)
    at.toggle(key="interactive_charts").set_value(True).run()
    assert not at.exception and not markup_charts(at)
    # The loss curve holds every step; the probe chart the evaluations at epochs 0, 2 and 4.
    xs = values(loss_curve(at)["data"][0]["x"])
    assert len(xs) == state.total_steps == 4 * (200 // 200) and xs[-1] == state.total_steps
    metrics = [m.label for m in at.metric]
    assert any("Few-shot probe (epoch 4)" in label for label in metrics), metrics
    assert [e["epoch"] for e in state.evals] == [0, 2, 4]
    runs, _ = list_runs(models)
    assert len(runs) == 1 and runs[0].state == "finished" and runs[0].config.beta == 2.0

    # A new session (a reload, another tab) re-attaches to the same job and shows it.
    other = open_page()
    assert "Finished in" in texts(other)


def test_stop_ends_a_running_job_and_start_is_enabled_again(models):
    at = open_page({"max_train": "200", "eval_size": "100", "threads": "1", "batch_size": "16",
                    "epochs": "1000", "snapshot_every": "1000"})
    button(at, "Start").click().run()
    job = ui.job_manager().latest()
    wait_for(lambda: job.view().evals)  # the epoch-0 evaluation, which follows the first step
    at.run()
    assert not at.exception, at.exception
    assert at.get("progress")[-1].proto.text.startswith("Running: epoch")
    # While it trains, every chart is markup, none a Plotly figure (hcl_core.plots.live and .markup).
    live = [h.proto.body for h in at.get("html") if "hcl-live-chart" in h.proto.body]
    assert [b for b in live if 'data-chart="Training loss"' in b]
    assert [b for b in live if 'data-chart="Probe accuracy' in b]
    assert [b for b in live if 'data-chart="Geometry of the projections' in b]  # the epoch-0 evaluation
    assert [b for b in live if 'data-chart="Anchors where the clamp binds' in b]  # HCL's clamp
    assert not at.get("plotly_chart")

    button(at, "Stop").click().run()
    assert not at.exception, at.exception
    assert job.view().state in ("stopping", "stopped")  # the click does not wait for the worker
    wait_for(lambda: job.view().state == "stopped", timeout=10)  # bounded by 1 s (test_faults measures it)
    at.run()
    assert not button(at, "Start").disabled and button(at, "Stop").disabled
    assert any("stopped by the user" in w.value for w in at.warning)
    # loss, probe, geometry and (HCL) the clamp: markup as while it trained, now with downloads
    assert [chart_title(b) for b in markup_charts(at)] == [chart_title(b) for b in live]
    assert not at.get("plotly_chart") and len(at.get("download_button")) >= 8
    # and interactive on request
    at.toggle(key="interactive_charts").set_value(True).run()
    assert not at.exception, at.exception
    assert loss_curve(at)["data"] and not markup_charts(at)
    assert [c.key for c in at.get("plotly_chart")] == ["loss_curve", "geometry", "probe_curve", "clamp"]
    runs, _ = list_runs(models)
    assert [r.state for r in runs] == ["stopped"]


def test_too_many_runs_are_refused_with_a_message(models, monkeypatch):
    monkeypatch.setenv("HCL_MAX_JOBS", "1")
    st.cache_resource.clear()
    at = open_page({"max_train": "200", "eval_size": "100", "threads": "1", "epochs": "1000"})
    ui.job_manager().start(RunConfig(epochs=1000, max_train=200, eval_size=100, threads=1))
    # This session still shows Start enabled (it rendered before the other start): its click is refused.
    button(at, "Start").click().run()
    assert not at.exception, at.exception
    assert any("already training" in e.value and "limit is 1" in e.value for e in at.error)
    assert len(ui.job_manager().jobs()) == 1


def test_a_data_set_without_its_folder_says_what_to_do(models, tmp_path):
    at = open_page()
    at.sidebar.selectbox(key="cfg_dataset").set_value("mnist").run()
    assert any("data_root" in e.value and "local files" in e.value for e in at.sidebar.error)
    assert button(at, "Start").disabled, "an incomplete configuration cannot start"

    missing = tmp_path / "no-such-folder"
    at.sidebar.text_input(key="cfg_data_root").input(str(missing)).run()
    at.sidebar.selectbox(key="cfg_encoder").set_value("cnn").run()
    assert not at.sidebar.error and not button(at, "Start").disabled
    button(at, "Start").click().run()
    job = ui.job_manager().latest()
    assert job.wait(60)
    at.run()
    assert not at.exception, at.exception
    errors = " ".join(e.value for e in at.error)
    assert "The run failed" in errors and "MNIST" in errors and str(missing) in errors, errors
    assert "download" in errors, "the message says that nothing is downloaded"
    assert not button(at, "Start").disabled
    assert list_runs(models)[0] == [], "a run that could not load its data leaves no run folder"


def _bound_query(loss: str, bound: str) -> dict[str, str]:
    """A link with every numeric field of ``FIELDS`` at its low or high bound (digits, so no folder)."""
    from hcl_core.config import FIELDS

    query = {"loss": loss, "dataset": "digits", "encoder": "mlp", "device": "cpu", "detach_weights": "true"}
    for name, spec in FIELDS.items():
        if spec.type in (int, float) and spec.low is not None and spec.high is not None:
            query[name] = str(getattr(spec, bound))
    return query


@pytest.mark.parametrize("bound", ["low", "high"])
@pytest.mark.parametrize("loss", list(__import__("hcl_core.registry", fromlist=["LOSSES"]).LOSSES))
def test_a_link_with_every_field_at_its_bound_opens_the_page_and_is_used(models, loss, bound):
    query = _bound_query(loss, bound)
    linked = RunConfig.from_query(query)[0]
    at = open_page(query)
    assert not at.warning, [w.value for w in at.warning]  # nothing fell back to a default
    assert not at.sidebar.error, [e.value for e in at.sidebar.error]
    assert RunConfig.from_query(dict(at.query_params))[0] == linked
    assert not button(at, "Start").disabled


def test_a_class_prior_beyond_the_slider_opens_in_a_number_input(models):
    at = open_page({"loss": "hcl", "tau_plus": "0.7"})
    assert not at.exception
    prior = next(w for w in at.sidebar.number_input if "prior" in w.label)
    assert prior.value == pytest.approx(0.7)
    assert RunConfig.from_query(dict(at.query_params))[0].tau_plus == pytest.approx(0.7)


TINY_LINK = {"max_train": "200", "eval_size": "100", "threads": "1", "epochs": "2", "snapshot_every": "1"}


def test_a_link_shows_its_own_configurations_run_and_flags_a_run_that_differs(models):
    from hcl_core.train import train

    train(RunConfig(loss="info_nce", max_train=200, eval_size=100, threads=1, epochs=2, snapshot_every=1),
          root=models)
    # A link to another configuration must not show that run under its own formula.
    at = open_page({**TINY_LINK, "loss": "hcl", "beta": "4"})
    assert "No run of this configuration yet" in texts(at)
    assert not at.get("plotly_chart")
    # The link of the stored run shows it, titled with its configuration.
    at = open_page({**TINY_LINK, "loss": "info_nce"})
    assert any("Run: UCL / SimCLR" in s.value for s in at.subheader)
    assert not at.warning
    # Changing the controls keeps the run on screen but says how it differs.
    at.sidebar.selectbox(key="cfg_loss").set_value("hcl").run()
    assert not at.exception, at.exception
    assert any("differs from the controls" in w.value and "loss (info_nce here, hcl in the controls)" in w.value
               for w in at.warning)


def test_every_running_job_can_be_stopped_from_another_tab(models):
    other = ui.job_manager().start(RunConfig(epochs=1000, max_train=200, eval_size=100, threads=1))
    at = open_page({**TINY_LINK, "loss": "supcon"})  # a tab showing another configuration
    wait_for(lambda: other.view().state == "running")
    at.run()
    assert any("Also training now: 1 run" in e.label for e in at.expander)
    next(b for b in at.button if b.key == f"stop_{other.id}").click().run()
    assert not at.exception, at.exception
    wait_for(lambda: other.view().state == "stopped", timeout=10)


@pytest.mark.slow
def test_compare_trains_the_preset_side_by_side_queued_beyond_the_limit(models, monkeypatch):
    monkeypatch.setenv("HCL_MAX_JOBS", "2")
    st.cache_resource.clear()
    at = open_page({**TINY_LINK, "epochs": "1"})
    assert at.selectbox(key="cmp_preset").value == "SimCLR vs HCL (β 1 and 4) vs H-SCL"  # the classroom's one
    next(b for b in at.button if "Train 4 runs side by side" in b.label).click().run()
    assert not at.exception, at.exception
    from ui.comparison import job_queue

    tickets = job_queue().tickets(at.session_state["comparison"])
    assert [t.config.loss for t in tickets] == ["info_nce", "hcl", "hcl", "hard_supcon"]
    assert [t.config.beta for t in tickets[1:]] == [1.0, 4.0, 1.0]
    most = 0

    def all_done() -> bool:
        nonlocal most
        jobs = ui.job_manager().jobs()
        most = max(most, sum(j.active for j in jobs))
        return all(t.job_id is not None for t in tickets) and not any(j.active for j in jobs)

    wait_for(all_done, timeout=150)
    assert most <= 2
    at.run()
    assert not at.exception, at.exception
    table = next(d.value for d in at.dataframe if "state" in d.value.columns)
    assert list(table["state"].str.startswith("finished")) == [True] * 4
    assert "compare?runs=" in texts(at)


def test_pause_holds_the_shown_run_step_trains_one_more_and_resume_goes_on(models):
    at = open_page({"max_train": "200", "eval_size": "100", "threads": "1", "batch_size": "16",
                    "epochs": "1000", "snapshot_every": "1000"})
    button(at, "Start").click().run()
    job = ui.job_manager().latest()
    wait_for(lambda: job.view().step > 2)
    button(at, "Pause").click().run()
    assert not at.exception, at.exception
    time.sleep(0.5)
    held = job.view().step
    at.run()
    assert job.view().paused and at.get("progress")[-1].proto.text.startswith("Paused:")
    button(at, "Step").click().run()
    wait_for(lambda: job.view().step == held + 1, timeout=30)
    time.sleep(0.5)
    assert job.view().step == held + 1
    button(at, "Resume").click().run()
    wait_for(lambda: job.view().step > held + 3, timeout=30)
    button(at, "Stop").click().run()
    wait_for(lambda: job.view().state == "stopped", timeout=10)


def test_a_data_folder_from_a_link_is_shown_and_used_only_after_a_click(models, tmp_path):
    at = open_page({"dataset": "image_folder", "data_root": str(tmp_path / "imgs")})
    assert any("Read data from it?" in w.value for w in at.sidebar.warning)
    assert at.sidebar.text_input(key="cfg_data_root").value == ""
    assert button(at, "Start").disabled  # no folder is used yet
    button(at, "Use this data folder").click().run()
    assert at.sidebar.text_input(key="cfg_data_root").value == str(tmp_path / "imgs")
    assert not any("Read data from it?" in w.value for w in at.sidebar.warning)


def test_the_glossary_explains_the_words_the_pages_use(models):
    at = open_page()
    shown = texts(at)
    for term in ("τ⁺ (class prior)", "clamp binds", "alignment", "effective negatives", "nats", "backbone"):
        assert term in shown
    assert "not bad news" in shown  # why a rising alignment is fine


def test_a_link_to_a_loss_without_beta_then_hcl_shows_the_default_beta_and_class_prior(models):
    at = open_page({"loss": "info_nce"})
    at.selectbox(key="cfg_loss").set_value("hcl").run()
    assert not at.exception, at.exception
    assert at.session_state["cfg_beta"] == 1.0 and at.session_state["cfg_tau_plus"] == 0.1
    linked = open_page({"loss": "info_nce", "beta": "3"})  # a β the link gives is kept for later
    linked.selectbox(key="cfg_loss").set_value("hcl").run()
    assert linked.session_state["cfg_beta"] == 3.0
