"""Forward + backward time of our losses against the naive published formulas."""

from __future__ import annotations

import math

import torch

from hcl_core import losses as ours

from .naive import NAIVE
from .timing import interleaved, median, r3, ratio

#: Typical hyper-parameters for the timing (the app's defaults); the overflow check uses harsher ones.
TIMING_PARAMS = {"tau": 0.5, "beta": 1.0, "tau_plus": 0.1}
OVERFLOW_PARAMS = {"tau": 0.05, "beta": 10.0, "tau_plus": 0.1}
LOSS_NAMES = ("hcl", "supcon", "hard_supcon")
NUM_CLASSES = 10


def _ours(name: str):
    return getattr(ours, name)


def call(fn, name: str, z1, z2, labels, params: dict):
    if name == "hcl":
        return fn(z1, z2, tau=params["tau"], beta=params["beta"], tau_plus=params["tau_plus"])
    if name == "supcon":
        return fn(z1, z2, labels, tau=params["tau"])
    return fn(z1, z2, labels, tau=params["tau"], beta=params["beta"])


def clustered_views(n: int, d: int, *, seed: int = 0, noise: float = 0.05) -> tuple[torch.Tensor, ...]:
    """Two views of ``n`` samples from ``NUM_CLASSES`` tight clusters: cos ~ 1 within a class.

    What a trained encoder produces, and where ``exp(beta * cos / tau)`` overflows float32
    (random Gaussian vectors in 128-d are almost orthogonal and would not show it).
    """
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(NUM_CLASSES, d, generator=g)
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    z1 = centres[labels] + noise * torch.randn(n, d, generator=g)
    z2 = centres[labels] + noise * torch.randn(n, d, generator=g)
    return z1, z2, labels


def _step(fn, name, z1, z2, labels, params):
    def run():
        z1.grad = z2.grad = None
        loss = call(fn, name, z1, z2, labels, params)
        loss.backward()
        return loss

    return run


def overflow_check(name: str, n: int, d: int = 128) -> dict[str, bool]:
    """Is the loss (and its gradient) finite at tau = 0.05, beta = 10 on clustered views?"""
    out = {}
    for side, fn in (("ours", _ours(name)), ("naive", NAIVE[name])):
        z1, z2, labels = clustered_views(n, d)
        z1.requires_grad_(True)
        z2.requires_grad_(True)
        loss = call(fn, name, z1, z2, labels, OVERFLOW_PARAMS)
        finite = bool(torch.isfinite(loss))
        if finite:
            loss.backward()
            finite = bool(torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all())
        out[side] = finite
    return out


def run(sizes=(256, 512, 1024), *, d: int = 128, reps: int = 15, warmup: int = 2) -> dict:
    """Per loss and N: median seconds of ours and naive, their ratio, and the overflow check."""
    results: dict = {}
    for name in LOSS_NAMES:
        for n in sizes:
            g = torch.Generator().manual_seed(n)
            z1 = torch.randn(n, d, generator=g).requires_grad_(True)
            z2 = torch.randn(n, d, generator=g).requires_grad_(True)
            labels = torch.randint(0, NUM_CLASSES, (n,), generator=g)
            times = interleaved({
                "ours": _step(_ours(name), name, z1, z2, labels, TIMING_PARAMS),
                "naive": _step(NAIVE[name], name, z1, z2, labels, TIMING_PARAMS),
            }, reps=reps, warmup=warmup)
            m_ours, m_naive = median(times["ours"]), median(times["naive"])
            finite = overflow_check(name, n, d)
            results[f"{name}/N={n}"] = {
                "ours_ms": r3(m_ours * 1e3), "naive_ms": r3(m_naive * 1e3), "ratio": r3(ratio(m_ours, m_naive)),
                "ours_finite_tau0.05_beta10": finite["ours"], "naive_finite_tau0.05_beta10": finite["naive"],
            }
    return results


def summary(results: dict) -> dict:
    """``loss_ratio_vs_naive``: {loss: {N: ratio}} plus the worst ratio and the overflow verdict."""
    by_loss: dict = {}
    for key, r in results.items():
        name, n = key.split("/N=")
        by_loss.setdefault(name, {})[n] = r["ratio"]
    worst = max((r["ratio"] for r in results.values()), default=math.nan)
    return {
        "loss_ratio_vs_naive": by_loss,
        "loss_ratio_vs_naive_max": worst,
        "loss_ours_always_finite": all(r["ours_finite_tau0.05_beta10"] for r in results.values()),
        "loss_naive_overflows": sorted({k.split("/")[0] for k, r in results.items()
                                        if not r["naive_finite_tau0.05_beta10"]}),
    }
