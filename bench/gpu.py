"""``python -m bench --gpu [--quick]``: the CUDA path, measured.

On a machine without CUDA it prints one line and exits with code 2. Otherwise, on the first
GPU, and printing one JSON line at the end like the CPU benchmark:

* ``gpu_loss_vs_cpu``: every registered loss and its gradients on CUDA against the CPU on the
  same inputs (largest relative differences);
* ``gpu_loss_ratio_vs_matmul_floor``: each loss's forward + backward against the two matrix
  products no loss can avoid (:mod:`bench.loss_floor`), per batch size, and
  ``gpu_loss_peak_memory_matrices``: the peak memory a loss allocates beyond its inputs
  (``torch.cuda.max_memory_allocated``), in ``(2N)²`` float32 matrices;
* ``gpu_train_ratio_ours_vs_bare``: a CIFAR-10-shaped ResNet-18 epoch (:mod:`bench.gpu_train`;
  the real files when ``HCL_CIFAR10_ROOT`` names them, else random data of the real shape) with
  :func:`hcl_core.train.train` against a bare loop on the same GPU;
* ``gpu_bf16_speedup`` and ``gpu_bf16_loss_values``: the bare loop under bf16 autocast (also with
  the loss kept in float32), and what autocast does to every loss's value on the same outputs
  and to the loss curve of the first steps;
* ``gpu_transfers``: batches copied from pageable or pinned memory, or indexed from a copy
  resident on the GPU (what ``train`` does), per epoch;
* ``gpu_worker``: a job started with ``device=cuda`` through :class:`hcl_core.jobs.JobManager`
  (the app's worker process) trains to the end on the GPU.

Sizes fit a few minutes on one H200; ``--quick`` uses a fifth of the training set, fewer sizes
and repetitions.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.timing import r3

__all__ = ["NO_CUDA", "loss_memory", "losses_vs_cpu", "main", "worker_on_cuda"]

NO_CUDA = ("bench --gpu: no CUDA GPU here (torch.cuda.is_available() is False); run it on a machine with an "
           "NVIDIA GPU and a CUDA build of torch, or run `python -m bench` for the CPU benchmark")

MODES = {
    "quick": {"floor_sizes": (1024, 4096), "floor_reps": 5, "memory_sizes": (4096,), "max_train": 10_000,
              "epochs": 2, "curve_steps": 30, "worker_epochs": 2},
    "full": {"floor_sizes": (1024, 4096, 8192), "floor_reps": 15, "memory_sizes": (4096, 8192), "max_train": None,
             "epochs": 2, "curve_steps": 100, "worker_epochs": 5},
}


def losses_vs_cpu(device: str = "cuda", *, n: int = 512, d: int = 128) -> dict[str, dict[str, float]]:
    """Per registered loss: largest relative difference of the value and of the gradients, device vs CPU."""
    import torch

    from bench.loss_floor import PARAMS, inputs
    from hcl_core.losses import compute_loss
    from hcl_core.registry import LOSSES

    out = {}
    for name in LOSSES:
        values, grads = [], []
        for dev in ("cpu", device):
            z1, z2, labels = inputs(n, d, seed=7, device=dev)
            loss = compute_loss(name, z1, z2, labels, **PARAMS)
            loss.backward()
            values.append(loss.detach().cpu())
            grads.append(torch.cat([z1.grad, z2.grad]).cpu())
        scale = grads[0].abs().max().clamp_min(1e-30)
        out[name] = {"value_rel_diff": float((values[1] - values[0]).abs() / values[0].abs().clamp_min(1e-30)),
                     "grad_max_diff_rel_to_max": float((grads[1] - grads[0]).abs().max() / scale)}
    return out


def loss_memory(n: int, *, d: int = 128, device: str = "cuda") -> dict[str, float]:
    """Peak bytes allocated by one forward + backward beyond the inputs, in (2N)² float32 matrices."""
    import torch

    from bench.loss_floor import floor_step, inputs, loss_step
    from hcl_core.registry import LOSSES

    out = {}
    for name in ("matmul_floor", *LOSSES):
        z1, z2, labels = inputs(n, d, device=device)
        step = floor_step(z1, z2) if name == "matmul_floor" else loss_step(name, z1, z2, labels)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        out[name] = round((torch.cuda.max_memory_allocated() - before) / ((2 * n) ** 2 * 4), 2)
        del z1, z2, labels, step
        torch.cuda.empty_cache()
    return out


def worker_on_cuda(root: Path, *, epochs: int, timeout: float = 600.0) -> dict[str, Any]:
    """A digits job with ``device=cuda`` through the app's :class:`~hcl_core.jobs.JobManager`: its end
    state, the device its start event names, its steps and throughput."""
    from hcl_core.config import RunConfig
    from hcl_core.jobs import JobManager
    from hcl_core.runlog import read_log

    manager = JobManager(root, warm=False)
    try:
        t0 = time.perf_counter()
        job = manager.start(RunConfig(device="cuda", epochs=epochs, threads=2))
        if not job.wait(timeout):
            raise TimeoutError(f"the CUDA job did not end within {timeout:.0f} s")
        s = job.view()
        events = read_log(Path(s.run_dir) / "metrics.jsonl")[0] if s.run_dir else []
    finally:
        manager.shutdown()
    start = next((e for e in events if e.get("type") == "start"), {})
    return {"state": s.state, "message": s.message, "device": start.get("device"), "steps": s.step,
            "steps_per_s": s.steps_per_s, "seconds": time.perf_counter() - t0}


def _data_root(tmp: Path, max_train: int | None, log) -> tuple[Path, str]:
    real = os.environ.get("HCL_CIFAR10_ROOT")
    if real:
        return Path(real), f"CIFAR-10 from {real}"
    from bench.gpu_train import fake_cifar10

    t0 = time.perf_counter()
    fake_cifar10(tmp)
    log(f"  no HCL_CIFAR10_ROOT: random CIFAR-10 files of the real shape written in {time.perf_counter() - t0:.1f} s")
    return tmp, "random data in CIFAR-10's files and shapes (50,000 x 3 x 32 x 32)" + (
        f", first {max_train} training images" if max_train else "")


def run(*, quick: bool, log) -> dict[str, Any]:
    import torch

    from bench import gpu_train, loss_floor

    p = MODES["quick" if quick else "full"]
    props = torch.cuda.get_device_properties(0)
    out: dict[str, Any] = {"mode": "gpu-quick" if quick else "gpu", "machine": {
        "gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1), "cpus": os.cpu_count(),
        "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version()}}
    log(f"bench --gpu on {props.name}, torch {torch.__version__}, CUDA {torch.version.cuda}")

    t0 = time.perf_counter()
    out["gpu_loss_vs_cpu"] = losses_vs_cpu()
    details = loss_floor.run(p["floor_sizes"], reps=p["floor_reps"], warmup=2, device="cuda")
    out.update({f"gpu_{k}": v for k, v in loss_floor.summary(details).items()})
    out["gpu_loss_floor_details"] = details
    out["gpu_loss_peak_memory_matrices"] = {str(n): loss_memory(n) for n in p["memory_sizes"]}
    log(f"  losses: {time.perf_counter() - t0:.1f} s; ratio vs matmul floor {out['gpu_loss_ratio_vs_matmul_floor']}")

    with tempfile.TemporaryDirectory(prefix="hcl-bench-gpu-") as tmp:
        tmp = Path(tmp)
        root, data = _data_root(tmp / "data", p["max_train"], log)
        out["gpu_train_data"] = data
        config = gpu_train.cifar_config(root, device="cuda", epochs=p["epochs"], max_train=p["max_train"])
        t0 = time.perf_counter()
        ours = gpu_train.ours(config, tmp / "models")
        bare = gpu_train.bare_loop(config)
        bf16 = gpu_train.bare_loop(config, autocast=torch.bfloat16)
        bf16_fp32_loss = gpu_train.bare_loop(config, autocast=torch.bfloat16, loss_in_fp32=True)
        out["gpu_train"] = {"ours": ours, "bare": bare, "bare_bf16": bf16, "bare_bf16_loss_fp32": bf16_fp32_loss}
        out["gpu_train_ratio_ours_vs_bare"] = r3(ours["steps_per_s"] / bare["steps_per_s"])
        out["gpu_bf16_speedup"] = r3(bf16["steps_per_s"] / bare["steps_per_s"])
        out["gpu_bf16_loss_fp32_speedup"] = r3(bf16_fp32_loss["steps_per_s"] / bare["steps_per_s"])
        log(f"  ResNet-18 epoch ({time.perf_counter() - t0:.1f} s): ours {ours['steps_per_s']:.2f} steps/s, bare "
            f"{bare['steps_per_s']:.2f}, bf16 {bf16['steps_per_s']:.2f}, bf16 with fp32 loss "
            f"{bf16_fp32_loss['steps_per_s']:.2f}")

        t0 = time.perf_counter()
        curves = {name: gpu_train.bare_loop(config, steps=p["curve_steps"], record=True, **kw)["losses"]
                  for name, kw in (("float32", {}), ("bf16", {"autocast": torch.bfloat16}),
                                   ("bf16_loss_fp32", {"autocast": torch.bfloat16, "loss_in_fp32": True}))}
        tail = max(1, p["curve_steps"] // 5)
        out["gpu_bf16_loss_values"] = {
            "per_loss_same_outputs": gpu_train.autocast_loss_values(config),
            "curve_steps": p["curve_steps"],
            "curve_mean_last": {k: r3(sum(v[-tail:]) / tail) for k, v in curves.items()},
            "curve_mean_abs_diff_vs_float32": {k: r3(sum(abs(a - b) for a, b in zip(v, curves["float32"],
                                                                                      strict=True)) / len(v))
                                               for k, v in curves.items() if k != "float32"},
        }
        out["gpu_transfers"] = gpu_train.transfers(config)
        log(f"  bf16 loss values and transfers: {time.perf_counter() - t0:.1f} s")

        t0 = time.perf_counter()
        out["gpu_worker"] = worker_on_cuda(tmp / "worker-models", epochs=p["worker_epochs"])
        log(f"  the app's worker on CUDA: {out['gpu_worker']['state']} on {out['gpu_worker']['device']} "
            f"({time.perf_counter() - t0:.1f} s)")
    return out


def main(*, quick: bool = False, log=print) -> int:
    import torch

    if not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    out = run(quick=quick, log=log)
    out["seconds"] = r3(time.perf_counter() - t0)
    print(json.dumps(out, default=float))
    return 0 if out["gpu_worker"]["state"] == "finished" and out["gpu_worker"]["device"] == "cuda" else 1
