"""The Negatives page's numbers and figures: where each loss puts its weight on the negatives.

Inputs are a snapshot's fixed two-view batch: ``z1, z2`` ``(N, d)`` (L2-normalised projections)
and ``labels`` ``(N,)``; inside, the 2N views are anchors and each anchor has ``n = 2N - 2``
candidate negatives (every view but itself and its partner). The weights come from
:func:`hcl_core.losses.negative_weights`: row i of ``(2N, 2N)`` sums to 1 over the candidates.

Weights are shown relative to uniform, ``n * w`` on a log axis: 1 is the uniform share 1/n, 10 is
ten times it. Weights below ``10**LOG_FLOOR`` times uniform (zeros included: H-SCL gives
same-class views exactly 0) are counted in the leftmost bin. Histograms are binned here, so a
figure carries a few hundred numbers instead of the (2N)^2 weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import torch

from ..losses import effective_negatives, negative_weights, same_class_mass
from ..registry import LOSSES
from ..threads import limited_threads
from . import ACCENT, LOSS_COLORS, MUTED, RIGHT_LEGEND, styled

__all__ = [
    "BETA_GRID",
    "LOG_FLOOR",
    "WeightStats",
    "beta_sweep",
    "beta_sweep_figure",
    "weight_histogram_figure",
    "weight_stats",
]

#: The beta grid of the "as a function of beta" curves: 0 to 10 in steps of 0.5.
BETA_GRID = np.round(np.arange(0.0, 10.0001, 0.5), 2)
#: log10 of the smallest weight (relative to uniform) given its own bin; smaller ones share the first.
LOG_FLOOR = -4.0
BIN_WIDTH = 0.1
OTHER_COLOR = "#0072B2"  # true negatives (another class)
SAME_COLOR = ACCENT  # false negatives (the anchor's class)


def uses_beta(loss: str) -> bool:
    return LOSSES[loss].tilts


def short_label(loss: str) -> str:
    """``"HCL"`` for ``"HCL (hard negatives)"``: the label without its parenthesis."""
    return LOSSES[loss].short if loss in LOSSES else loss


@dataclass(frozen=True)
class WeightStats:
    """One loss's negative weights on one batch, binned and summarised.

    Attributes:
        loss, beta, tau: what was computed (``beta`` is 0 for a loss that does not read it).
        n_candidates: candidates per anchor, ``2N - 2``.
        edges: ``(B + 1,)`` bin edges of ``log10(n * w)``; bin 0 also holds every smaller weight.
        counts_other, counts_same: ``(B,)`` (anchor, negative) pairs per bin, other-class and
            same-class candidates.
        zero_same: same-class pairs whose weight is exactly 0 (all of them for H-SCL).
        same_mass: mean over anchors of the weight share on same-class candidates, in [0, 1].
        n_eff: mean over anchors of the effective number of negatives ``(sum w)^2 / sum w^2``.
        same_share: share of candidates that are same-class (the mass under uniform weights).
    """

    loss: str
    beta: float
    tau: float
    n_candidates: int
    edges: np.ndarray
    counts_other: np.ndarray
    counts_same: np.ndarray
    zero_same: int
    same_mass: float
    n_eff: float
    same_share: float


def _tensors(z1, z2, labels) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    z1 = torch.as_tensor(np.asarray(z1), dtype=torch.float32)
    z2 = torch.as_tensor(np.asarray(z2), dtype=torch.float32)
    return z1, z2, torch.as_tensor(np.asarray(labels))


def bin_edges(n_candidates: int) -> np.ndarray:
    """``(B + 1,)`` edges from ``LOG_FLOOR`` to just above ``log10(n)`` (all weight on one negative)."""
    top = math.ceil(math.log10(max(n_candidates, 2)) / BIN_WIDTH + 1e-9) * BIN_WIDTH
    return np.round(np.arange(LOG_FLOOR, top + BIN_WIDTH / 2, BIN_WIDTH), 6)


def weight_stats(z1, z2, labels, *, loss: str, tau: float, beta: float = 0.0) -> WeightStats:
    """Bin and summarise the weights ``loss`` puts on each negative of the batch.

    Args:
        z1, z2: ``(N, d)`` arrays or tensors, the two views.
        labels: ``(N,)`` class labels (used to tell same-class candidates apart).
        loss: a name in :data:`hcl_core.losses.LOSSES`.
        tau: temperature; beta: hardness (ignored, and reported as 0, for losses without it).

    About 10 ms for N = 256 on one CPU core.
    """
    beta = float(beta) if uses_beta(loss) else 0.0
    z1, z2, lab = _tensors(z1, z2, labels)
    with limited_threads():
        nw = negative_weights(z1, z2, lab, loss=loss, tau=tau, beta=beta)
        same_mass, n_eff = float(same_class_mass(nw).mean()), float(effective_negatives(nw).mean())
    n = int(nw.candidates[0].sum())
    w, cand, same = nw.weights.numpy(), nw.candidates.numpy(), nw.same_class.numpy()
    edges = bin_edges(n)
    with np.errstate(divide="ignore"):
        x = np.log10(n * w)
    x = np.clip(x, edges[0], edges[-1] - 1e-9)  # -inf (weight 0) lands in the first bin

    def counts(mask: np.ndarray) -> np.ndarray:
        return np.histogram(x[mask], bins=edges)[0]

    other = cand & ~same
    return WeightStats(
        loss=loss, beta=beta, tau=float(tau), n_candidates=n, edges=edges,
        counts_other=counts(other), counts_same=counts(same), zero_same=int((w[same] == 0).sum()),
        same_mass=same_mass, n_eff=n_eff,
        same_share=float(same.sum() / max(cand.sum(), 1)),
    )


def beta_sweep(z1, z2, labels, *, loss: str, tau: float,
               betas: Sequence[float] = BETA_GRID) -> tuple[np.ndarray, np.ndarray]:
    """Same-class mass and effective number of negatives at every beta: two ``(len(betas),)`` arrays.

    A loss that does not read beta is computed once and repeated (a flat line).
    """
    if not uses_beta(loss):
        s = weight_stats(z1, z2, labels, loss=loss, tau=tau)
        return np.full(len(betas), s.same_mass), np.full(len(betas), s.n_eff)
    z1, z2, lab = _tensors(z1, z2, labels)
    mass, n_eff = [], []
    with limited_threads():
        for b in betas:
            nw = negative_weights(z1, z2, lab, loss=loss, tau=tau, beta=float(b))
            mass.append(float(same_class_mass(nw).mean()))
            n_eff.append(float(effective_negatives(nw).mean()))
    return np.asarray(mass), np.asarray(n_eff)


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------

def _times_uniform(v: float) -> str:
    """Tick text of ``log10(n w) = v``: ``"1/100"``, ``"1"``, ``"10"`` (``"≤1/10⁴"`` at the floor)."""
    if v <= LOG_FLOOR:
        return f"≤1/{10 ** int(-v):,}"
    return f"1/{10 ** int(-v):,}" if v < 0 else f"{10 ** int(v):,}"


def panel_title(s: WeightStats) -> str:
    beta = f" · β={s.beta:g}" if uses_beta(s.loss) else ""
    return (f"<b>{short_label(s.loss)}</b>{beta}<br><span style='font-size:12px'>same-class "
            f"{100 * s.same_mass:.1f} % · eff. negatives {s.n_eff:.0f}</span>")


def _axis(i: int) -> str:
    """Plotly's suffix of the i-th (0-based) subplot's axes: ``""``, ``"2"``, ``"3"``, ..."""
    return "" if i == 0 else str(i + 1)


def _grid(n: int, cols: int, titles: Sequence[str], *, hspace: float, vspace: float) -> tuple[dict, list[dict]]:
    """Layout axes for ``n`` panels in rows of ``cols`` (row-major), and their title annotations.

    Plain dicts, as ``make_subplots`` would lay them out, but without its validation cost (the
    figures here are rebuilt on every slider move). Returns ``(axes, annotations)``.
    """
    rows = math.ceil(n / cols)
    width, height = (1 - (cols - 1) * hspace) / cols, (1 - (rows - 1) * vspace) / rows
    axes, notes = {}, []
    for i in range(n):
        r, c = divmod(i, cols)
        x0, top = c * (width + hspace), 1 - r * (height + vspace)
        a = _axis(i)
        axes[f"xaxis{a}"] = dict(domain=[x0, x0 + width], anchor=f"y{a}")
        axes[f"yaxis{a}"] = dict(domain=[top - height, top], anchor=f"x{a}")
        notes.append(dict(text=titles[i], x=x0 + width / 2, y=top, xref="paper", yref="paper", xanchor="center",
                          yanchor="bottom", showarrow=False, font=dict(size=13)))
    return axes, notes


def _vline(i: int, x: float, **line) -> dict:
    return dict(type="line", xref=f"x{_axis(i)}", yref=f"y{_axis(i)} domain", x0=x, x1=x, y0=0, y1=1,
                line=dict(color=MUTED, dash="dot", width=1.5) | line)


def _hline(i: int, y: float) -> dict:
    return dict(type="line", xref=f"x{_axis(i)} domain", yref=f"y{_axis(i)}", x0=0, x1=1, y0=y, y1=y,
                line=dict(color=MUTED, dash="dot", width=1.5))


def _note(i: int, text: str, *, x: float, y: float, xanchor: str, yanchor: str, color: str = MUTED) -> dict:
    """A text in panel ``i`` at (x, y) in its domain fractions."""
    return dict(text=text, x=x, y=y, xref=f"x{_axis(i)} domain", yref=f"y{_axis(i)} domain", xanchor=xanchor,
                yanchor=yanchor, showarrow=False, align=xanchor if xanchor != "center" else "center",
                font=dict(size=11, color=color))


def x_range(stats: Sequence[WeightStats]) -> tuple[float, float]:
    """The shared x range: from the decade below the smallest drawn weight (at most down to the
    floor) to the top edge, so an empty left half does not squeeze the bars."""
    lows = []
    for s in stats:
        for counts, is_same in ((s.counts_other, False), (s.counts_same, True)):
            if counts.sum() and not (is_same and s.zero_same == counts.sum()):
                lows.append(s.edges[np.flatnonzero(counts)[0]])
    low = max(LOG_FLOOR, math.floor(min(lows, default=LOG_FLOOR) - 0.05))
    return float(low), float(stats[0].edges[-1])


def weight_histogram_figure(stats: Sequence[WeightStats], *, cols: int = 3, panel_height: int = 250) -> go.Figure:
    """Small multiples, one panel per loss: histograms of ``n * w`` (log axis), split by class.

    Bars are the percentage of that group's (anchor, negative) pairs, so the two groups compare in
    shape although same-class candidates are few (about 1 in 10 on 10 classes). The dotted line is
    the uniform weight 1/n. When every same-class weight is 0 (H-SCL), no orange bar is drawn (it
    would be one bar of 100 % at the floor) and the panel says so instead.
    """
    if not stats:
        raise ValueError("need at least one loss to plot")
    cols = min(cols, len(stats))
    rows = math.ceil(len(stats) / cols)
    axes, notes = _grid(len(stats), cols, [panel_title(s) for s in stats], hspace=0.05,
                        vspace=0.3 / rows + 0.06)
    low, high = x_range(stats)
    step = 1.0 if high - low <= 5 else 2.0  # decades, always through 1 (= uniform)
    ticks = [float(t) for t in np.arange(math.ceil(low / step) * step, high + 1e-9, step)]
    if low == LOG_FLOOR and ticks[0] > low + 1:
        ticks.insert(0, low)  # the floor bin, where zero weights go
    traces, shapes, legend_done = [], [], set()
    for i, s in enumerate(stats):
        a = _axis(i)
        centres = (s.edges[:-1] + s.edges[1:]) / 2
        all_zero = s.counts_same.sum() > 0 and s.zero_same == s.counts_same.sum()
        for name, counts, color in (("other class (true negatives)", s.counts_other, OTHER_COLOR),
                                    ("same class (false negatives)", s.counts_same, SAME_COLOR)):
            total = counts.sum()
            if total == 0 or (all_zero and color == SAME_COLOR):
                continue
            traces.append(dict(
                type="bar", x=centres, y=100 * counts / total, width=BIN_WIDTH, name=name, legendgroup=name,
                showlegend=name not in legend_done, marker=dict(color=color, line=dict(width=0)), opacity=0.65,
                xaxis=f"x{a}", yaxis=f"y{a}", customdata=np.c_[10 ** s.edges[:-1], 10 ** s.edges[1:], counts],
                hovertemplate="weight %{customdata[0]:.3g}–%{customdata[1]:.3g} × uniform<br>"
                              "%{y:.1f} % of pairs (%{customdata[2]:,})<extra>" + name + "</extra>",
            ))
            legend_done.add(name)
        shapes.append(_vline(i, 0.0))
        if all_zero:
            notes.append(_note(i, "same class:<br>weight 0, never<br>a negative", x=0.99, y=0.97, xanchor="right",
                               yanchor="top", color=SAME_COLOR) | dict(font=dict(size=12, color=SAME_COLOR)))
        axes[f"xaxis{a}"].update(tickvals=list(ticks), ticktext=[_times_uniform(t) for t in ticks], tickangle=0,
                                 range=[low, high])
        axes[f"yaxis{a}"].update(ticksuffix=" %", rangemode="tozero")
        if i // cols == rows - 1 or i + cols >= len(stats):  # the lowest panel of its column
            axes[f"xaxis{a}"]["title"] = dict(text="weight ÷ uniform 1/n (log scale)")
        if i % cols == 0:
            axes[f"yaxis{a}"]["title"] = dict(text="% of pairs")
    fig = go.Figure(data=traces, layout=dict(axes, annotations=notes, shapes=shapes), _validate=False)
    height = rows * panel_height + 100
    styled(fig, height=height)
    fig.update_layout(barmode="overlay", bargap=0, margin=dict(t=80))
    return fig


#: Line styles of the β curves: losses with identical weights (HCL and H-UCL; InfoNCE, DCL and
#: SupCon) overlap exactly, so their dashes differ and both stay visible.
_DASH = {"hcl": "solid", "h_ucl": "dot", "hard_supcon": "solid", "info_nce": "dash", "dcl": "dashdot",
         "supcon": "longdash"}
_NEFF_TICKS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]


def beta_sweep_figure(betas: Sequence[float], mass: Mapping[str, Sequence[float]],
                      n_eff: Mapping[str, Sequence[float]], *, preview_beta: float | None = None,
                      same_share: float | None = None, n_candidates: int | None = None,
                      height: int = 360) -> go.Figure:
    """Two panels against β, one line per loss: the same-class weight mass (in %) and the
    effective number of negatives (log axis). Losses that ignore β are flat dashed lines.

    ``mass``, ``n_eff``: loss name -> ``(len(betas),)``. ``same_share`` / ``n_candidates``: dotted
    references, what uniform weights give. ``preview_beta``: a vertical marker in both panels.
    """
    axes, notes = _grid(2, 2, ["Weight on same-class views (false negatives)", "Effective number of negatives"],
                        hspace=0.1, vspace=0.0)
    for note in notes:
        note["font"] = dict(size=14)
    traces, shapes = [], []
    x = [float(b) for b in betas]
    for i, (values, fmt) in enumerate(((mass, ".1%"), (n_eff, ".1f"))):
        for loss, ys in values.items():
            flat = not uses_beta(loss)
            traces.append(dict(
                type="scatter", x=x, y=[float(v) for v in ys], mode="lines", xaxis=f"x{_axis(i)}",
                yaxis=f"y{_axis(i)}", name=short_label(loss) + (" (no β)" if flat else ""), legendgroup=loss,
                showlegend=i == 0,
                line=dict(color=LOSS_COLORS.get(loss, MUTED), width=2 if flat else 3, dash=_DASH.get(loss, "solid")),
                hovertemplate="β=%{x:g}<br>%{y:" + fmt + "}<extra>" + short_label(loss) + "</extra>",
            ))
        axes[f"xaxis{_axis(i)}"]["title"] = dict(text="β (multiplies s = cos/τ)")
        if preview_beta is not None:
            shapes.append(_vline(i, float(preview_beta), color="#444444", dash="solid", width=1.2))
            notes.append(_note(i, f"preview β={preview_beta:g}", x=min(preview_beta / max(x[-1], 1e-9), 1) + 0.01,
                               y=1.0, xanchor="left", yanchor="top", color="#444444"))
    if same_share is not None:
        shapes.append(_hline(0, same_share))
        notes.append(_note(0, f"uniform weights: {same_share:.1%}", x=1.0, y=same_share, xanchor="right",
                           yanchor="bottom") | dict(yref="y"))
    if n_candidates is not None:
        shapes.append(_hline(1, n_candidates))
        notes.append(_note(1, f"uniform: all {n_candidates}", x=1.0, y=math.log10(n_candidates), xanchor="right",
                           yanchor="top") | dict(yref="y2"))
    axes["yaxis"].update(title=dict(text="same-class weight mass"), tickformat=".0%", rangemode="tozero")
    axes["yaxis2"].update(title=dict(text="effective negatives (log scale)"), type="log", tickvals=_NEFF_TICKS)
    fig = go.Figure(data=traces, layout=dict(axes, annotations=notes, shapes=shapes), _validate=False)
    styled(fig, height=height)
    fig.update_layout(legend=dict(RIGHT_LEGEND, x=1.02),
                      margin=dict(t=40, r=10))
    return fig
