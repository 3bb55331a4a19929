"""Negatives: how much weight each loss puts on each negative, and how hardness β moves it.

Everything is computed on a snapshot's fixed batch: ``z1, z2`` ``(256, d)`` projected views and
``z_labels`` ``(256,)``, i.e. 512 anchors with n = 510 candidate negatives each. Nothing is
trained here: the preview β and τ re-weight the same embeddings (each loss/β/τ is cached).
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from hcl_core.plots.negatives import (
    BETA_GRID,
    WeightStats,
    beta_sweep,
    beta_sweep_figure,
    short_label,
    uses_beta,
    weight_histogram_figure,
    weight_stats,
)
from hcl_core.registry import LOSSES
from hcl_core.store import Run, RunFileError
from ui import pick_run, snapshot
from ui.navigation import through_app

through_app()  # first: a deep link to a fresh server must run through app.py

ALL_LOSSES = list(LOSSES)
CHART_CONFIG = {"displaylogo": False}


def _batch(run_path: str, epoch: int, mtime: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    snap = snapshot(run_path, epoch, mtime)
    return snap["z1"], snap["z2"], snap["z_labels"]


@st.cache_data(max_entries=512, show_spinner=False)
def stats_for(run_path: str, epoch: int, mtime: float, loss: str, beta: float, tau: float) -> WeightStats:
    """One loss's binned weights at (β, τ) on the snapshot's batch (~20 ms, then cached). Call it with
    β = 0 for a loss that reads no β, so moving the slider does not recompute it."""
    return weight_stats(*_batch(run_path, epoch, mtime), loss=loss, tau=tau, beta=beta)


@st.cache_data(max_entries=128, show_spinner=False)
def sweep_for(run_path: str, epoch: int, mtime: float, loss: str, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """Same-class mass and effective negatives over :data:`BETA_GRID` for one loss (~0.5 s, then cached)."""
    return beta_sweep(*_batch(run_path, epoch, mtime), loss=loss, tau=tau)


def snapshot_mtime(run: Run, epoch: int) -> tuple:
    return run.snapshot_stamp(epoch)


def controls(run: Run) -> tuple[int, list[str], float, float]:
    """Epoch, losses, preview β and τ; kept per run in session state."""
    c, epochs = run.config, run.snapshot_epochs()
    epoch_key, beta_key = f"neg_epoch:{run.run_id}", f"neg_beta:{run.run_id}"
    if st.session_state.get(epoch_key) not in epochs:
        st.session_state[epoch_key] = epochs[-1]
    if beta_key not in st.session_state:
        st.session_state[beta_key] = float(min(c.beta, 10.0)) if uses_beta(c.loss) else 1.0
    losses = st.multiselect("Losses", ALL_LOSSES, default=ALL_LOSSES, key="neg_losses",
                            format_func=lambda name: LOSSES[name].label)
    left, mid, right = st.columns([3, 3, 2], gap="large")
    if len(epochs) > 1:
        epoch = left.select_slider("Snapshot (epoch)", epochs, key=epoch_key,
                                   help="Epoch 0 is the randomly initialised encoder.")
    else:
        epoch = epochs[0]
        left.caption(f"Only one snapshot: epoch {epoch}.")
    beta = mid.slider("Preview β (no training needed)", 0.0, 10.0, step=0.1, key=beta_key,
                       help="The hardness of HCL, H-UCL and H-SCL for the histograms below. β multiplies "
                            "s = cos/τ, so the weight of a negative is ∝ exp(β·cos/τ).")
    other_tau = right.toggle("Another τ", key="neg_other_tau",
                             help="Preview a temperature other than the run's τ.")
    tau = c.tau
    if other_tau:
        tau = right.slider("Preview τ", 0.05, 2.0, value=float(c.tau), step=0.05, key=f"neg_tau:{run.run_id}")
    else:
        right.caption(f"Using the run's τ = {c.tau:g}.")
    return epoch, losses, beta, tau


def numbers_table(stats: list[WeightStats]) -> list[dict]:
    return [{"loss": LOSSES[s.loss].label, "β used": f"{s.beta:g}" if uses_beta(s.loss) else "no β",
             "same-class weight mass": f"{100 * s.same_mass:.1f} %",
             "effective negatives": round(s.n_eff, 1), "of candidates": s.n_candidates} for s in stats]


EXPLANATION = """
**How to read the histograms.** Each of the {anchors} anchor views spreads its negative term over
n = {n} candidate views (every view but itself and its partner). A weight of **1** on the x axis is
the uniform share 1/n; 10 means ten times that. Blue: candidates of another class (true negatives).
Orange: candidates that share the anchor's class ("false negatives": they are not negatives at all).
The **same-class weight mass** is the share of the weight that lands on orange; the **effective
number of negatives** (Σw)²/Σw² is n for uniform weights and 1 when one negative takes everything.

**Why H-SCL removes the false-negative mass that HCL tilts towards.** HCL re-weights each negative
by exp(β·s) with s = cos/τ — **β multiplies s = cos/τ, not the cosine** (as in the published
code), so β = 1 at τ = 0.5 is a tilt of exp(2·cos). A larger β favours the negatives most similar
to the anchor. Once an encoder has learned anything, the most similar views are disproportionately
views of the *same class*, so HCL's tilt moves weight onto exactly the false negatives, and its
same-class mass grows with β (its τ⁺ debiasing subtracts an average positive term but does not
change these shares). H-SCL uses the labels: it draws negatives only from *other* classes, so its
same-class mass is **0 by construction**, at every β, and its tilt can only concentrate weight on
genuinely hard negatives of other classes. (SupCon keeps same-class views in its denominator, so
they still take part of its weight, but it pulls them closer in its numerator.)
"""


# ------------------------------------------------------------------------------------------
# the page
# ------------------------------------------------------------------------------------------

st.title("Negatives")
st.caption("Where each loss puts its weight among the negatives, and what hardness β does to it. Nothing is "
           "trained here: the preview re-weights the embeddings a run saved at a snapshot.")
run = pick_run(key="neg_run")
if run is None:
    st.stop()
epoch, losses, beta, tau = controls(run)
if not losses:
    st.info("Pick at least one loss above.")
    st.stop()
try:
    mtime = snapshot_mtime(run, epoch)
    z1, z2, z_labels = _batch(str(run.path), epoch, mtime)
except (OSError, RunFileError, KeyError) as e:
    st.error(f"The snapshot of epoch {epoch} cannot be read ({e}). Pick another epoch or run.")
    st.stop()

try:
    stats = [stats_for(str(run.path), epoch, mtime, loss, beta if uses_beta(loss) else 0.0, tau) for loss in losses]
except ValueError as e:  # e.g. a batch whose labels do not fit its views
    st.error(f"The weights cannot be computed on this snapshot: {e}")
    st.stop()
st.subheader(f"Weights on negatives · epoch {epoch} · preview β={beta:g} · τ={tau:g}")
st.plotly_chart(weight_histogram_figure(stats), key="neg_hist", config=CHART_CONFIG)
st.dataframe(numbers_table(stats), hide_index=True, key="neg_numbers")
fixed = [short_label(s.loss) for s in stats if not uses_beta(s.loss)]
if fixed:
    st.caption(f"{', '.join(fixed)} read no β: the preview β does not change them.")

st.subheader("As a function of β")
with st.spinner("Computing the β curves on this snapshot…"):
    sweeps = {loss: sweep_for(str(run.path), epoch, mtime, loss, tau) for loss in losses}
st.plotly_chart(beta_sweep_figure(BETA_GRID, {k: v[0] for k, v in sweeps.items()},
                                  {k: v[1] for k, v in sweeps.items()}, preview_beta=beta,
                                  same_share=stats[0].same_share, n_candidates=stats[0].n_candidates),
                key="neg_sweep", config=CHART_CONFIG)
st.caption(f"Computed on this snapshot for β = 0 to 10 in steps of {BETA_GRID[1]:g}; dashed: losses without β. "
           f"Dotted: what uniform weights would give. HCL and H-UCL put identical weights on negatives (they differ "
           "only in τ⁺ debiasing, which leaves the shares alone), as do InfoNCE, DCL and SupCon: their lines "
           f"overlap. Run: {run.config.short_name()}, trained with "
           + (f"β={run.config.beta:g}." if uses_beta(run.config.loss) else "no β."))
st.markdown(EXPLANATION.format(anchors=2 * len(z1), n=stats[0].n_candidates))
