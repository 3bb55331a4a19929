"""Figures and tables of docs/RESULTS.md, from sweep folders written by ``python -m hcl_core sweep``.

Usage (from the project folder; PNG export needs kaleido, which uses Debian's chromium)::

    pip install --target /tmp/kal kaleido     # kept out of the project's .venv
    BROWSER_PATH=/usr/bin/chromium PYTHONPATH=/tmp/kal \\
        .venv/bin/python docs/make_figures.py SWEEP_DIR [SWEEP_DIR ...] --out docs/img

For each sweep it writes ``<sweep>-<metric>.png`` (accuracy against beta), and for the first
sweep the theory figures of its seed-0 runs of H-SCL (beta = 1) and UCL; on stdout it prints,
as Markdown, the theory verdicts of every run of every sweep (last snapshot, each run's tau).
``--extra DIR`` adds the runs of another sweep (e.g. more betas) to the first one's figures and
table. Without kaleido it writes ``.html`` files instead.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hcl_core.plots.sweep import beta_curve_figure  # noqa: E402
from hcl_core.plots.theory import bound_figure, gap_figure  # noqa: E402
from hcl_core.registry import LOSSES  # noqa: E402
from hcl_core.sweep import load_sweep, summarize  # noqa: E402
from hcl_core.theory import COARSE_BETAS, run_curves  # noqa: E402

METRICS = ("knn_acc", "linear_probe_acc", "few_shot_probe_acc")


def save(fig, path: Path, width: int = 820, height: int = 420) -> Path:
    """PNG through kaleido when it works, else a self-contained HTML file."""
    fig.update_layout(width=width, height=height)
    try:
        fig.write_image(path.with_suffix(".png"), width=width, height=height, scale=1)
        return path.with_suffix(".png")
    except Exception as e:  # kaleido missing or no browser
        print(f"PNG export failed ({type(e).__name__}: {e}); writing HTML", file=sys.stderr)
        fig.write_html(path.with_suffix(".html"), include_plotlyjs="cdn")
        return path.with_suffix(".html")


def theory_table(runs) -> str:
    """Per (loss, beta): in how many seeds H-SCL <= H-UCL holds at each coarse beta, the mean margin at
    beta = 1, in how many UCL <= H-SCL(1), and the mean positive gap (partner minus other same-class
    similarity, in units of 1/tau)."""
    verdicts: dict[tuple, list] = defaultdict(list)
    for r in runs:
        if r.state != "finished" or not r.snapshot_epochs():
            continue
        c = run_curves(r, betas=COARSE_BETAS, diagnostics=False)
        key = (r.config.loss, r.config.beta if LOSSES[r.config.loss].tilts else None)
        verdicts[key].append(c)
    head = ["trained with", "β", *(f"holds at β={b:g}" for b in COARSE_BETAS), "H-UCL − H-SCL at β=1",
            "UCL ≤ H-SCL(β=1)", "partner − same-class s"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    i1 = COARSE_BETAS.index(1.0)
    order = list(LOSSES)
    for (loss, beta), cs in sorted(verdicts.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1] or 0.0)):
        n = len(cs)
        cells = [LOSSES[loss].label, "–" if beta is None else f"{beta:g}"]
        cells += [f"{sum(bool(c.holds[k]) for c in cs)}/{n}" for k in range(len(COARSE_BETAS))]
        gaps = [c.gap[i1] for c in cs]
        cells.append(f"{sum(gaps) / n:+.3f}")
        cells.append(f"{sum(bool(c.ucl_below_h_scl[i1]) for c in cs)}/{n}")
        cells.append(f"{sum(c.positive_gap for c in cs) / n:+.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pick(runs, loss: str, beta: float | None, seed: int = 0):
    for r in runs:
        if r.config.loss == loss and r.config.seed == seed and (beta is None or r.config.beta == beta):
            return r
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweeps", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs/img"))
    ap.add_argument("--extra", type=Path, action="append", default=[],
                    help="a sweep folder whose runs join the first sweep's (more betas, more seeds)")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    for k, folder in enumerate(a.sweeps):
        runs, rows = load_sweep(folder)
        if k == 0 and a.extra:
            runs += [r for extra in a.extra for r in load_sweep(extra)[0]]
            rows = summarize(runs)
        for metric in METRICS:
            print("wrote", save(beta_curve_figure(rows, metric), a.out / f"{folder.name}-{metric}"), file=sys.stderr)
        print(f"\n### Theory verdicts: {folder.name}\n\n{theory_table(runs)}\n")
        if k:
            continue
        for loss, beta in (("hard_supcon", 1.0), ("info_nce", None)):
            run = pick(runs, loss, beta)
            if run is None:
                continue
            c = run_curves(run)
            name = f"{folder.name}-theory-{loss}"
            title = f"{LOSSES[loss].label}{f', β = {beta:g}' if beta is not None else ''}, seed 0: last snapshot"
            print("wrote", save(bound_figure(c, title=title), a.out / name), file=sys.stderr)
            by_epoch = {e: run_curves(run, e, betas=COARSE_BETAS, diagnostics=False) for e in run.snapshot_epochs()}
            print("wrote", save(gap_figure(by_epoch), a.out / f"{name}-gap", height=340), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
