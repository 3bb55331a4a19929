"""The Train page's one-click comparison: a preset of (loss, β) rows, queued runs, live overlaid curves."""

from __future__ import annotations

import uuid

import pandas as pd
import streamlit as st

from hcl_core.comparisons import PRESETS, comparison_configs
from hcl_core.config import RunConfig
from hcl_core.job_queue import JobQueue, Ticket
from hcl_core.plots.compare import legend_labels, run_colors
from hcl_core.plots.markup import figure_html
from hcl_core.plots.training import Series, loss_figure, metric_figure
from hcl_core.registry import LOSSES
from ui import LIVE_REFRESH_S, job_manager
from ui.figures import chart
from ui.navigation import link_to

__all__ = ["comparison_form", "comparison_view", "job_queue", "live_comparison"]

_LOSS_BY_LABEL = {spec.label: name for name, spec in LOSSES.items()}


@st.cache_resource(show_spinner=False)
def job_queue() -> JobQueue:
    """One queue per app process, in front of the shared job manager."""
    return JobQueue(job_manager())


def _rows_frame(preset: str, base: RunConfig) -> pd.DataFrame:
    beta = base.given("beta")  # the controls' β, also when the base loss reads none
    rows = [(LOSSES[loss].label, beta if b is None else b) for loss, b in PRESETS[preset].rows]
    return pd.DataFrame(rows, columns=["loss", "β"])


def comparison_form(base: RunConfig | None) -> None:
    """Preset, editable rows, and the button that queues the runs (same data, encoder and seed as ``base``)."""
    if base is None:
        st.caption("Fix the configuration on the left first: the comparison trains with its data, encoder and seed.")
        return
    preset = st.selectbox("Preset", list(PRESETS), key="cmp_preset", help="Fills the rows below; edit them freely.")
    st.caption(PRESETS[preset].description + f" Data {base.dataset}, encoder {base.encoder}, seed {base.seed}, "
               f"{base.epochs} epochs, τ = {base.tau:g} for every run. β is ignored by losses without a tilt.")
    edited = st.data_editor(
        _rows_frame(preset, base), key=f"cmp_rows_{preset}", num_rows="dynamic", hide_index=True,
        column_config={
            "loss": st.column_config.SelectboxColumn("loss", options=list(_LOSS_BY_LABEL), required=True),
            "β": st.column_config.NumberColumn("β", min_value=0.0, max_value=20.0, step=0.5, required=True),
        })
    rows = [(_LOSS_BY_LABEL[r["loss"]], float(r["β"])) for r in edited.to_dict("records")
            if r.get("loss") in _LOSS_BY_LABEL and pd.notna(r.get("β"))]
    try:
        configs = comparison_configs(base, rows)
    except ValueError as e:
        st.error(str(e))
        return
    limit = job_manager().max_active
    if st.button(f"Train {len(configs)} runs side by side", icon=":material/play_arrow:", type="primary",
                 disabled=not configs,
                 help=f"Up to {limit} train at once (HCL_MAX_JOBS); the others wait their turn and start by "
                      "themselves."):
        group = uuid.uuid4().hex[:8]
        job_queue().submit(configs, group=group)
        st.session_state["comparison"] = group


def _status(t: Ticket) -> str:
    if t.error:
        return f"could not start: {t.error}"
    if t.cancelled:
        return "cancelled"
    if t.job_id is None:
        return "queued"
    job = job_manager().get(t.job_id)
    s = job.view() if job else None
    if s is None:
        return "unknown"
    if s.active:
        return f"training: epoch {s.epoch}/{s.config.epochs}"
    knn = s.evals[-1].get("knn_acc") if s.evals else None
    return s.state + (f" (kNN {knn:.3f})" if knn is not None else "")


def comparison_view(group: str) -> None:
    """Live state of a comparison: who is queued or training, overlaid loss and kNN curves."""
    tickets = job_queue().tickets(group)
    if not tickets:
        return
    configs = [t.config for t in tickets]
    labels = legend_labels(configs)
    colors = run_colors([c.loss for c in configs])
    states = [job_manager().get(t.job_id).view() if t.job_id is not None and job_manager().get(t.job_id)
              else None for t in tickets]
    st.dataframe(pd.DataFrame({"run": labels, "state": [_status(t) for t in tickets]}), hide_index=True)
    losses = [Series(lab, [p[0] for p in s.steps], [p[1] for p in s.steps], col)
              for lab, s, col in zip(labels, states, colors, strict=True) if s is not None and s.steps]
    knn = [Series(lab, [e["epoch"] for e in s.evals if "knn_acc" in e], [e["knn_acc"] for e in s.evals
                                                                          if "knn_acc" in e], col)
           for lab, s, col in zip(labels, states, colors, strict=True) if s is not None and s.evals]
    done = all(s is not None and not s.active for s in states)
    left, right = st.columns(2)
    for col, fig, key in ((left, loss_figure(losses), "loss"), (right, metric_figure(knn, "knn_acc"), "knn")):
        with col:  # redrawn at every refresh while the runs train: markup, as the Train page's live charts
            chart(fig, key=f"cmp_{key}_{group}", markup=None if done else figure_html(fig), downloads=False)
    run_ids = [s.run_dir.rsplit("/", 1)[-1] for s in states if s is not None and s.run_dir]
    if done and run_ids:
        link_to("pages/compare.py", "Open these runs side by side in Compare", icon=":material/compare_arrows:",
                query_params={"runs": ",".join(run_ids)})  # Compare reads ?runs=
    elif any(t.waiting for t in tickets) and st.button("Cancel the runs that have not started",
                                                       key=f"cmp_cancel_{group}"):
        job_queue().cancel(group)
    if not done:
        st.caption(f"Refreshes every {LIVE_REFRESH_S:g} s while the comparison trains.")


def _running(group: str) -> bool:
    for t in job_queue().tickets(group):
        if t.waiting:
            return True
        job = job_manager().get(t.job_id) if t.job_id is not None else None
        if job is not None and job.active:
            return True
    return False


def _live(group: str) -> None:
    comparison_view(group)
    if _running(group) != st.session_state.get("cmp_running"):  # ended: redraw once, stop refreshing
        st.rerun(scope="app")


def live_comparison(group: str) -> None:
    """The view as a fragment that refreshes itself while any of its runs is queued or training."""
    running = st.session_state["cmp_running"] = _running(group)
    st.fragment(run_every=LIVE_REFRESH_S if running else None)(_live)(group)
