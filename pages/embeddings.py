"""Embeddings: watch the classes separate epoch by epoch; click a point to see its neighbours.

The scatter shows the backbone features (n, D) of the run's fixed evaluation subset of test
samples at every snapshot, laid out in 2-D by PCA (instant) or UMAP (fitted in the background by
one ProjectionService per process; the page shows PCA until UMAP is ready). Layouts are chained
backwards from the last epoch: each earlier epoch is Procrustes-aligned onto the next one, so
points do not jump when the animation plays.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import numpy as np
import streamlit as st

from hcl_core.analysis.neighbours import Neighbours, neighbours
from hcl_core.plots.embeddings import Highlight, embedding_figure, hover_texts, layout_ranges, thumbnail
from hcl_core.projection import align_layout, pca_2d
from hcl_core.snapshots import UNREADABLE, Snapshots, read_snapshots, umap_chain, umap_key
from hcl_core.store import Run, load_run
from ui import LIVE_REFRESH_S, load_eval_inputs, load_snapshot, pick_run
from ui.glossary import glossary
from ui.navigation import through_app
from ui.projections import projection_service

through_app()  # first: a deep link to a fresh server must run through app.py

K = 8  # neighbours and hardest negatives shown for a chosen sample
POLL_S = 0.5  # how often the page checks whether UMAP is ready
FRAME_S = 0.6  # seconds per epoch while Play runs (the chart's own animation used the same)
PLAY_TICK_S = 0.2  # how often Play checks whether the frame is over: a frame's rerun counts in its time


@st.cache_data(max_entries=16, show_spinner=False)
def pca_layouts(stamp: tuple, _features: list[np.ndarray]) -> tuple[list[np.ndarray], list[tuple], float]:
    """Per epoch: the PCA layout ``(n, 2)``, aligned onto the next epoch's, and the variance share of
    PC 1, PC 2; then the seconds it all took."""
    t0 = time.perf_counter()
    raw = [pca_2d(f) for f in _features]
    shares = [tuple(lay.var(axis=0) / max(f.var(axis=0).sum(), 1e-12)) for lay, f in zip(raw, _features, strict=True)]
    aligned = raw[-1:]
    for lay in reversed(raw[:-1]):
        aligned.insert(0, align_layout(lay, aligned[0]))
    return aligned, shares, time.perf_counter() - t0


def umap_layouts(run: Run, snaps: Snapshots) -> tuple[dict[int, np.ndarray], str | None]:
    """The UMAP layouts ready so far and the error if one failed; schedules the next fit, never waits.

    Chained from the last epoch backwards: each earlier epoch starts from the next one's layout
    and is aligned onto it, so the animation does not jump (and the last epoch is ready first).
    """
    service, ready, reference = projection_service(), {}, None
    for epoch, (key, feats) in zip(reversed(snaps.epochs), umap_chain(run, snaps), strict=True):
        layout = service.request(key, feats, reference=reference)
        if layout is None:
            return ready, service.error(key)
        ready[epoch] = reference = layout
    return ready, None


def umap_state(ready: dict, error: str | None, epoch: int, epochs: list[int]) -> tuple[bool, bool, bool]:
    """What the chart depends on: (chosen epoch ready, all ready, failed)."""
    return epoch in ready, len(ready) == len(epochs), error is not None


@st.fragment(run_every=POLL_S)
def umap_progress(run: Run, snaps: Snapshots, epoch: int, shown: tuple[bool, bool, bool]) -> None:
    """Polls the background UMAP; reruns the page only when the chart would change."""
    ready, error = umap_layouts(run, snaps)
    if umap_state(ready, error, epoch, snaps.epochs) != shown:
        st.rerun(scope="app")
    what = "UMAP is being computed…" if epoch not in ready else "UMAP of the other epochs is being computed…"
    st.caption(f"{what} {len(ready)} of {len(snaps.epochs)} epochs ready; the chart updates by itself.")


@dataclass
class View:
    """What the chart shows: ``layouts[i]`` ``(n, 2)`` at ``epochs[i]``, axis titles per epoch."""

    method: str
    epochs: list[int]
    layouts: list[np.ndarray]
    axes: list[tuple[str, str]]
    note: str


def pca_view(snaps: Snapshots) -> View:
    layouts, shares, seconds = pca_layouts(snaps.stamp, snaps.features)
    axes = [(f"PC 1 ({100 * a:.0f} % of variance)", f"PC 2 ({100 * b:.0f} % of variance)") for a, b in shares]
    return View("PCA", snaps.epochs, layouts, axes,
                f"PCA of {len(layouts)} epoch(s) in {1000 * seconds:.0f} ms. The axes are the principal components "
                f"at epoch {snaps.epochs[-1]}; each earlier epoch is rotated and scaled onto the next one "
                "(Procrustes) so points do not jump; the % is each epoch's own.")


def umap_view(run: Run, snaps: Snapshots, epoch: int) -> View | None:
    """The UMAP view if the chosen epoch is ready (with the epochs ready so far); else ``None``,
    and a note or a fragment that polls until it is."""
    ready, error = umap_layouts(run, snaps)
    state = umap_state(ready, error, epoch, snaps.epochs)
    if error:
        st.warning(f"{error}. Showing " + ("the epochs that are ready." if state[0] else "PCA instead."))
        if st.button("Retry UMAP"):
            for e in snaps.epochs:
                projection_service().forget(umap_key(run, snaps, e))
            st.rerun()
    elif not state[1]:
        umap_progress(run, snaps, epoch, state)
    if not state[0]:
        return None
    epochs = [e for e in snaps.epochs if e in ready]
    seconds = projection_service().seconds(umap_key(run, snaps, epoch)) or 0.0
    return View("UMAP", epochs, [ready[e] for e in epochs], [("UMAP 1", "UMAP 2")] * len(epochs),
                f"UMAP (cosine, 15 neighbours) of epoch {epoch} took {seconds:.1f} s in the background. Its axes "
                "have no units, and distances between clusters mean little.")


@dataclass
class Subset:
    """The evaluation subset: ``labels``/``indices`` (test-set positions) ``(n,)``, ``inputs``
    ``(n, C, H, W)`` or ``(n, D)`` (``None`` if the run's evaluation inputs are unreadable), and
    ``names[k]`` the name of class ``k``."""

    labels: np.ndarray
    indices: np.ndarray
    inputs: np.ndarray | None
    names: tuple[str, ...]

    def name(self, row: int) -> str:
        return self.names[int(self.labels[row])]


def read_subset(run: Run, labels: np.ndarray) -> Subset:
    """The subset of ``run`` whose snapshot labels are ``labels``; class names as the run saved them,
    else the data set's, else the class indices (runs written before names were saved)."""
    n, k = len(labels), int(labels.max()) + 1
    try:
        data = load_eval_inputs(run)
        if len(data["inputs"]) != n or len(data["indices"]) != n:
            raise ValueError(f"{len(data['inputs'])} inputs for {n} samples")
    except UNREADABLE:
        return Subset(labels, np.arange(n), None, run.class_names(k, ()))
    return Subset(labels, data["indices"], data["inputs"], run.class_names(k, data.get("class_names", ())))


@st.cache_data(max_entries=16, show_spinner=False)
def hover_labels(run_path: str, stamp: tuple, n: int, _subset: Subset) -> list[str]:
    """Hover text per sample (block pictures take a while for thousands of images: cached per run)."""
    return hover_texts(_subset.labels, _subset.indices, _subset.names, _subset.inputs)


def on_click(chart_key: str, sample_key: str) -> None:
    """A clicked point becomes the chosen sample (an empty selection keeps the last one)."""
    points = st.session_state[chart_key].selection.points
    try:
        data = points[0]["customdata"]
        st.session_state[sample_key] = int(data[0] if isinstance(data, list) else data)
    except (IndexError, KeyError, TypeError, ValueError):
        pass  # no point, or a ring around one (rings carry no sample index)


def gallery(title: str, rows: np.ndarray, cos: np.ndarray, sub: Subset, mark: np.ndarray | None = None) -> None:
    """Thumbnails (a table for vectors) of ``rows`` with class and cosine; ``mark[j]``: prefix a ✗."""
    st.markdown(title)
    captions = [f"{'✗ ' if mark is not None and mark[j] else ''}{sub.name(r)} · {c:.2f}" for j, (r, c) in
                enumerate(zip(rows, cos, strict=True))]
    pictures = [thumbnail(sub.inputs[r], 64) for r in rows] if sub.inputs is not None else [None]
    if not rows.size or pictures[0] is None:
        st.dataframe({"test #": sub.indices[rows], "class": [sub.name(r) for r in rows], "cosine": cos.round(3)},
                     hide_index=True)
        return
    for col, picture, caption in zip(st.columns(K), pictures, captions, strict=False):
        col.image(picture, caption=caption, width=64, output_format="PNG")


def inspect(nb: Neighbours, sub: Subset, epoch: int, dim: int) -> None:
    """The chosen sample, its nearest neighbours and its hardest negatives, side by side."""
    left, right = st.columns([1, 5])
    picture = thumbnail(sub.inputs[nb.sample], 128) if sub.inputs is not None else None
    if picture is not None:
        left.image(picture, width=128, output_format="PNG")
    left.markdown(f"**class {sub.name(nb.sample)}**  \ntest #{sub.indices[nb.sample]}  \nepoch {epoch}")
    with right:
        st.caption(f"Similarity: the cosine of the {dim}-dimensional backbone features at epoch {epoch}. Neighbours "
                   "there can lie apart in the 2-D picture, which keeps only part of the geometry.")
        gallery(f"**Nearest neighbours** (cosine of backbone features; {int(nb.same_class.sum())} of "
                f"{len(nb.nearest)} share its class, ✗ marks another class)", nb.nearest, nb.nearest_cos, sub,
                mark=~nb.same_class)
        gallery("**Hardest negatives** (the most similar samples of another class: the ones a hard-negative "
                "loss pushes away hardest)", nb.hardest, nb.hardest_cos, sub)


# ------------------------------------------------------------------------------------------
# the page
# ------------------------------------------------------------------------------------------

def _advance(epoch_key: str, epochs: list[int]) -> None:
    """One Play frame: the next epoch, or the end of playback at the last one.

    Runs every PLAY_TICK_S (and inline with every full run of the page): only a call at least a
    frame after the last step advances, so each epoch stays on screen for a frame, and the time
    the page takes to redraw is part of the frame instead of added to it.
    """
    now = time.monotonic()
    if now - st.session_state.get("emb_frame_at", 0.0) < FRAME_S:
        return
    st.session_state["emb_frame_at"] = now
    i = epochs.index(st.session_state[epoch_key]) if st.session_state.get(epoch_key) in epochs else -1
    if i + 1 < len(epochs):
        st.session_state[epoch_key] = epochs[i + 1]
    else:
        st.session_state["emb_playing"] = False
    st.rerun(scope="app")


def _toggle_play(epoch_key: str, epochs: list[int]) -> None:
    playing = not st.session_state.get("emb_playing", False)
    st.session_state["emb_playing"] = playing
    st.session_state["emb_frame_at"] = time.monotonic()  # the first epoch stays a frame too
    if playing and st.session_state.get(epoch_key) == epochs[-1]:
        st.session_state[epoch_key] = epochs[0]  # Play at the end starts again from the first epoch


def _watch_new_snapshots(run_path: str, known: int) -> None:
    """While the run trains: rerun the page when a new snapshot has been written."""
    if len(load_run(run_path).snapshot_epochs()) != known:
        st.rerun(scope="app")


st.title("Embeddings")
glossary()
run = pick_run(key="emb_run")
if run is None:
    st.stop()
snaps = read_snapshots(run, load_snapshot)
for problem in snaps.problems:
    st.warning(problem)
if not snaps.epochs:
    st.error("None of this run's snapshots can be read, so there is nothing to plot. Pick another run.")
    st.stop()
if run.state == "interrupted":
    st.warning(f"This run was interrupted before it finished: showing the {len(snaps.epochs)} snapshot(s) it "
               f"saved, up to epoch {snaps.epochs[-1]}.")
elif run.state == "running":
    st.info(f"This run is still training: {len(snaps.epochs)} snapshot(s) so far; new epochs appear by themselves.")
    st.fragment(run_every=LIVE_REFRESH_S)(_watch_new_snapshots)(str(run.path), len(run.snapshot_epochs()))

n, sub = len(snaps.labels), read_subset(run, snaps.labels)
epoch_key, sample_key, chart_key = (f"emb_{w}:{run.run_id}" for w in ("epoch", "sample", "chart"))
if epoch_key not in st.session_state and st.query_params.get("epoch", "").isdigit():
    st.session_state[epoch_key] = int(st.query_params["epoch"])  # a link's epoch
if "emb_method" not in st.session_state and st.query_params.get("layout") in ("PCA", "UMAP"):
    st.session_state["emb_method"] = st.query_params["layout"]
c_play, c_epoch, c_method = st.columns([1, 4, 1.4], vertical_alignment="bottom")
playing = st.session_state.get("emb_playing", False) and len(snaps.epochs) > 1
if len(snaps.epochs) > 1:
    if st.session_state.get(epoch_key) not in snaps.epochs:
        st.session_state[epoch_key] = snaps.epochs[-1]
    c_play.button("Pause" if playing else "Play", icon=":material/pause:" if playing else ":material/play_arrow:",
                  on_click=_toggle_play, args=(epoch_key, snaps.epochs), width="stretch",
                  help="Step through the epochs one by one; the chart and the sample below follow.")
    epoch = c_epoch.select_slider("Epoch", snaps.epochs, key=epoch_key,
                                  help="The epoch the chart shows and the neighbours below are computed at.")
else:
    epoch = snaps.epochs[0]
    c_epoch.caption(f"Only one snapshot (epoch {epoch}): nothing to animate yet.")
method = c_method.radio("Layout", ["PCA", "UMAP"], key="emb_method", horizontal=True,
                        help="PCA: a linear projection, instant, axes with a meaning. UMAP: a non-linear map "
                             "that keeps neighbourhoods; computed in the background.")
st.query_params.update({"epoch": str(epoch), "layout": method})
view = (umap_view(run, snaps, epoch) if method == "UMAP" else None) or pca_view(snaps)
if playing:
    st.fragment(run_every=PLAY_TICK_S)(_advance)(epoch_key, snaps.epochs)
ranges = layout_ranges(view.layouts)  # of every epoch: the axes hold still while the epoch changes
if epoch in view.epochs:  # the chart shows the chosen epoch alone: one control drives it
    i = view.epochs.index(epoch)
    view = View(view.method, [epoch], [view.layouts[i]], [view.axes[i]], view.note)

chosen = st.session_state.get(sample_key)
chosen = chosen if isinstance(chosen, int) and 0 <= chosen < n else None
nb = neighbours(snaps.features[snaps.epochs.index(epoch)], sub.labels, chosen, K) if chosen is not None else None
hover = hover_labels(str(run.path), run.eval_inputs_stamp(), n, sub)
fig = embedding_figure(
    view.layouts, view.epochs, sub.labels, class_names=sub.names, hover=hover,
    active=view.epochs.index(epoch) if epoch in view.epochs else None, axis_titles=view.axes,
    titles=[f"Backbone features of {n} test samples · epoch {e} · {view.method}" for e in view.epochs],
    highlight=Highlight(chosen, nb.nearest, nb.hardest) if nb is not None else None,
    show_ticks=view.method == "PCA", equal_aspect=view.method == "PCA", revision=f"{run.run_id}:{view.method}",
    ranges=ranges,
)
st.plotly_chart(fig, key=chart_key, on_select=partial(on_click, chart_key, sample_key), selection_mode="points",
                config={"displaylogo": False, "toImageButtonOptions": {"filename": f"embeddings-{run.run_id}"}})
st.caption(f"{view.note} Hover a point to see the sample; click it to inspect it below.")

st.subheader("Inspect a sample")
st.selectbox("Sample", range(n), key=sample_key, index=None,
             format_func=lambda p: f"test #{sub.indices[p]} · class {sub.name(p)}",
             placeholder="Click a point in the chart, or type a test index here")
if nb is None:
    st.caption("Its nearest neighbours and hardest negatives in the backbone's feature space appear here.")
else:
    inspect(nb, sub, epoch, snaps.features[0].shape[1])
