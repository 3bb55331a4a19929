"""Streamlit helpers shared by the pages: the job manager, run pickers, cached run loading.

Everything heavy is cached: the job manager is one object for all sessions
(``st.cache_resource``); run lists and snapshots are cached briefly (``st.cache_data``).
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from hcl_core.jobs import JobManager
from hcl_core.registry import LOSSES
from hcl_core.store import Run, list_runs, load_npz, load_run

#: How often the live view refreshes while a job trains. The worker trains in its own process,
#: so a refresh costs the training only the CPU that the rerun and the browser's redraw take
#: (BENCHMARKS.md: the app keeps >= 80 % of the bare loop's speed at 2 s, not at 1 s).
LIVE_REFRESH_S = 2.0
#: The refresh while a started job has not shown its first loss point (seconds at most).
FIRST_POINT_REFRESH_S = 0.5


def models_root() -> Path:
    return Path(os.environ.get("HCL_MODELS_DIR", "models"))


@st.cache_resource(show_spinner=False)
def job_manager() -> JobManager:
    """One job manager per app process: every tab and rerun sees the same jobs."""
    return JobManager(models_root(), max_active=int(os.environ.get("HCL_MAX_JOBS", "2")))


@st.cache_data(ttl=3, show_spinner=False)
def runs_with_warnings(root: str) -> tuple[list[Run], list[str]]:
    return list_runs(root)


def all_runs() -> list[Run]:
    runs, warnings = runs_with_warnings(str(models_root()))
    for w in warnings:
        st.toast(f"Run folder {w}", icon="⚠️")
    return runs


@st.cache_data(max_entries=64, show_spinner=False)
def snapshot(run_path: str, epoch: int, mtime: float) -> dict:
    """A snapshot's arrays (``mtime`` in the key: a rewritten file is read again)."""
    return load_npz(Path(run_path) / "snapshots" / f"epoch_{epoch:04d}.npz")


def load_snapshot(run: Run, epoch: int) -> dict:
    path = run.path / "snapshots" / f"epoch_{epoch:04d}.npz"
    return snapshot(str(run.path), epoch, path.stat().st_mtime)


@st.cache_data(max_entries=16, show_spinner=False)
def eval_inputs(run_path: str) -> dict:
    return load_npz(Path(run_path) / "eval_inputs.npz")


def run_label(run: Run) -> str:
    c = run.config
    parts = [LOSSES[c.loss].short]
    if "beta" in c.loss_params:
        parts.append(f"β={c.beta:g}")
    parts.append(f"τ={c.tau:g}")
    if "tau_plus" in c.loss_params:
        parts.append(f"τ⁺={c.tau_plus:g}")
    parts.append(f"seed {c.seed}")
    name = f" “{c.name}”" if c.name else ""
    state = "" if run.state == "finished" else f" [{run.state}]"
    return f"{' · '.join(parts)} · {c.dataset}{name}{state}"


def pick_run(label: str = "Run", *, key: str, runs: list[Run] | None = None,
             need_snapshots: bool = True) -> Run | None:
    """A select box of runs; remembers the choice in the URL (``?run=<id>``) so links keep it."""
    runs = runs if runs is not None else all_runs()
    if need_snapshots:
        runs = [r for r in runs if r.snapshot_epochs()]
    if not runs:
        st.info("No runs with snapshots yet: start one on the **Train** page, or run "
                "`python -m hcl_core train` in a terminal.")
        return None
    ids = [r.run_id for r in runs]
    wanted = st.query_params.get("run")
    index = ids.index(wanted) if wanted in ids else 0
    chosen = st.selectbox(label, ids, index=index, key=key,
                          format_func=lambda i: run_label(runs[ids.index(i)]),
                          help="Runs found in the models folder, newest first.")
    st.query_params["run"] = chosen
    return runs[ids.index(chosen)]


def reload_run(run: Run) -> Run:
    return load_run(run.path)
