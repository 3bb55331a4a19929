"""Negatives: what each loss does with each negative, in three views, and how hardness β moves it.

Everything is computed on a snapshot's fixed batch: ``z1, z2`` ``(256, d)`` projected views and
``z_labels`` ``(256,)``, i.e. 512 anchors with n = 510 candidate negatives each. Nothing is
trained here: the preview β, τ and the detach switch re-weight the same embeddings (each
combination is cached). The numbers come from :mod:`hcl_core.analysis.negatives`.
"""

from __future__ import annotations

import math

import numpy as np
import streamlit as st

from hcl_core.analysis.negatives import (
    BETA_GRID,
    BETA_MAX,
    VIEWS,
    NegativeStats,
    SweepCurves,
    beta_sweep,
    negative_stats,
)
from hcl_core.config import RunConfig
from hcl_core.plots.markup import figure_html
from hcl_core.plots.negatives import VIEW_AXIS, VIEW_TITLE, beta_sweep_figure, negatives_figure, short_label, uses_beta
from hcl_core.registry import LOSSES
from hcl_core.store import Run, RunFileError
from ui import pick_run, snapshot
from ui.figures import chart, interactive_charts
from ui.glossary import glossary
from ui.navigation import through_app

through_app()  # first: a deep link to a fresh server must run through app.py

ALL_LOSSES = list(LOSSES)

#: Each view's formula (KaTeX), shown above its figure.
VIEW_FORMULA = {
    "importance": r"\omega_{ik} = \frac{e^{\beta s_{ik}}}{\tfrac{1}{n_i}\sum_{k'} e^{\beta s_{ik'}}}"
                  r"\quad\text{(mean 1 over the loss's negatives; } \omega \equiv 1 \text{ without a tilt)}",
    "share": r"\mathrm{share}_{ik} = \frac{\omega_{ik}\, e^{s_{ik}}}{\sum_{k'} \omega_{ik'}\, e^{s_{ik'}}}"
             r" = \frac{e^{(1+\beta) s_{ik}}}{\sum_{k'} e^{(1+\beta) s_{ik'}}}",
    "gradient": r"\frac{\partial L}{\partial s_{ik}} \;\propto\; (1+\beta)\,\mathrm{share}_{ik}"
                r" - \beta\,\frac{\omega_{ik}}{n_i}\quad\text{(HCL, H-UCL, H-SCL; with detached weights: }"
                r"\mathrm{share}_{ik}\text{)}",
}
VIEW_HELP = {
    "importance": "The hardness weight of the papers: how much more than an average negative the tilt counts "
                  "each one. Uniform (all at 1) at β = 0 and for every loss without β.",
    "share": "The fraction of the anchor's negative term that each negative carries: the weight ω times its "
             "own e^s. Not the same as ω: even at β = 0 the similar negatives carry more.",
    "gradient": "Where the gradient actually goes, the direction training moves each pair. With the published "
                "(not detached) gradient, the tilt's own derivative subtracts β·ω/n: every negative whose share "
                "is below β/(1+β)·ω/n is pulled *closer*. Same-class views that a supervised loss takes as "
                "positives are pulled on purpose.",
}


def _batch(run_path: str, epoch: int, mtime: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    snap = snapshot(run_path, epoch, mtime)
    return snap["z1"], snap["z2"], snap["z_labels"]


@st.cache_data(max_entries=512, show_spinner=False)
def stats_for(run_path: str, epoch: int, mtime: float, loss: str, beta: float, tau: float, tau_plus: float,
              detach: bool) -> NegativeStats:
    """One loss's three binned views at (β, τ, τ⁺, detach) on the snapshot's batch (cached). Call it
    with β = 0 and detach False for a loss that reads neither, so the controls do not recompute it."""
    return negative_stats(*_batch(run_path, epoch, mtime), loss=loss, tau=tau, beta=beta, tau_plus=tau_plus,
                          detach=detach)


@st.cache_data(max_entries=128, show_spinner=False)
def sweep_for(run_path: str, epoch: int, mtime: float, loss: str, tau: float, tau_plus: float,
              detach: bool) -> SweepCurves:
    """Same-class share, effective negatives and the fraction pulled over :data:`BETA_GRID` (cached)."""
    return beta_sweep(*_batch(run_path, epoch, mtime), loss=loss, tau=tau, tau_plus=tau_plus, detach=detach)


def snapshot_mtime(run: Run, epoch: int) -> tuple:
    return run.snapshot_stamp(epoch)


def controls(run: Run) -> tuple[int, list[str], float, float, bool]:
    """Epoch, losses, preview β, τ and the detach switch; kept per run in session state."""
    c, epochs = run.config, run.snapshot_epochs()
    epoch_key, beta_key = f"neg_epoch:{run.run_id}", f"neg_beta:{run.run_id}"
    if st.session_state.get(epoch_key) not in epochs:
        st.session_state[epoch_key] = epochs[-1]
    if beta_key not in st.session_state:
        linked = st.query_params.get("beta")  # a prepared link's preview β
        try:
            st.session_state[beta_key] = min(max(round(float(linked), 1), 0.0), BETA_MAX)
        except (TypeError, ValueError):
            st.session_state[beta_key] = float(min(c.beta, BETA_MAX)) if uses_beta(c.loss) else 1.0
    if "neg_view" not in st.session_state and st.query_params.get("view") in VIEWS:
        st.session_state["neg_view"] = st.query_params["view"]
    losses = st.multiselect("Losses", ALL_LOSSES, default=ALL_LOSSES, key="neg_losses",
                            format_func=lambda name: LOSSES[name].label)
    left, mid, right = st.columns([3, 3, 2], gap="large")
    if len(epochs) > 1:
        epoch = left.select_slider("Snapshot (epoch)", epochs, key=epoch_key,
                                   help="Epoch 0 is the randomly initialised encoder.")
    else:
        epoch = epochs[0]
        left.caption(f"Only one snapshot: epoch {epoch}.")
    beta = mid.slider("Preview β (no training needed)", 0.0, BETA_MAX, step=0.1, key=beta_key,
                      help="The hardness of HCL, H-UCL and H-SCL. β multiplies s = cos/τ: the importance weight "
                           "of a negative is ∝ exp(β·cos/τ).")
    detach = mid.toggle("Detach the weights", key="neg_detach", value=bool(c.detach_weights),
                        help="HCL and H-SCL only: treat the tilt's weights as constants in the backward pass "
                             "(detach_weights). The published code does not: its gradient also flows through "
                             "the weights, which is what pulls negatives closer.")
    other_tau = right.toggle("Another τ", key="neg_other_tau", help="Preview a temperature other than the run's τ.")
    tau = c.tau
    if other_tau:
        tau = right.slider("Preview τ", 0.05, 2.0, value=float(c.tau), step=0.05, key=f"neg_tau:{run.run_id}")
    else:
        right.caption(f"Using the run's τ = {c.tau:g}.")
    return epoch, losses, beta, tau, detach


def prior_of(run: Run) -> float:
    """τ⁺ for DCL/HCL's gradient: the run's own if its loss reads it, else the default."""
    return run.config.tau_plus if LOSSES[run.config.loss].reads("tau_plus") else RunConfig().tau_plus


def numbers_table(stats: list[NegativeStats]) -> list[dict]:
    def pct(x: float) -> str:
        return "–" if not math.isfinite(x) else f"{100 * x:.1f} %"

    return [{"loss": LOSSES[s.loss].label,
             "β used": f"{s.beta:g}" if uses_beta(s.loss) else "no β",
             "detached": "yes" if s.detach else ("no" if LOSSES[s.loss].detachable else "–"),
             "same-class share": pct(s.same_mass),
             "same-class mean ω": "–" if not math.isfinite(s.same_importance) else f"{s.same_importance:.2f}",
             "effective negatives": round(s.n_eff, 1),
             "true negatives pulled closer": pct(s.pulled),
             "same-class pulled closer": pct(s.pulled_same),
             "of candidates": s.n_candidates} for s in stats]


EXPLANATION = """
**Three views of the same pairs.** Each of the {anchors} anchor views has n = {n} candidates (every
view but itself and its partner). Blue: candidates of another class (true negatives). Orange:
candidates that share the anchor's class ("false negatives": they are not negatives at all).

* **Importance ω** is the papers' hardness weight, e^(β·s) divided by its mean over the anchor's
  negatives. **β multiplies s = cos/τ, not the cosine** (as in the published code), so β = 1 at
  τ = 0.5 is a tilt of exp(2·cos). Losses without β, and every loss at β = 0, have ω = 1.
* **Share** is what each negative carries of the anchor's negative term: ω times e^s, normalised.
  It is not ω: at β = 0 it is already the softmax of s. The **same-class share** is the part on
  orange; the **effective number of negatives** (Σ share)²/Σ share² is n for a uniform share.
* **Gradient** ∂L/∂s is where training pushes (right) or pulls (left). HCL's tilt is not a
  constant in the published code: its own derivative gives ∂L/∂s ∝ (1+β)·share − β·ω/n, so at
  β > 0 every negative whose share is small against its weight is **pulled closer**, on a trained
  encoder most of them. With "Detach the weights" the gradient is the share: everything is pushed.

**Why H-SCL removes the false-negative share that HCL tilts towards.** Once an encoder has learned
anything, the most similar views are disproportionately views of the *same class*, so HCL's tilt
moves weight onto exactly the false negatives, and its same-class share grows with β (its τ⁺
debiasing subtracts an average positive term but does not change the shares). H-SCL uses the
labels: its negatives are only *other* classes, so its same-class share is **0 by construction**,
at every β, and same-class views are positives (pulled closer) instead. SupCon keeps same-class
views in its denominator, but its numerator pulls them closer. (SupContrast's published training
multiplies the SupCon loss by τ/0.07, its base_temperature: the same directions, gradients τ/0.07
times larger; here the loss is unscaled.)
"""


# ------------------------------------------------------------------------------------------
# the page
# ------------------------------------------------------------------------------------------

st.title("Negatives")
glossary()
st.caption("What each loss does with each negative: the hardness weight, the share of the negative term, and where "
           "the gradient goes. Nothing is trained here: the preview re-weights the embeddings a run saved at a "
           "snapshot.")
run = pick_run(key="neg_run")
if run is None:
    st.stop()
epoch, losses, beta, tau, detach = controls(run)
if not losses:
    st.info("Pick at least one loss above.")
    st.stop()
try:
    mtime = snapshot_mtime(run, epoch)
    z1, z2, z_labels = _batch(str(run.path), epoch, mtime)
except (OSError, RunFileError, KeyError) as e:
    st.error(f"The snapshot of epoch {epoch} cannot be read ({e}). Pick another epoch or run.")
    st.stop()

tau_plus = prior_of(run)
try:
    stats = [stats_for(str(run.path), epoch, mtime, loss, beta if uses_beta(loss) else 0.0, tau, tau_plus,
                       detach and LOSSES[loss].detachable) for loss in losses]
except ValueError as e:  # e.g. a batch whose labels do not fit its views
    st.error(f"The weights cannot be computed on this snapshot: {e}")
    st.stop()
st.subheader(f"Negatives · epoch {epoch} · preview β={beta:g} · τ={tau:g}" + (" · detached" if detach else ""))
view = st.radio("View", VIEWS, horizontal=True, key="neg_view", format_func=VIEW_TITLE.get,
                help="Three views of the same (anchor, candidate) pairs.")
st.query_params.update({"beta": f"{beta:g}", "view": view})  # a teacher can prepare this exact view as a link
st.latex(VIEW_FORMULA[view])
st.caption(VIEW_HELP[view] + f" Axis: {VIEW_AXIS[view]}.")
hist = negatives_figure(stats, view)
light = not interactive_charts()  # the markup is built only where it is drawn
chart(hist, key="neg_hist", name=f"negatives-{view}", markup=figure_html(hist) if light else None)
st.dataframe(numbers_table(stats), hide_index=True, key="neg_numbers")
fixed = [short_label(s.loss) for s in stats if not uses_beta(s.loss)]
note = f"{', '.join(fixed)} read no β: the preview β does not change them. " if fixed else ""
st.caption(note + f"DCL and HCL's gradients use τ⁺ = {tau_plus:g} (where their clamp binds, an anchor's negatives "
           "get no gradient: 'exactly 0').")

st.subheader("As a function of β")
with st.spinner("Computing the β curves on this snapshot…"):
    sweeps = {loss: sweep_for(str(run.path), epoch, mtime, loss, tau, tau_plus, detach and LOSSES[loss].detachable)
              for loss in losses}
sweep_fig = beta_sweep_figure(sweeps, preview_beta=beta, same_share=stats[0].same_share,
                              n_candidates=stats[0].n_candidates)
chart(sweep_fig, key="neg_sweep", name="negatives-against-beta", markup=figure_html(sweep_fig) if light else None)
st.caption(f"Computed on this snapshot for β = 0 to {BETA_MAX:g} in steps of {BETA_GRID[1]:g}; dashed: losses without "
           "β. Dotted: what uniform weights would give. HCL and H-UCL put identical shares on negatives (they differ "
           "only in τ⁺ debiasing, which leaves the shares alone), as do InfoNCE, DCL and SupCon: their lines overlap. "
           f"Run: {run.config.short_name()}, trained with "
           + (f"β={run.config.beta:g}." if uses_beta(run.config.loss) else "no β."))
st.markdown(EXPLANATION.format(anchors=2 * len(z1), n=stats[0].n_candidates))
