"""The sweep section of the Compare page: pick a sweep folder, read its table and beta curves.

A sweep is a folder under the models root holding ``sweep.json`` and its run folders, as
``python -m hcl_core sweep`` writes it (:mod:`hcl_core.sweep`). The Compare page calls
:func:`render_sweep_section` once; every widget key starts with ``sweep_view_``.
"""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from hcl_core.plots.sweep import beta_curve_figure
from hcl_core.plots.training import METRIC_LABELS
from hcl_core.sweep import (
    SUMMARY_METRICS,
    SweepError,
    display_rows,
    find_sweeps,
    load_sweep,
    read_manifest,
    summary_csv,
)
from ui import models_root
from ui.figures import chart
from ui.sweep_launch import render_sweep_launcher, sweep_runner

_EXAMPLE = ("python -m hcl_core sweep --dataset digits --losses info_nce,dcl,hcl,supcon,hard_supcon "
            "--betas 0,0.5,1,2,4 --seeds 0,1,2 --epochs 30")


@st.cache_data(ttl=2, max_entries=8, show_spinner=False)
def _load(path: str) -> tuple[list[dict], int, dict]:
    """``(summary rows, number of run folders, manifest)`` of one sweep folder (re-read every 2 s)."""
    runs, rows = load_sweep(path)
    return rows, len(runs), read_manifest(path)


def _label(path: Path, manifest: dict) -> str:
    total = manifest.get("total", "?")
    state = manifest.get("state", "")
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(manifest["created"])) if "created" in manifest else ""
    return f"{path.name} · {total} runs · {state} {when}".strip()


def render_sweep_section(root: str | Path | None = None) -> None:
    """Start a sweep; pick one under ``root`` (default: the models root), show its summary, β curves and CSV.

    While the chosen sweep runs, the section refreshes itself every 2 s.
    """
    st.subheader("Sweeps: accuracy against hardness")
    render_sweep_launcher()
    running = any(launch.active for launch in sweep_runner().launches())
    st.session_state["sweep_view_running"] = running
    st.fragment(run_every=2.0 if running else None)(_sweep_body)(root)


def _sweep_body(root: str | Path | None) -> None:
    if any(launch.active for launch in sweep_runner().launches()) != st.session_state.get("sweep_view_running"):
        st.rerun(scope="app")  # a sweep started or ended: redraw with the right refresh
    sweeps = find_sweeps(root if root is not None else models_root())
    if not sweeps:
        st.info("No sweeps yet. A sweep trains a grid of losses × β × seeds and lands here: start one above, "
                f"or in a terminal (a few minutes on digits):\n\n`{_EXAMPLE}`")
        return
    manifests = {str(p): read_manifest(p) for p in sweeps}
    chosen = st.selectbox("Sweep", [str(p) for p in sweeps], key="sweep_view_folder",
                          format_func=lambda p: _label(Path(p), manifests[p]),
                          help="Folders holding a sweep.json under the models folder, newest first.")
    try:
        rows, n_runs, manifest = _load(chosen)
    except (SweepError, OSError) as e:
        st.error(f"This sweep could not be read: {e}")
        return
    if manifest.get("state") == "running":
        back, total = len(manifest.get("runs", [])), manifest.get("total", 0)
        st.progress(back / total if total else 0.0, text=f"Still running: {back} of {total or '?'} runs are back "
                                                         "(refreshes by itself).")
    if not any(r["n"] for r in rows):
        st.warning(f"{n_runs} run folders, but none has finished yet: nothing to summarise.")
        return
    metric = st.radio("Metric", SUMMARY_METRICS, key="sweep_view_metric", horizontal=True,
                      format_func=lambda m: METRIC_LABELS.get(m, m))
    fig = beta_curve_figure(rows, metric)
    image_name = f"{Path(chosen).name}-{metric}"
    chart(fig, key="sweep_view_curve", name=image_name)
    st.caption("Each point is the mean over seeds; error bars and bands are ± one standard deviation over "
               "seeds. Losses without β (dashed lines) are the same at every β: read the curves against them. "
               "β multiplies cos/τ, as in the published code.")
    st.dataframe(display_rows(rows), hide_index=True, key="sweep_view_table")
    left, right = st.columns([1, 3])
    left.download_button("Download summary (CSV)", summary_csv(rows), file_name=f"{Path(chosen).name}-summary.csv",
                         mime="text/csv", key="sweep_view_csv")
    if manifest.get("command"):
        right.caption("Reproduce this sweep:")
        right.code(manifest["command"], language="bash")
