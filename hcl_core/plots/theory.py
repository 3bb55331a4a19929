"""Theory figures: H-SCL against H-UCL (and UCL) over beta, on a run's embeddings.

Inputs are :class:`hcl_core.theory.TheoryCurves` (one snapshot) and
:class:`hcl_core.theory.NegativesCurves` (sub-batches of one snapshot). Colours follow the
loss palette: H-SCL green, H-UCL pink, UCL black. Where the bound H-SCL <= H-UCL holds the
background is tinted green, where it fails orange.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go

from ..theory import NegativesCurves, TheoryCurves
from . import LOSS_COLORS, MUTED, add_hlines, styled
from .sweep import hex_to_rgba

__all__ = ["FAILS_COLOR", "HOLDS_COLOR", "H_SCL_NAMES", "bound_figure", "gap_figure", "negatives_figure"]

HOLDS_COLOR = "#009E73"
FAILS_COLOR = "#E69F00"
H_SCL, H_UCL, UCL = "H-SCL (hard supervised)", "H-UCL (hard unsupervised)", "UCL (InfoNCE)"
#: The legend name of each H-SCL variant.
H_SCL_NAMES = {"all": "H-SCL, all same-class positives", "partner": "H-SCL, partner only (authors' check)"}


def bound_figure(c: TheoryCurves, *, title: str | None = None, height: int = 440) -> go.Figure:
    """H-SCL(β) of ``c``'s variant and H-UCL(β) as lines, UCL as a dashed level; tinted where the bound
    holds / fails for that variant. The other variant is a thin dotted line, for reference."""
    fig = go.Figure()
    for a, b, holds in c.segments():
        if b > a:
            fig.add_vrect(x0=a, x1=b, fillcolor=hex_to_rgba(HOLDS_COLOR if holds else FAILS_COLOR, 0.10),
                          line_width=0, layer="below")
    for beta in c.crossings():
        fig.add_vline(x=beta, line=dict(color=MUTED, width=1, dash="dot"),
                      annotation_text=f"β ≈ {beta:.2g}", annotation_position="top")
    hover = "β = %{x:g}<br>%{y:.4f} nats<extra>%{fullData.name}</extra>"
    other = "partner" if c.positives == "all" else "all"
    fig.add_trace(go.Scatter(x=c.betas, y=c.h_scl, name=H_SCL_NAMES[c.positives], mode="lines+markers",
                             hovertemplate=hover, line=dict(color=LOSS_COLORS["hard_supcon"], width=2.5),
                             marker=dict(size=6)))
    fig.add_trace(go.Scatter(x=c.betas, y=c.h_ucl, name=H_UCL, mode="lines+markers", hovertemplate=hover,
                             line=dict(color=LOSS_COLORS["h_ucl"], width=2.5), marker=dict(size=6, symbol="square")))
    fig.add_trace(go.Scatter(x=c.betas, y=c.variant(other).h_scl, name=H_SCL_NAMES[other], mode="lines",
                             hovertemplate=hover, opacity=0.6,
                             line=dict(color=LOSS_COLORS["hard_supcon"], width=1.2, dash="dot")))
    fig.add_trace(go.Scatter(x=[c.betas[0], c.betas[-1]], y=[c.ucl, c.ucl], name=UCL + ", no β", mode="lines",
                             line=dict(color=LOSS_COLORS["info_nce"], width=1.5, dash="dash"),
                             hovertemplate=f"UCL {c.ucl:.4f} nats<extra></extra>"))
    # legend entries for the tints
    for color, label in ((HOLDS_COLOR, "H-SCL ≤ H-UCL holds"), (FAILS_COLOR, "bound fails")):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=label, hoverinfo="skip",
                                 marker=dict(size=12, symbol="square", color=hex_to_rgba(color, 0.35))))
    fig = styled(fig, title=title or f"{H_SCL_NAMES[c.positives]}: loss on the stored embeddings against β",
                 x="hardness β (multiplies cos/τ)", y="loss (nats)", height=height)
    return fig



def gap_figure(by_epoch: Mapping[int, TheoryCurves], *, positives: str = "all", height: int = 380) -> go.Figure:
    """H-UCL − H-SCL (the ``positives`` variant) against β, one line per snapshot epoch (darker = later);
    above 0 the bound holds."""
    fig = go.Figure()
    epochs = sorted(by_epoch)
    for k, epoch in enumerate(epochs):
        c = by_epoch[epoch].variant(positives)
        shade = 0.25 + 0.75 * (k / max(len(epochs) - 1, 1))
        fig.add_trace(go.Scatter(
            x=c.betas, y=c.gap, mode="lines", name=f"epoch {epoch}",
            line=dict(color=hex_to_rgba(LOSS_COLORS["hard_supcon"], shade), width=1.5 + 1.5 * shade),
            hovertemplate="β = %{x:g}<br>H-UCL − H-SCL = %{y:+.4f}<extra>epoch " + str(epoch) + "</extra>",
        ))
    add_hlines(fig, [dict(y=0, line=dict(color=MUTED, width=1.5))])
    fig.add_annotation(xref="paper", yref="y", x=0.0, y=0, xanchor="left", yanchor="bottom", showarrow=False,
                       text="above 0: H-SCL ≤ H-UCL holds", font=dict(color=MUTED, size=12))
    return styled(fig, title=f"The margin over training: {H_SCL_NAMES[positives]}", x="hardness β",
                  y="H-UCL − H-SCL (nats)", height=height)


def negatives_figure(nc: NegativesCurves, *, height: int = 380) -> go.Figure:
    """H-UCL − H-SCL (mean ± std over random sub-batches) against the number of negatives 2N − 2.

    Both losses grow like the log of the number of negatives; their difference is what the bound
    is about, so it is what is drawn (the two losses are in the hover).
    """
    x = 2 * np.asarray(nc.sizes) - 2
    fig = go.Figure()
    for key, mean, std, share, dash in (("partner", nc.partner_gap_mean, nc.partner_gap_std, nc.partner_holds_share,
                                         "solid"),
                                        ("all", nc.gap_mean, nc.gap_std, nc.holds_share, "dash")):
        fig.add_trace(go.Scatter(
            x=x, y=mean, name=f"H-UCL − {H_SCL_NAMES[key]}", mode="lines+markers",
            line=dict(color=LOSS_COLORS["hard_supcon"], width=2.5, dash=dash), marker=dict(size=8),
            error_y=dict(type="data", array=std, visible=True, color=LOSS_COLORS["hard_supcon"]),
            customdata=np.c_[nc.sizes, share],
            hovertemplate="%{x} negatives (batch %{customdata[0]})<br>margin %{y:+.4f}"
                          "<br>bound holds in %{customdata[1]:.0%} of sub-batches<extra>" + H_SCL_NAMES[key]
                          + "</extra>",
        ))
    add_hlines(fig, [dict(y=0, line=dict(color=MUTED, width=1.5))])
    fig.update_xaxes(type="log", tickvals=x)
    return styled(fig, title=f"The margin against the number of negatives (β = {nc.beta:g})",
                  x="negatives per anchor (log scale)", y="H-UCL − H-SCL (nats)", height=height)
