"""Theory: does the hard unsupervised loss bound the hard supervised one on real embeddings?

Jiang et al. prove H-SCL <= H-UCL in the limit of many negatives under an assumption; this page
evaluates the library's losses (hard_supcon with labels, in its two published forms, h_ucl,
info_nce) on the stored projections of a run's snapshot (two views of 256 test samples) over a
grid of beta, side by side for the two H-SCL variants, and says in words where the inequality
holds and where it does not. All maths is in ``hcl_core.theory``.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from hcl_core.plots.markup import figure_html
from hcl_core.plots.theory import bound_figure, gap_figure, negatives_figure
from hcl_core.registry import LOSSES
from hcl_core.store import Run, RunFileError, load_run
from hcl_core.theory import (
    COARSE_BETAS,
    DEFAULT_BETAS,
    VARIANT_LABELS,
    TheoryCurves,
    compare_variants,
    describe,
    negatives_curves,
    theory_curves,
)
from ui import all_runs, load_snapshot, pick_run, run_label
from ui.figures import chart, interactive_charts
from ui.formulas import FORMULAS
from ui.glossary import glossary
from ui.navigation import through_app

through_app()  # first: a deep link to a fresh server must run through app.py

_UNREADABLE = (ValueError, OSError, KeyError, RunFileError)
MAX_TABLE_RUNS = 24

st.title("Theory: hard negatives, with and without labels")
glossary()
st.markdown(
    "**The claim** (Jiang, Nguyen, Ishwar & Aeron, *Supervised Contrastive Learning with Hard Negative "
    "Samples*, arXiv 2209.00078): with very many negatives, and under an assumption about how hard the "
    "unlabelled negatives are, the hard **supervised** loss is never above the hard **unsupervised** one, "
    "**H-SCL ≤ H-UCL**. So driving H-UCL down, which needs no labels, also drives H-SCL down. The plain "
    "unsupervised loss (UCL, InfoNCE) gives no such guarantee: it can sit below H-SCL. Their follow-up "
    "(arXiv 2311.05139) adds that hardness never lowers a loss: H-SCL(β) ≥ SCL and H-UCL(β) ≥ UCL.\n\n"
    "**What you see**: the losses of this app's library evaluated on a trained encoder's embeddings "
    "(two augmented views of 256 fixed test samples, so 510 negatives per anchor), for a range of hardness "
    "β. Green background: the inequality holds at that β; orange: it does not.\n\n"
    "**Two H-SCLs.** The authors' H-SCL *training* code counts every same-class view as a positive. Their own "
    "check of the bound (`main/main_loss.py` in Jiang et al.'s repository, which logs H-UCL, UCL, SCL and "
    "H-SCL side by side) takes the augmentation partner as the only positive, like H-UCL. The two give "
    "different verdicts on the same embeddings, so both are shown, the authors' check first."
)
with st.expander("The losses, as computed here"):
    st.markdown("**H-SCL, partner only** (`hard_supcon(..., positives=\"partner\")`, the authors' check): "
                "negatives are only other-class views; the partner p(i) is the only positive; mean over the 2N "
                "anchors.")
    st.latex(r"\ell_i = \log\Big(1 + \frac{M\,T_i}{e^{s_{i,p(i)}}}\Big),\quad T_i = "
             r"\frac{\sum_{k:\,y_k\ne y_i} e^{\beta s_{ik}}\, e^{s_{ik}}}{\sum_{k:\,y_k\ne y_i} e^{\beta s_{ik}}},"
             r"\quad M = 2N-2")
    st.markdown("**H-SCL, every same-class positive** (`hard_supcon`, the training code): the same negatives; "
                "every same-class view is a positive; mean over all positive pairs.")
    st.latex(FORMULAS["hard_supcon"])
    st.markdown("**H-UCL** (`h_ucl`, no labels): every view except the anchor and its augmentation partner is "
                "a negative, same-class views included; the partner is the only positive.")
    st.latex(FORMULAS["h_ucl"])
    st.markdown("**UCL** (`info_nce`): H-UCL at β = 0.")
    st.latex(FORMULAS["info_nce"])
    st.caption("β multiplies s = cos/τ, as in every published code base. The paper's theorem compares the two "
               "hard losses for the same positive pair, as the partner-only H-SCL does; the training code's "
               "H-SCL, like SupCon, averages over all same-class positives, which is why the page also reports "
               "how close those are.")


@st.cache_data(max_entries=64, show_spinner=False)
def curves(run_path: str, epoch: int, mtime: float, tau: float, betas: tuple[float, ...],
           diagnostics: bool = True) -> TheoryCurves:
    """The theory curves of one snapshot (``mtime`` in the key: a rewritten snapshot is read again)."""
    snap = load_snapshot(load_run(run_path), epoch)
    return theory_curves(snap["z1"], snap["z2"], snap["z_labels"], tau=tau, betas=betas, diagnostics=diagnostics)


def snapshot_mtime(run: Run, epoch: int) -> tuple:
    return run.snapshot_stamp(epoch)


def run_curves(run: Run, epoch: int, tau: float, betas: tuple[float, ...], diagnostics: bool = True) -> TheoryCurves:
    return curves(str(run.path), epoch, snapshot_mtime(run, epoch), tau, betas, diagnostics)


@st.cache_data(max_entries=16, show_spinner=False)
def negatives(run_path: str, epoch: int, mtime: float, tau: float, beta: float):
    snap = load_snapshot(load_run(run_path), epoch)
    return negatives_curves(snap["z1"], snap["z2"], snap["z_labels"], beta=beta, tau=tau)


@st.cache_resource(max_entries=32, show_spinner=False)
def bound_figures(key: tuple, title: str, *, _c: TheoryCurves) -> dict:
    """The two bound figures of one set of curves (``key``: what the curves were computed from),
    each as ``(figure, markup)``.

    Built once per snapshot, τ and β range: rebuilding them was most of a page switch's server
    time (BENCHMARKS.md). Nothing mutates them afterwards.
    """
    return {p: _with_markup(bound_figure(_c.variant(p), title=title, height=400)) for p in ("partner", "all")}


@st.cache_resource(max_entries=16, show_spinner=False)
def gap_figures(key: tuple, *, _by_epoch: dict) -> dict:
    """The two over-training figures of one run's snapshots (``key``: epochs, stamps and τ), each as
    ``(figure, markup)``."""
    return {p: _with_markup(gap_figure(_by_epoch, positives=p, height=360)) for p in ("partner", "all")}


def _with_markup(fig) -> tuple:
    return fig, figure_html(fig)


run = pick_run("Run", key="theory_run")
if run is None:
    st.markdown("The page needs a trained run with snapshots; a short one is enough (a few seconds on digits), "
                "e.g. `python -m hcl_core train --loss hard_supcon --epochs 20`.")
    st.stop()

epochs = run.snapshot_epochs()
left, mid, right = st.columns(3)
epoch = left.select_slider("Snapshot epoch", epochs, value=epochs[-1], key="theory_epoch",
                           help="Epoch 0 is the randomly initialised encoder.")
tau = mid.number_input("Temperature τ", min_value=0.05, max_value=2.0, value=float(run.config.tau), step=0.05,
                       key=f"theory_tau_{run.run_id}", help="The run's own τ by default.")
beta_max = right.select_slider("Largest β", [b for b in DEFAULT_BETAS if b >= 1] + [15.0, 20.0], value=10.0,
                               key="theory_beta_max", help="The published experiments go up to β = 6.")
betas = tuple(b for b in (*DEFAULT_BETAS, 15.0, 20.0) if b <= beta_max)

try:
    with st.spinner("Evaluating the losses on the embeddings…"):
        c = run_curves(run, epoch, float(tau), betas)
except _UNREADABLE as e:
    st.error(f"The snapshot of epoch {epoch} cannot be used: {e}")
    st.stop()

st.markdown(compare_variants(c))
interactive = interactive_charts()
bounds = bound_figures((str(run.path), epoch, snapshot_mtime(run, epoch), float(tau), betas),
                       f"{run_label(run)} · epoch {epoch}", _c=c)
for col, positives in zip(st.columns(2, gap="medium"), ("partner", "all"), strict=True):
    v = c.variant(positives)
    cross = v.crossings()
    col.markdown(f"**{VARIANT_LABELS[positives]}**")
    m1, m2 = col.columns(2)
    m1.metric("β values where H-SCL ≤ H-UCL", f"{int(v.holds.sum())} of {len(v.holds)}",
              help=f"β from {betas[0]:g} to {betas[-1]:g}: {', '.join(f'{b:g}' for b in betas)}")
    m2.metric("Verdict changes at", ", ".join(f"β ≈ {b:.2g}" for b in cross[:2]) + (" …" if len(cross) > 2 else "")
              if cross else "nowhere", help="Where H-UCL − H-SCL changes sign (interpolated), in the β range shown.")
    with col:
        fig, markup = bounds[positives]
        chart(fig, key=f"theory_bound_{positives}", name=f"theory-{positives}-{run.run_id}-e{epoch}", markup=markup,
              interactive=interactive)
    col.markdown(describe(v))
st.caption(f"Trained with {LOSSES[run.config.loss].label}. Loss values are in nats; UCL (InfoNCE, no β) = "
           f"{c.ucl:.3f}. With {c.negatives} negatives a random encoder scores about log({c.negatives + 1}) = "
           f"{np.log(c.negatives + 1):.2f} on every loss.")

st.subheader("Over training")
if len(epochs) > 1:
    try:
        with st.spinner("Evaluating every snapshot…"):
            by_epoch = {e: run_curves(run, e, float(tau), COARSE_BETAS, diagnostics=False) for e in epochs}
            stamps = tuple((e, snapshot_mtime(run, e)) for e in epochs)
    except _UNREADABLE as e:
        st.warning(f"Some snapshots could not be read: {e}")
    else:
        gaps = gap_figures((str(run.path), stamps, float(tau)), _by_epoch=by_epoch)
        for col, positives in zip(st.columns(2, gap="medium"), ("partner", "all"), strict=True):
            with col:
                fig, markup = gaps[positives]
                chart(fig, key=f"theory_gap_{positives}", name=f"theory-margin-{positives}-{run.run_id}",
                      markup=markup, interactive=interactive)
        st.caption("Each line is one snapshot (darker = later), on a coarse β grid. A random encoder (epoch 0) "
                   "sits near 0: every loss is about log of the number of negatives. Training moves the margin "
                   "up (the bound holds with room to spare) or down (H-SCL is the larger loss).")
else:
    st.caption("This run has a single snapshot.")

st.subheader("How many negatives?")
st.caption("The theorem is about the limit of infinitely many negatives. Here the same embeddings are cut into "
           "random smaller batches (8 draws each; error bars ± one standard deviation) to show how the margin "
           "H-UCL − H-SCL moves as the number of negatives per anchor grows. Above 0 the bound holds.")
beta_n = st.select_slider("β for this view", list(betas), value=1.0 if 1.0 in betas else betas[-1],
                          key="theory_beta_negatives")
if st.toggle("Show the losses against the number of negatives", key="theory_show_negatives"):
    with st.spinner("Sub-sampling…"):
        nc = negatives(str(run.path), epoch, snapshot_mtime(run, epoch), float(tau), float(beta_n))
    chart(negatives_figure(nc), key="theory_negatives", name=f"theory-negatives-{run.run_id}-e{epoch}")

st.subheader("Across runs")
st.caption(f"The last snapshot of up to {MAX_TABLE_RUNS} runs, each at its own τ: does H-SCL ≤ H-UCL hold at "
           f"β = {', '.join(f'{b:g}' for b in COARSE_BETAS)}, with the partner-only H-SCL (the authors' check) and "
           "with every same-class view a positive (✓ holds, ✗ fails)?")
if st.toggle("Compare all runs", key="theory_all_runs"):
    table = []
    candidates = [r for r in all_runs() if r.snapshot_epochs()][:MAX_TABLE_RUNS]
    progress = st.progress(0.0, text="Evaluating every run…")
    for k, r in enumerate(candidates):
        progress.progress((k + 1) / len(candidates), text=f"Evaluating run {k + 1} of {len(candidates)}…")
        try:
            rc = run_curves(r, r.snapshot_epochs()[-1], float(r.config.tau), COARSE_BETAS, diagnostics=False)
        except _UNREADABLE:
            continue
        row = {"run": run_label(r), "epoch": r.snapshot_epochs()[-1]}
        part, every = rc.variant("partner"), rc.variant("all")
        row.update({f"β={b:g}": ("✓" if hp else "✗") + " partner, " + ("✓" if ha else "✗") + " all"
                    for b, hp, ha in zip(rc.betas, part.holds, every.holds, strict=True)})
        row["UCL ≤ H-SCL(β=1), all"] = "yes" if every.ucl_below_h_scl[list(rc.betas).index(1.0)] else "no"
        table.append(row)
    progress.empty()
    if table:
        st.dataframe(table, hide_index=True, key="theory_table")
    else:
        st.info("No run has a readable snapshot.")
