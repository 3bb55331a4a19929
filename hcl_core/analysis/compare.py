"""The Compare page's table: final metrics of several runs with the baselines they were measured against.

Pure data (rows of dicts, CSV text); :mod:`hcl_core.plots.compare` draws the figures.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import RunConfig
from ..registry import METRICS, PROBES, raw_name

__all__ = ["DEFAULT_LOSS_ORDER", "FINAL_METRICS", "TableEntry", "default_comparison", "metrics_table", "table_csv"]

#: The final metrics in the table, with their column headers (the registry's).
FINAL_METRICS = {key: m.header for key, m in METRICS.items() if key != "clamp_share"}
#: The probe accuracies, which have raw-input and random-encoder baselines.
PROBE_METRICS = PROBES


@dataclass(frozen=True)
class TableEntry:
    """One run of the table: its legend ``label``, ``run_id``, config, state, final ``metrics``
    (keys of :data:`FINAL_METRICS`, missing ones left blank) and ``baseline`` (``{"raw": {...},
    "random_init": {...}}`` of probe accuracies, as train.py records it)."""

    label: str
    run_id: str
    config: RunConfig
    state: str
    metrics: Mapping[str, Any]
    baseline: Mapping[str, Any] = field(default_factory=dict)


#: The order in which a default comparison takes losses: the papers' headline trio first.
DEFAULT_LOSS_ORDER = ("info_nce", "hcl", "hard_supcon", "supcon", "dcl", "h_ucl")


def default_comparison(runs: Sequence[Any], n: int = 3) -> list[Any]:
    """Up to ``n`` finished runs to compare when the user has chosen none (``runs`` newest first).

    One run per loss, in :data:`DEFAULT_LOSS_ORDER` (SimCLR vs HCL vs H-SCL when they exist),
    all of the newest finished run's data set and seed, so that the comparison is like for like;
    topped up with the newest other finished runs when that gives fewer than ``n``.
    """
    finished = [r for r in runs if r.state == "finished"]
    if not finished:
        return []
    ref = finished[0].config
    alike = [r for r in finished if (r.config.dataset, r.config.seed) == (ref.dataset, ref.seed)]
    picks = [next(r for r in alike if r.config.loss == loss) for loss in DEFAULT_LOSS_ORDER
             if any(r.config.loss == loss for r in alike)][:n]
    picks += [r for r in finished if r not in picks][: n - len(picks)]
    return picks


def _number(v: Any) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def metrics_table(entries: Sequence[TableEntry]) -> list[dict[str, Any]]:
    """Rows for ``st.dataframe`` / CSV: one per run, then the baselines the runs were measured against.

    Columns: ``run`` (the legend label), the :data:`FINAL_METRICS` headers, ``train s``, then the
    settings (``kind`` run/baseline, loss, β, τ, τ⁺, seed, dataset, evaluated epoch, state, run id).

    Baselines: "raw pixels" or "raw inputs" (a probe on the flattened inputs) once per data set, and "random-init
    encoder" (the same probes at epoch 0, before any training) once per distinct set of values
    (runs with the same seed and encoder share it). Baseline rows leave the run-only columns blank.
    """
    rows: list[dict[str, Any]] = []
    baselines: dict[tuple, dict[str, Any]] = {}
    for e in entries:
        c = e.config
        row: dict[str, Any] = {"run": e.label}
        row.update({header: _number(e.metrics.get(key)) for key, header in FINAL_METRICS.items()})
        row.update({
            "kind": "run", "loss": c.loss, "β": c.beta if "beta" in c.loss_params else None, "τ": c.tau,
            "τ⁺": c.tau_plus if "tau_plus" in c.loss_params else None, "seed": c.seed, "dataset": c.dataset,
            "epoch": e.metrics.get("evaluated_epoch", e.metrics.get("epoch")), "state": e.state,
            "train s": _number(e.metrics.get("seconds")),
        })
        row["run id"] = e.run_id
        rows.append(row)
        for kind, name in (("raw", f"{raw_name(c.dataset)} ({c.dataset})"),
                           ("random_init", f"random-init encoder ({c.dataset})")):
            values = {k: _number(v) for k, v in (e.baseline.get(kind) or {}).items() if k in PROBE_METRICS}
            if not any(v is not None for v in values.values()):
                continue
            key = (kind, c.dataset, tuple(sorted((k, round(v, 6)) for k, v in values.items() if v is not None)))
            if key not in baselines:
                baselines[key] = {"run": name, "kind": "baseline", "dataset": c.dataset, "seed": c.seed,
                                  "encoder": c.encoder, "values": values}
    random_names = [b["run"] for b in baselines.values() if b["run"].startswith("random")]
    for b in baselines.values():
        name = b["run"]
        if random_names.count(name) > 1:  # several random encoders of one data set: say which
            name = f"random-init encoder ({b['dataset']}, {b['encoder']}, seed {b['seed']})"
        row = {"run": name, **{FINAL_METRICS[k]: b["values"].get(k) for k in PROBE_METRICS},
               "kind": "baseline", "dataset": b["dataset"]}
        rows.append(row)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return [{k: r.get(k) for k in columns} for r in rows]


def table_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """The table as CSV text (UTF-8; empty cells for missing values), header first."""
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    return buf.getvalue()
