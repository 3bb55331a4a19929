"""Tiny real runs for the Negatives and Compare page tests, trained once per test process.

Not a conftest: a plain module with a cached function, so several test modules share the same
three runs (SimCLR, HCL β=1, H-SCL β=1, seed 0) without training them again. Each run: digits,
200 training samples, 2 epochs, snapshots at epochs 0 and 2 of 100 test samples (so the
two-view batch is 100 samples: 200 anchors, 198 candidate negatives each). About 1.5 s a run.
"""

from __future__ import annotations

import atexit
import base64
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import streamlit as st

from hcl_core.config import RunConfig
from hcl_core.train import train

TINY = dict(epochs=2, snapshot_every=2, max_train=200, eval_size=100, threads=1, seed=0, beta=1.0)
LOSSES = ("info_nce", "hcl", "hard_supcon")  # trained in this order: hard_supcon is the newest


@functools.cache
def tiny_runs() -> dict[str, Path]:
    """``{loss: run folder}`` of three finished runs in a temporary folder (removed at exit)."""
    root = Path(tempfile.mkdtemp(prefix="hcl_page_runs_"))
    atexit.register(shutil.rmtree, root, True)
    return {loss: train(RunConfig(loss=loss, **TINY), root=root).run_dir for loss in LOSSES}


def copy_runs(dest: Path, losses=LOSSES) -> dict[str, Path]:
    """Copies of the tiny runs of ``losses`` under ``dest`` (a models folder a test may change)."""
    runs = tiny_runs()
    return {loss: Path(shutil.copytree(runs[loss], dest / runs[loss].name)) for loss in losses}


def clear_caches() -> None:
    st.cache_data.clear()
    st.cache_resource.clear()


def values(v) -> list:
    """A plotly array from a chart spec: a plain list, or plotly's typed array ``{"dtype", "bdata"}``."""
    if isinstance(v, dict):
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).tolist()
    return list(v)
