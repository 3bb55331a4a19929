"""The pure parts of bench/: the naive baselines compute our losses, and the bookkeeping is right."""

from __future__ import annotations

import pytest
import torch

from bench import loss_speed
from bench.naive import NAIVE, naive_hard_supcon, naive_hcl, naive_supcon, negative_mask
from bench.run import verdicts
from bench.timing import interleaved, median, ratio
from bench.train_speed import summarise
from hcl_core import losses

TOL = {"rtol": 1e-5, "atol": 1e-5}
PARAMS = [(0.5, 1.0, 0.1), (0.2, 3.0, 0.0), (1.0, 0.0, 0.3), (0.1, 0.5, 0.05)]


def _inputs(n: int, d: int, dtype, seed: int = 0, classes: int = 5):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g, dtype=dtype)
    z2 = torch.randn(n, d, generator=g, dtype=dtype)
    labels = torch.randint(0, classes, (n,), generator=g)
    return z1, z2, labels


@pytest.mark.parametrize("tau,beta,tau_plus", PARAMS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n", [4, 33, 128])
def test_naive_losses_agree_with_ours(n, dtype, tau, beta, tau_plus):
    z1, z2, labels = _inputs(n, 16, dtype)
    pairs = [
        (losses.hcl(z1, z2, tau=tau, beta=beta, tau_plus=tau_plus),
         naive_hcl(z1, z2, tau=tau, beta=beta, tau_plus=tau_plus)),
        (losses.supcon(z1, z2, labels, tau=tau), naive_supcon(z1, z2, labels, tau=tau)),
        (losses.hard_supcon(z1, z2, labels, tau=tau, beta=beta),
         naive_hard_supcon(z1, z2, labels, tau=tau, beta=beta)),
    ]
    for ours, naive in pairs:
        assert torch.isfinite(naive)
        torch.testing.assert_close(ours, naive, **TOL)


@pytest.mark.parametrize("name", loss_speed.LOSS_NAMES)
def test_naive_gradients_agree_with_ours(name):
    z1, z2, labels = _inputs(24, 8, torch.float64, seed=3)
    grads = []
    for fn in (getattr(losses, name), NAIVE[name]):
        a, b = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
        loss_speed.call(fn, name, a, b, labels, loss_speed.TIMING_PARAMS).backward()
        grads.append((a.grad, b.grad))
    torch.testing.assert_close(grads[0], grads[1], **TOL)


def test_negative_mask_is_hcl_get_negative_mask():
    n = 5
    expected = torch.ones((n, 2 * n), dtype=torch.bool)
    for i in range(n):  # the HCL repository's loop
        expected[i, i] = False
        expected[i, i + n] = False
    expected = torch.cat((expected, expected), 0)
    assert torch.equal(negative_mask(n), expected)


def test_overflow_check_naive_overflows_ours_does_not():
    for name in ("hcl", "hard_supcon"):
        finite = loss_speed.overflow_check(name, 64, d=32)
        assert finite == {"ours": True, "naive": False}, name
    # SupContrast subtracts the row max itself: both finite
    assert loss_speed.overflow_check("supcon", 64, d=32) == {"ours": True, "naive": True}


def test_loss_run_and_summary_shape():
    results = loss_speed.run((8,), d=4, reps=2, warmup=0)
    assert set(results) == {f"{name}/N=8" for name in loss_speed.LOSS_NAMES}
    s = loss_speed.summary(results)
    assert set(s["loss_ratio_vs_naive"]) == set(loss_speed.LOSS_NAMES)
    assert s["loss_ratio_vs_naive_max"] == max(r["ratio"] for r in results.values())
    assert s["loss_ours_always_finite"] is True


def test_interleaved_alternates_and_records_every_repetition():
    calls = []
    times = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, reps=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert [len(v) for v in times.values()] == [3, 3]
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert ratio(1.0, 2.0) == 0.5


def test_summarise_skips_the_first_epoch_and_weights_by_time():
    events = [{"type": "start", "steps_per_epoch": 10}]
    events += [{"type": "step", "step": i, "elapsed": 0.5 + i} for i in range(1, 31)]
    events += [{"type": "epoch", "epoch": 1, "steps_per_s": 1.0},  # pays one-time costs: skipped
               {"type": "epoch", "epoch": 2, "steps_per_s": 100.0},
               {"type": "epoch", "epoch": 3, "steps_per_s": 50.0}]
    s = summarise(events)
    # 20 steps in 0.1 s + 0.2 s
    assert s["steps_per_s"] == pytest.approx(20 / 0.3)
    assert s["epochs_measured"] == 2
    assert s["epoch_seconds_median"] == pytest.approx(0.15)
    assert s["first_step_after_start_s"] == 1.5


def test_verdicts():
    v = verdicts({"loss_ratio_vs_naive_max": 0.9, "train_throughput_ratio_app_vs_bare": 0.5})
    assert v["loss_ratio_vs_naive_max"].startswith("pass")
    assert v["train_throughput_ratio_app_vs_bare"].startswith("FAIL")
    assert v["first_update_seconds"] == "not measured"
