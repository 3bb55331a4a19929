"""The Negatives page's figures: three views of what each loss does with each negative, and β curves.

Inputs come from :mod:`hcl_core.analysis.negatives` (binned :class:`NegativeStats`, β
:class:`SweepCurves`); nothing is computed here. Every axis is fixed by the batch size alone,
never by β: moving the preview β changes the bars of the tilted losses and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from ..analysis.negatives import LOG_FLOOR, VIEWS, NegativeStats, SweepCurves
from ..registry import LOSSES
from . import ACCENT, LOSS_COLORS, MUTED, RIGHT_LEGEND, styled

__all__ = [
    "OTHER_COLOR",
    "SAME_COLOR",
    "VIEW_AXIS",
    "VIEW_TITLE",
    "beta_sweep_figure",
    "negatives_figure",
    "short_label",
    "uses_beta",
]

OTHER_COLOR = "#0072B2"  # true negatives (another class)
SAME_COLOR = ACCENT  # false negatives (the anchor's class)
PULL_TINT = "rgba(213, 94, 0, 0.07)"
PUSH_TINT = "rgba(0, 114, 178, 0.06)"

#: Each view's name and formula, for titles and tabs.
VIEW_TITLE = {
    "importance": "Importance weight ω (the papers' hardness)",
    "share": "Share of the negative term",
    "gradient": "Gradient ∂L/∂s: pushed away or pulled closer",
}
#: Each view's x axis, with the formula it plots.
VIEW_AXIS = {
    "importance": "ω_ik = e^(β·s_ik) / mean_k e^(β·s_ik)   (log scale; 1 = an average negative)",
    "share": "n · e^((1+β)·s_ik) / Σ_k e^((1+β)·s_ik)   (log scale; 1 = the uniform share 1/n)",
    "gradient": "2N·n·∂L/∂s_ik   (signed log scale: left pulls k closer, right pushes it away)",
}
_Y_RANGE = [-2.0, 2.0]  # log10 of 0.01 % .. 100 %: the same for every β, loss and view
_DASH = {"hcl": "solid", "h_ucl": "dot", "hard_supcon": "solid", "info_nce": "dash", "dcl": "dashdot",
         "supcon": "longdash"}
_NEFF_TICKS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def uses_beta(loss: str) -> bool:
    return LOSSES[loss].tilts


def short_label(loss: str) -> str:
    """``"HCL"`` for ``"HCL (hard negatives)"``: the label without its parenthesis."""
    return LOSSES[loss].short if loss in LOSSES else loss


def _decade(d: int) -> str:
    """``10**d`` as tick text: 0.01, 0.1, 1, 10, 100, then powers (``10⁻³``, ``10⁴``)."""
    if -2 <= d <= 3:
        return f"{10.0 ** d:g}"
    return "10" + str(d).translate(_SUPERSCRIPT)


def _ticks(view: str, edges: np.ndarray) -> tuple[list[float], list[str]]:
    if view != "gradient":
        decades = range(math.ceil(edges[0]), math.floor(edges[-1]) + 1)
        return [float(d) for d in decades], [_decade(d) for d in decades]
    top = int(math.floor(edges[-1] + LOG_FLOOR))
    vals, text = [], []
    for d in range(int(LOG_FLOOR), top + 1, 2 if top - LOG_FLOOR > 5 else 1):
        x = d - LOG_FLOOR
        vals += [-x, x] if x else [0.0]
        text += ["−" + _decade(d), _decade(d)] if x else ["±" + _decade(d)]  # the centre: |∂L/∂s| at the floor
    order = np.argsort(vals)
    return [float(vals[k]) for k in order], [text[k] for k in order]


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


def _pct(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{100 * x:.0f} %" if x >= 0.1 or x == 0 else f"{100 * x:.1f} %"


def panel_title(s: NegativeStats, view: str) -> str:
    """Loss, β and the view's one number: eff. negatives, same-class share, or the fraction pulled."""
    beta = f" · β={s.beta:g}" if uses_beta(s.loss) else ""
    detach = " · detached" if s.detach else ""
    if view == "importance":
        same = f"same-class mean ω {s.same_importance:.2g}" if math.isfinite(s.same_importance) else \
            "same class: not negatives"
        line = f"{same} · eff. negatives {s.n_eff:.0f}"
    elif view == "share":
        line = f"same-class share {100 * s.same_mass:.1f} %"
    else:
        line = f"pulled closer: {_pct(s.pulled)} of true negatives"
        if math.isfinite(s.pulled_same):
            line += f", {_pct(s.pulled_same)} same-class"
    return f"<b>{short_label(s.loss)}</b>{beta}{detach}<br><span style='font-size:12px'>{line}</span>"


def _hidden_note(s: NegativeStats, view: str) -> str:
    """What the panel does not draw: values under the axis and exact zeros, as % of its pairs."""
    groups = s.views[view].values()
    total = sum(h.total for h in groups)
    below, zero = sum(h.below for h in groups), sum(h.zero for h in groups)
    def share(count: int) -> str:
        return "< 0.1 %" if count / total < 0.001 else f"{100 * count / total:.1f} %"

    parts = []
    if below:
        parts.append(f"{share(below)} below {'±' if view == 'gradient' else ''}{_decade(int(LOG_FLOOR))}")
    if zero:
        parts.append(f"{share(zero)} exactly 0")
    return "not drawn: " + ", ".join(parts) if parts else ""


def negatives_figure(stats: Sequence[NegativeStats], view: str, *, cols: int = 3, panel_height: int = 250) -> go.Figure:
    """Small multiples, one panel per loss: the histogram of one view, split into other-class and
    same-class candidates.

    Bars are the percentage of their group's (anchor, candidate) pairs on a log axis (0.01 % to
    100 %), so the few same-class pairs (about 1 in 10 on 10 classes) compare in shape with the
    rest and a single bar of 100 % (uniform weights) stays on the same scale as a spread. Values
    under ``10^LOG_FLOOR`` and exact zeros are counted in a note, not drawn. For the gradient the
    left half (tinted) pulls the candidate closer, the right half pushes it away.
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    if not stats:
        raise ValueError("need at least one loss to plot")
    cols = min(cols, len(stats))
    rows = math.ceil(len(stats) / cols)
    axes, notes = _grid(len(stats), cols, [panel_title(s, view) for s in stats], hspace=0.05,
                        vspace=0.3 / rows + 0.06)
    traces, shapes, legend_done = [], [], set()
    for i, s in enumerate(stats):
        a = _axis(i)
        groups = s.views[view]
        edges = groups["other"].edges
        centres = (edges[:-1] + edges[1:]) / 2
        for group, name, color in (("other", "other class (true negatives)", OTHER_COLOR),
                                   ("same", "same class (false negatives)", SAME_COLOR)):
            h = groups[group]
            if h.total == 0 or not h.counts.any():
                continue
            pct = 100.0 * h.counts / h.total
            keep = pct > 0
            traces.append(dict(
                type="bar", x=centres[keep], y=pct[keep], width=edges[1] - edges[0], name=name, legendgroup=name,
                showlegend=name not in legend_done, marker=dict(color=color, line=dict(width=0)), opacity=0.65,
                xaxis=f"x{a}", yaxis=f"y{a}", customdata=h.counts[keep],
                hovertemplate="%{y:.2g} % of pairs (%{customdata:,})<extra>" + name + "</extra>",
            ))
            legend_done.add(name)
        if view == "gradient":
            shapes += [dict(type="rect", xref=f"x{a}", yref=f"y{a} domain", x0=edges[0], x1=0, y0=0, y1=1,
                            fillcolor=PULL_TINT, line_width=0, layer="below"),
                       dict(type="rect", xref=f"x{a}", yref=f"y{a} domain", x0=0, x1=edges[-1], y0=0, y1=1,
                            fillcolor=PUSH_TINT, line_width=0, layer="below"),
                       _vline(i, 0.0, color="#444444", dash="solid", width=1)]
            notes += [_note(i, "← pulled closer", x=0.01, y=0.99, xanchor="left", yanchor="top", color=SAME_COLOR),
                      _note(i, "pushed away →", x=0.99, y=0.99, xanchor="right", yanchor="top", color=OTHER_COLOR)]
        else:
            shapes.append(_vline(i, 0.0))  # 1: an average negative / the uniform share
        if groups["same"].total == 0 and view != "gradient" and s.views["gradient"]["same"].total:
            notes.append(_note(i, "same class:<br>not negatives<br>(positives)", x=0.99, y=0.97, xanchor="right",
                               yanchor="top", color=SAME_COLOR))
        hidden = _hidden_note(s, view)
        if hidden:
            notes.append(_note(i, hidden, x=0.99 if view != "gradient" else 0.5, y=0.62 if view != "gradient" else 0.86,
                               xanchor="right" if view != "gradient" else "center", yanchor="top"))
        tickvals, ticktext = _ticks(view, edges)
        axes[f"xaxis{a}"].update(tickvals=tickvals, ticktext=ticktext, tickangle=0, range=[edges[0], edges[-1]])
        axes[f"yaxis{a}"].update(type="log", range=_Y_RANGE, tickvals=[0.01, 0.1, 1, 10, 100],
                                 ticktext=["0.01 %", "0.1 %", "1 %", "10 %", "100 %"])
        if i // cols == rows - 1 or i + cols >= len(stats):  # the lowest panel of its column
            axes[f"xaxis{a}"]["title"] = dict(text=VIEW_AXIS[view] if cols == 1 else _short_axis(view),
                                              font=dict(size=12))
        if i % cols == 0:
            axes[f"yaxis{a}"]["title"] = dict(text="% of pairs (log)")
    fig = go.Figure(data=traces, layout=dict(axes, annotations=notes, shapes=shapes), _validate=False)
    fig = styled(fig, height=rows * panel_height + 100)
    fig.update_layout(barmode="overlay", bargap=0, margin=dict(t=80))
    return fig


def _short_axis(view: str) -> str:
    """The axis title of a panel in a grid: the formula, shorter."""
    return {"importance": "ω = e^(β·s) / mean e^(β·s)  (log)", "share": "n·e^((1+β)s) / Σ e^((1+β)s)  (log)",
            "gradient": "2N·n·∂L/∂s  (signed log)"}[view]


def beta_sweep_figure(curves: Mapping[str, SweepCurves], *, preview_beta: float | None = None,
                      same_share: float | None = None, n_candidates: int | None = None,
                      height: int = 360) -> go.Figure:
    """Three panels against β, one line per loss: the same-class share of the negative term (in %),
    the effective number of negatives (log axis) and the fraction of true negatives pulled closer.
    Losses that ignore β are flat dashed lines.

    ``same_share`` / ``n_candidates``: dotted references, what uniform weights give.
    ``preview_beta``: a vertical marker in every panel.
    """
    axes, notes = _grid(3, 3, ["Same-class share (false negatives)", "Effective number of negatives",
                               "True negatives pulled closer"], hspace=0.08, vspace=0.0)
    for note in notes:
        note["font"] = dict(size=14)
    traces, shapes = [], []
    for i, (field, fmt) in enumerate((("same_mass", ".1%"), ("n_eff", ".1f"), ("pulled", ".1%"))):
        for loss, c in curves.items():
            flat = not uses_beta(loss)
            traces.append(dict(
                type="scatter", x=[float(b) for b in c.betas], y=[float(v) for v in getattr(c, field)], mode="lines",
                xaxis=f"x{_axis(i)}", yaxis=f"y{_axis(i)}", name=short_label(loss) + (" (no β)" if flat else ""),
                legendgroup=loss, showlegend=i == 0,
                line=dict(color=LOSS_COLORS.get(loss, MUTED), width=2 if flat else 3, dash=_DASH.get(loss, "solid")),
                hovertemplate="β=%{x:g}<br>%{y:" + fmt + "}<extra>" + short_label(loss) + "</extra>",
            ))
        axes[f"xaxis{_axis(i)}"]["title"] = dict(text="β (multiplies s = cos/τ)")
        if preview_beta is not None:
            x_max = max((float(c.betas[-1]) for c in curves.values()), default=1.0)
            shapes.append(_vline(i, float(preview_beta), color="#444444", dash="solid", width=1.2))
            notes.append(_note(i, f"preview β={preview_beta:g}", x=min(preview_beta / max(x_max, 1e-9), 1) + 0.01,
                               y=1.0, xanchor="left", yanchor="top", color="#444444"))
    if same_share is not None:
        shapes.append(_hline(0, same_share))
        notes.append(_note(0, f"uniform weights: {same_share:.1%}", x=1.0, y=same_share, xanchor="right",
                           yanchor="bottom") | dict(yref="y"))
    if n_candidates is not None:
        shapes.append(_hline(1, n_candidates))
        notes.append(_note(1, f"uniform: all {n_candidates}", x=1.0, y=math.log10(n_candidates), xanchor="right",
                           yanchor="top") | dict(yref="y2"))
    axes["yaxis"].update(title=dict(text="share of the negative term"), tickformat=".0%", rangemode="tozero")
    axes["yaxis2"].update(title=dict(text="effective negatives (log scale)"), type="log", tickvals=_NEFF_TICKS)
    axes["yaxis3"].update(title=dict(text="fraction with ∂L/∂s < 0"), tickformat=".0%", range=[0, 1.02])
    fig = go.Figure(data=traces, layout=dict(axes, annotations=notes, shapes=shapes), _validate=False)
    fig = styled(fig, height=height)
    fig.update_layout(legend=dict(RIGHT_LEGEND, x=1.02), margin=dict(t=40, r=10))
    return fig
