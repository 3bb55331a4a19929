"""The CUDA path: every loss on the GPU equals the CPU, training runs there (our loop, the bare
loop of the GPU benchmark, bf16 autocast) and the app's worker trains on it.

Collected only where ``torch.cuda.is_available()`` (module-level ``__test__`` below): elsewhere
pytest collects nothing from this file, so a machine without a GPU neither runs nor skips these
tests (a skip would fail the suite, see ``conftest.py``). ``python -m bench --gpu`` measures the
same path.
"""

from __future__ import annotations

import math

import pytest
import torch

from bench import gpu, gpu_train, loss_floor
from hcl_core.config import RunConfig
from hcl_core.losses import compute_loss
from hcl_core.registry import LOSSES
from hcl_core.runlog import read_log
from hcl_core.train import train

__test__ = torch.cuda.is_available()

pytestmark = pytest.mark.timeout(600)


@pytest.mark.parametrize("name", list(LOSSES))
def test_every_loss_and_its_gradient_on_cuda_equal_the_cpu(name):
    values, grads = [], []
    for device in ("cpu", "cuda"):
        z1, z2, labels = loss_floor.inputs(300, 64, seed=3, device=device)
        loss = compute_loss(name, z1, z2, labels, tau=0.2, beta=2.0, tau_plus=0.1)
        loss.backward()
        values.append(loss.detach().cpu())
        grads.append(torch.cat([z1.grad, z2.grad]).cpu())
    torch.testing.assert_close(values[1], values[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-5 * float(grads[0].abs().max()))


def test_losses_vs_cpu_of_the_gpu_benchmark_agree():
    out = gpu.losses_vs_cpu("cuda", n=256, d=32)
    assert set(out) == set(LOSSES)
    assert all(v["value_rel_diff"] < 1e-4 and v["grad_max_diff_rel_to_max"] < 1e-3 for v in out.values()), out


def test_a_run_trains_on_cuda_and_says_so(tmp_path):
    events = []
    result = train(RunConfig(device="cuda", epochs=2, max_train=300, eval_size=100, threads=1),
                   callback=events.append, root=tmp_path)
    assert result.state == "finished", result.message
    start = next(e for e in events if e["type"] == "start")
    assert start["device"].startswith("cuda")
    steps = [e["loss"] for e in events if e["type"] == "step"]
    assert steps and all(math.isfinite(v) for v in steps)
    assert any(e["type"] == "start" for e in read_log(result.run_dir / "metrics.jsonl")[0])


@pytest.fixture(scope="module")
def tiny_cifar(tmp_path_factory):
    return gpu_train.fake_cifar10(tmp_path_factory.mktemp("cifar"), n_train=1000, n_test=200)


def test_a_resnet18_step_on_cuda_under_bf16_autocast_is_finite(tiny_cifar):
    config = gpu_train.cifar_config(tiny_cifar, device="cuda", epochs=1, batch_size=64)
    for kwargs in ({}, {"autocast": torch.bfloat16}, {"autocast": torch.bfloat16, "loss_in_fp32": True}):
        out = gpu_train.bare_loop(config, steps=3, record=True, **kwargs)
        assert len(out["losses"]) == 3 and all(math.isfinite(v) for v in out["losses"]), (kwargs, out)
    values = gpu_train.autocast_loss_values(config, batches=1)
    for name, v in values.items():
        assert math.isfinite(v["float32"]), name
        assert v["rel_diff_autocast"] < 0.05 and v["rel_diff_encoder_autocast_loss_fp32"] < 0.05, (name, v)


def test_our_loop_trains_resnet18_on_cuda(tiny_cifar, tmp_path):
    config = gpu_train.cifar_config(tiny_cifar, device="cuda", epochs=1, batch_size=64, eval_size=100)
    out = gpu_train.ours(config, tmp_path)
    assert out["device"].startswith("cuda") and out["steps_per_s"] > 0


def test_transfers_measure_every_path_on_cuda(tiny_cifar):
    out = gpu_train.transfers(gpu_train.cifar_config(tiny_cifar, device="cuda", epochs=1, batch_size=64), reps=1)
    assert out["bytes"] == 1000 * 3 * 32 * 32 * 4
    assert all(out[k] > 0 for k in ("epoch_pageable_s", "epoch_pinned_non_blocking_s", "epoch_resident_s",
                                    "whole_set_pageable_s", "whole_set_pinned_s"))


def test_peak_loss_memory_on_cuda_counts_at_least_the_similarity_matrix():
    out = gpu.loss_memory(512)
    assert set(out) == {"matmul_floor", *LOSSES}
    assert out["matmul_floor"] >= 1.0  # S = Z Z^T itself
    assert all(out[name] >= 1.0 for name in LOSSES), out


def test_the_apps_worker_trains_on_cuda(tmp_path):
    out = gpu.worker_on_cuda(tmp_path, epochs=1, timeout=300)
    assert out["state"] == "finished", out
    assert str(out["device"]).startswith("cuda") and out["steps"] > 0
