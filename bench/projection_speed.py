"""UMAP (cold: a fresh process, and warm) and PCA of 2000 x 64 points, as the Embeddings page does.

``python -m bench.projection_speed N WARM_REPS`` is the fresh process; it prints one JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def points(n: int = 2000, d: int = 64, seed: int = 0) -> np.ndarray:
    """``n`` points in 10 Gaussian clusters (like an encoder's features of 10 classes)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, d)).astype(np.float32)
    labels = rng.integers(0, 10, n)
    return centres[labels] + 0.6 * rng.normal(size=(n, d)).astype(np.float32)


def measure(n: int, warm_reps: int) -> dict:
    """In this process: the first UMAP (imports umap and compiles numba), warm fits, PCA."""
    t0 = time.perf_counter()
    from hcl_core.projection import pca_2d, umap_2d

    import_project = time.perf_counter() - t0
    x = points(n)
    t0 = time.perf_counter()
    umap_2d(x)  # seed 0, as the app: one thread
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(warm_reps):
        t0 = time.perf_counter()
        umap_2d(x)
        warm.append(time.perf_counter() - t0)
    pca = []
    for _ in range(20):
        t0 = time.perf_counter()
        pca_2d(x)
        pca.append(time.perf_counter() - t0)
    return {"umap_seconds_cold": cold, "umap_seconds_warm": float(np.median(warm)) if warm else None,
            "umap_warm_all": warm, "pca_seconds": float(np.median(pca)), "import_project_s": import_project,
            "points": n}


def start_cold_process(n: int = 2000, warm_reps: int = 2) -> tuple[subprocess.Popen, float]:
    """Start :func:`measure` in a fresh interpreter (so the first UMAP is really the first)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen([sys.executable, "-m", "bench.projection_speed", str(n), str(warm_reps)],
                            cwd=str(ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, time.perf_counter()


def finish_cold_process(started: tuple[subprocess.Popen, float], timeout: float = 300.0) -> dict:
    proc, t0 = started
    stdout, stderr = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"projection benchmark failed: {stderr[-3000:]}")
    out = json.loads(stdout.strip().splitlines()[-1])
    out["process_wall_s"] = time.perf_counter() - t0
    return out


def cold_process(n: int = 2000, warm_reps: int = 2, timeout: float = 300.0) -> dict:
    """:func:`measure` in a fresh interpreter, waited for."""
    return finish_cold_process(start_cold_process(n, warm_reps), timeout)


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]), int(sys.argv[2]))))
