"""Each loss against its physical floor: the matrix products no contrastive loss can avoid.

Every loss here reads all pairwise similarities of the ``2N`` views, so forward and backward
must at least compute the similarity matrix ``S = Z Zᵀ`` (``Z = [z1; z2]``, ``(2N, d)``: one
``(2N, d) x (d, 2N)`` product) and, given the incoming gradient ``G = ∂L/∂S`` ``(2N, 2N)``, its
gradient ``∂L/∂Z = G Z + Gᵀ Z`` (two ``(2N, 2N) x (2N, d)`` products). :func:`floor_step` is
exactly that, ``(Z @ Z.T).backward(G)``, on the same inputs; ``loss_ratio_vs_matmul_floor`` is
the loss's forward + backward time over it (medians of interleaved repetitions).

The peak extra memory of a loss (:func:`peak_memory`) is measured in a fresh process per loss
(``python -m bench.loss_floor memory LOSS N [D]``): the resident set size's high-water mark
(``VmHWM``, reset through ``/proc/self/clear_refs`` right before the call) minus the resident
size before it, around one forward + backward with the inputs already allocated; reported in
units of one ``(2N)²`` float32 matrix (``16 N²`` bytes). The process runs with glibc's mmap
threshold fixed at 128 KiB, so every tensor larger than that is mapped on allocation and given
back to the operating system when freed: the high-water mark is the peak of the tensors alive
together, at any N (without it, N = 1024 varied by ±1.5 matrices from run to run).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from .timing import interleaved, median, r3, ratio

__all__ = ["PARAMS", "floor_step", "inputs", "loss_step", "peak_memory", "run", "summary"]

ROOT = Path(__file__).resolve().parent.parent
#: The hyper-parameters of the timing (the app's defaults).
PARAMS = {"tau": 0.5, "beta": 1.0, "tau_plus": 0.1}
NUM_CLASSES = 10


def inputs(n: int, d: int, *, seed: int = 0, device: str | torch.device = "cpu", dtype=torch.float32
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two views ``(n, d)`` (leaf tensors that need gradients) and labels ``(n,)`` of 10 classes."""
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g, dtype=dtype).to(device).requires_grad_(True)
    z2 = torch.randn(n, d, generator=g, dtype=dtype).to(device).requires_grad_(True)
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=g).to(device)
    return z1, z2, labels


def loss_step(name: str, z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor, params: dict = PARAMS):
    """One forward + backward of the loss ``name`` (through :func:`hcl_core.losses.compute_loss`)."""
    from hcl_core.losses import compute_loss

    def step():
        z1.grad = z2.grad = None
        loss = compute_loss(name, z1, z2, labels, **params)
        loss.backward()
        return loss

    return step


def floor_step(z1: torch.Tensor, z2: torch.Tensor, *, seed: int = 1):
    """``(Z @ Z.T).backward(G)`` on ``Z = [z1; z2]`` (a detached copy) and a fixed random ``G``: the
    one forward and two backward products of :mod:`this module <bench.loss_floor>`."""
    z = torch.cat([z1, z2]).detach().requires_grad_(True)
    g = torch.Generator().manual_seed(seed)
    grad = torch.randn(len(z), len(z), generator=g, dtype=z.dtype).to(z.device)

    def step():
        z.grad = None
        (z @ z.T).backward(grad)
        return z.grad

    return step


def _sync(step, device: torch.device):
    if device.type != "cuda":
        return step

    def synced():
        out = step()
        torch.cuda.synchronize(device)
        return out

    return synced


def run(sizes=(256, 1024, 4096), *, d: int = 128, reps: int = 15, warmup: int = 2, losses=None,
        device: str | torch.device = "cpu") -> dict[str, dict[str, Any]]:
    """Per loss and N: median seconds of the loss's forward + backward and of the floor, their ratio."""
    from hcl_core.registry import LOSSES

    device = torch.device(device)
    out: dict[str, dict[str, Any]] = {}
    for n in sizes:
        z1, z2, labels = inputs(n, d, seed=n, device=device)
        floor = _sync(floor_step(z1, z2), device)
        for name in losses or LOSSES:
            times = interleaved({"loss": _sync(loss_step(name, z1, z2, labels), device), "floor": floor},
                                reps=reps, warmup=warmup)
            m_loss, m_floor = median(times["loss"]), median(times["floor"])
            out[f"{name}/N={n}"] = {"loss_ms": r3(m_loss * 1e3), "floor_ms": r3(m_floor * 1e3),
                                    "ratio": r3(ratio(m_loss, m_floor))}
    return out


def summary(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``loss_ratio_vs_matmul_floor``: {loss: {N: ratio}}, and the worst ratio."""
    by_loss: dict[str, dict[str, float]] = {}
    for key, r in results.items():
        name, n = key.split("/N=")
        by_loss.setdefault(name, {})[n] = r["ratio"]
    return {"loss_ratio_vs_matmul_floor": by_loss,
            "loss_ratio_vs_matmul_floor_max": max((r["ratio"] for r in results.values()), default=math.nan)}


# --------------------------------------------------------------------------------------------
# peak memory, one fresh process per loss
# --------------------------------------------------------------------------------------------


def _status_kib() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


def measure_memory_here(name: str, n: int, d: int = 128) -> dict[str, Any]:
    """In this process: the peak extra resident memory of one forward + backward (see the module docstring).

    ``name`` is a loss of the registry, or ``"matmul_floor"`` for :func:`floor_step`.
    """
    torch.set_num_threads(int(os.environ.get("HCL_BENCH_THREADS", torch.get_num_threads())))
    small = inputs(8, d)  # lazy initialisation (kernels, thread pool) is not the loss's memory
    (floor_step(*small[:2]) if name == "matmul_floor" else loss_step(name, *small))()
    z1, z2, labels = inputs(n, d)
    step = floor_step(z1, z2) if name == "matmul_floor" else loss_step(name, z1, z2, labels)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current VmRSS
    before = _status_kib()
    step()
    after = _status_kib()
    extra = (after["VmHWM"] - before["VmRSS"]) * 1024
    unit = (2 * n) ** 2 * 4
    return {"loss": name, "N": n, "d": d, "peak_extra_bytes": extra, "matrix_bytes": unit,
            "peak_extra_matrices": round(extra / unit, 2), "method": "VmHWM after clear_refs minus VmRSS"}


def peak_memory(name: str, n: int, d: int = 128, *, threads: int | None = None, timeout: float = 600.0
                ) -> dict[str, Any]:
    """:func:`measure_memory_here` in a fresh process (its allocations cannot be hidden by ours)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           # a fixed threshold: glibc otherwise raises it after the first large free, keeps later
           # blocks below 32 MB on its heap, and the high-water mark then depends on their order
           "MALLOC_MMAP_THRESHOLD_": "131072"}
    if threads:
        env["HCL_BENCH_THREADS"] = str(threads)
    proc = subprocess.run([sys.executable, "-m", "bench.loss_floor", "memory", name, str(n), str(d)], cwd=str(ROOT),
                          env=env, capture_output=True, text=True, timeout=timeout)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"memory of {name} at N={n} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 3 or argv[0] != "memory":
        print("usage: python -m bench.loss_floor memory LOSS N [D]", file=sys.stderr)
        return 2
    print(json.dumps(measure_memory_here(argv[1], int(argv[2]), int(argv[3]) if len(argv) > 3 else 128)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
