"""Two protocol details measured on trained runs: batch norm over one or two passes, and kNN's temperature.

* **Batch norm.** The published HCL and H-SCL code embeds the two views in two forward passes
  (``net(pos_1)``, ``net(pos_2)``), so batch norm normalises each view with its own batch
  statistics; SupContrast's code embeds both in one pass. :func:`view_pass_comparison` trains
  the same configurations both ways, seed by seed, and returns their summaries.
* **kNN temperature.** The published kNN evaluation weights the 200 neighbours' votes by
  ``exp(cos / τ)`` with the run's own τ. :func:`knn_temperatures` scores a trained run's frozen
  features with several vote temperatures on the exact split the training loop evaluates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import RunConfig
from ..evaluate import knn_accuracy
from ..export.encoder import load_encoder
from ..store import Run
from ..threads import limited_threads
from ..train import _probe_split, load_config_data, train

__all__ = ["SUMMARY_KEYS", "knn_temperatures", "run_features", "view_pass_comparison"]

#: The numbers compared between the two batch-norm protocols.
SUMMARY_KEYS = ("linear_probe_acc", "few_shot_probe_acc", "knn_acc", "alignment", "uniformity")


def view_pass_comparison(configs: Iterable[RunConfig], seeds: Sequence[int], root: str | Path) -> list[dict[str, Any]]:
    """Train every config at every seed with two forward passes (per-view batch norm) and with one.

    Returns one row per (config, seed, passes): ``{"loss", "beta", "seed", "passes", <SUMMARY_KEYS>}``;
    runs are written under ``root`` (``two-pass`` and ``one-pass`` subfolders).
    """
    rows = []
    for config in configs:
        for seed in seeds:
            for passes, separate in ((2, True), (1, False)):
                c = config.replace(seed=int(seed))
                result = train(c, root=Path(root) / f"{passes}-pass", separate_view_passes=separate)
                rows.append({"loss": c.loss, "beta": c.beta, "seed": int(seed), "passes": passes,
                             **{k: result.summary.get(k) for k in SUMMARY_KEYS}})
    return rows


def run_features(run: Run) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backbone features of a run's last checkpoint on the split its evaluations use:
    ``(train_features, train_labels, test_features, test_labels)``."""
    c = run.config
    ds = load_config_data(c)
    backbone = load_encoder(run)
    idx = _probe_split(ds)
    with torch.no_grad(), limited_threads():
        train_f = torch.cat([backbone(ds.train_x[idx][i : i + 1024]) for i in range(0, len(idx), 1024)])
        test_f = torch.cat([backbone(ds.test_x[i : i + 1024]) for i in range(0, len(ds.test_x), 1024)])
    return train_f.numpy(), ds.train_y[idx].numpy(), test_f.numpy(), ds.test_y.numpy()


def knn_temperatures(run: Run, temperatures: Sequence[float] = (0.5,), *, include_run_tau: bool = True
                     ) -> dict[float, float]:
    """kNN accuracy (k = 200) of a run's frozen features with each vote temperature (and the run's τ)."""
    temps = sorted({float(t) for t in temperatures} | ({float(run.config.tau)} if include_run_tau else set()))
    xtr, ytr, xte, yte = run_features(run)
    return {t: knn_accuracy(xtr, ytr, xte, yte, temperature=t) for t in temps}
