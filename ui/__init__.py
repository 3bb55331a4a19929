"""Streamlit helpers shared by the pages: the job manager, run pickers, cached run files.

Everything heavy is cached: the job manager is one object for all sessions
(``st.cache_resource``); run lists, snapshots, evaluation inputs and event-log histories are
cached by the file's stamp (``st.cache_data``), so a rewritten or growing file is read again.
Pages never name a run file: they ask :class:`hcl_core.store.Run` and the helpers here.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import streamlit as st

from hcl_core import store
from hcl_core.config import RunConfig
from hcl_core.jobs import JobManager
from hcl_core.snapshots import lay_out_ahead
from hcl_core.store import Run, RunHistory, list_runs, load_run
from ui.projections import projection_service

__all__ = [
    "FIRST_POINT_REFRESH_S",
    "LIVE_REFRESH_S",
    "all_runs",
    "config_label",
    "eval_inputs",
    "job_manager",
    "load_eval_inputs",
    "load_snapshot",
    "models_root",
    "pick_run",
    "reload_run",
    "run_history",
    "run_label",
    "run_labels",
    "runs_with_warnings",
    "snapshot",
]

#: How often the live view refreshes while a job trains. The worker trains in its own process,
#: so a refresh costs the training only the CPU that the rerun and the browser's redraw take
#: (BENCHMARKS.md: the app keeps >= 80 % of the bare loop's speed at 2 s, not at 1 s).
LIVE_REFRESH_S = 2.0
#: The refresh while a started job has not shown its first loss point, and while it stops: a few
#: cheap reruns of the live view (it draws no chart yet), so the point shows 0.1 s after it exists
#: on average.
FIRST_POINT_REFRESH_S = 0.2


def models_root() -> Path:
    return Path(os.environ.get("HCL_MODELS_DIR", "models"))


# ------------------------------------------------------------------------------------------
# jobs: one manager for every tab
# ------------------------------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def job_manager() -> JobManager:
    """One job manager per app process: every tab and rerun sees the same jobs. A run that ends is
    laid out by UMAP in the background, so the Embeddings page shows its UMAP at once."""
    service = projection_service()
    return JobManager(models_root(), max_active=int(os.environ.get("HCL_MAX_JOBS", "2")),
                      after_runs=lambda run_dirs: [lay_out_ahead(service, d) for d in run_dirs])


def config_label(c: RunConfig) -> str:
    """``HCL · β=1 · τ=0.5 · τ⁺=0.1 · seed 0``: the settings that tell runs of one data set apart."""
    return c.label()


# ------------------------------------------------------------------------------------------
# runs and their files, cached by file stamps
# ------------------------------------------------------------------------------------------


@st.cache_data(ttl=3, show_spinner=False)
def runs_with_warnings(root: str) -> tuple[list[Run], list[str]]:
    return list_runs(root)


def all_runs() -> list[Run]:
    runs, warnings = runs_with_warnings(str(models_root()))
    for w in warnings:
        st.toast(f"Run folder {w}", icon="⚠️")
    return runs


@st.cache_data(max_entries=64, show_spinner=False)
def snapshot(run_path: str, epoch: int, stamp: tuple) -> dict:
    """A snapshot's arrays (``stamp``, from :meth:`Run.snapshot_stamp`, in the key: a rewritten
    file is read again). :class:`~hcl_core.store.RunFileError` if it cannot be read."""
    return store.load_snapshot(run_path, epoch)


def load_snapshot(run: Run, epoch: int) -> dict:
    return snapshot(str(run.path), epoch, run.snapshot_stamp(epoch))


@st.cache_data(max_entries=16, show_spinner=False)
def eval_inputs(run_path: str, stamp: tuple) -> dict:
    """The evaluation subset's arrays (inputs, labels, indices, class_names when saved)."""
    return store.load_eval_inputs(run_path)


def load_eval_inputs(run: Run) -> dict:
    return eval_inputs(str(run.path), run.eval_inputs_stamp())


@st.cache_data(max_entries=64, show_spinner=False)
def _history(run_path: str, stamp: tuple) -> RunHistory:
    return store.read_history(run_path)


def run_history(run: Run) -> RunHistory:
    """The run's event log folded and thinned (:class:`~hcl_core.store.RunHistory`), cached while
    the log is unchanged; a copy, so the caller may keep it."""
    return _history(str(run.path), run.metrics_stamp())


def run_label(run: Run) -> str:
    """The configuration, data set, name, state and start time: twins of one configuration (the demo
    and your own, or a sweep's seeds) differ at least in when they started."""
    c = run.config
    name = f" “{c.name}”" if c.name else ""
    state = "" if run.state == "finished" else f" [{run.state}]"
    started = run.status.get("started")
    when = time.strftime(" · %d %b %H:%M:%S", time.localtime(started)) if isinstance(started, int | float) else ""
    return f"{config_label(c)} · {c.dataset}{name}{when}{state}"


def run_labels(runs: list[Run]) -> dict[str, str]:
    """``{run id: label}``, every label distinct (``#2`` … where two runs still read alike)."""
    labels = {r.run_id: run_label(r) for r in runs}
    seen: dict[str, int] = {}
    for run_id, label in labels.items():
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            labels[run_id] = f"{label} #{seen[label]}"
    return labels


def pick_run(label: str = "Run", *, key: str, runs: list[Run] | None = None,
             need_snapshots: bool = True) -> Run | None:
    """A select box of runs; remembers the choice in the URL (``?run=<id>``) so links keep it.

    Runs whose snapshots cannot be read are left out with a note, never a crash.
    """
    runs = runs if runs is not None else all_runs()
    if need_snapshots:
        with_snapshots, unreadable = [], []
        for r in runs:
            if r.snapshot_epochs():
                with_snapshots.append(r)
            elif r.warnings:
                unreadable.append(f"{r.run_id}: {r.warnings[-1]}")
        runs = with_snapshots
        if unreadable:
            st.caption("Left out: " + "; ".join(unreadable[:5]) + (" …" if len(unreadable) > 5 else ""))
    if not runs:
        st.info("No runs with snapshots yet: start one on the **Train** page, or run "
                "`python -m hcl_core train` in a terminal.")
        return None
    ids = [r.run_id for r in runs]
    labels = run_labels(runs)
    wanted = st.query_params.get("run")
    current = st.session_state.get(key)
    if wanted in ids and current not in ids:
        st.session_state[key] = wanted  # a link's run, by id (labels of twins may read alike)
    elif current is not None and current not in ids:
        del st.session_state[key]  # a run that has gone
    index = ids.index(wanted) if wanted in ids else 0
    chosen = st.selectbox(label, ids, index=None if key in st.session_state else index, key=key,
                          format_func=labels.__getitem__,
                          help="Runs found in the models folder, newest first; each is told apart by its start "
                               "time.")
    st.query_params["run"] = chosen
    return runs[ids.index(chosen)]


def reload_run(run: Run) -> Run:
    return load_run(run.path)
