"""Launching a sweep from the Compare page's Sweeps tab, and following it live."""

from __future__ import annotations

import time

import streamlit as st

from hcl_core.config import RunConfig
from hcl_core.registry import LOSSES
from hcl_core.sweep import SweepError, parse_list
from hcl_core.sweep_runner import SweepRunner
from ui import models_root

__all__ = ["render_sweep_launcher", "sweep_runner"]


@st.cache_resource(show_spinner=False)
def sweep_runner() -> SweepRunner:
    """One runner per app process: every tab sees (and can stop) the sweeps started from the app."""
    return SweepRunner(models_root())


def render_sweep_launcher() -> None:
    """A form for losses × β × seeds on digits-sized runs, and the sweeps started from the app."""
    with st.expander("Start a sweep from here", icon=":material/play_circle:"):
        with st.form("sweep_launch"):
            c1, c2 = st.columns(2)
            losses = c1.multiselect("Losses", list(LOSSES), default=["info_nce", "hcl", "supcon", "hard_supcon"],
                                    format_func=lambda n: LOSSES[n].label)
            betas = c2.text_input("β values (losses with a tilt run once per β)", "0,0.5,1,2,4")
            c3, c4, c5, c6 = st.columns(4)
            seeds = c3.text_input("Seeds", "0,1,2")
            epochs = c4.number_input("Epochs", 1, 1000, 30)
            dataset = c5.selectbox("Data set", ["digits", "synthetic"])
            workers = c6.number_input("Parallel runs", 1, 8, 2)
            name = st.text_input("Sweep name (a folder under the models folder)",
                                 time.strftime("sweep-%Y%m%d-%H%M%S"))
            go = st.form_submit_button("Start the sweep", icon=":material/play_arrow:", type="primary")
        if go:
            try:
                launch = sweep_runner().start(
                    RunConfig(dataset=dataset, epochs=int(epochs)), losses=losses,
                    betas=parse_list(betas, "β values", float), seeds=parse_list(seeds, "seeds", int),
                    name=name.strip(), workers=int(workers))
                st.session_state["sweep_view_folder"] = str(launch.folder)
                st.success(f"Started `{launch.name}`; it appears below and refreshes itself.")
            except (ValueError, SweepError) as e:
                st.error(str(e))
    for launch in sweep_runner().launches():
        if launch.active:
            c1, c2 = st.columns([5, 1])
            c1.caption(f"Sweep `{launch.name}` is running: `{launch.shell_command}`")
            c2.button("Stop sweep", icon=":material/stop:", key=f"sweep_stop_{launch.name}",
                      on_click=sweep_runner().stop,
                      args=(launch.name,), help="Stops the runs in flight; the finished ones are kept.")
        elif launch.returncode not in (0, None) and launch.log:
            st.error(f"Sweep `{launch.name}` ended with code {launch.returncode}: {launch.log[-1]}")
