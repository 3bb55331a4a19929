"""Training on the GPU: our loop (:func:`hcl_core.train.train`) against a bare PyTorch loop.

Both train a CIFAR-10-shaped ResNet-18 (``encoder="resnet18"``, 32x32x3 inputs, batch 256 of
two views each) on the same device with the same model, data (resident on the device), two-view
augmentation, loss and Adam. The bare loop (:func:`bare_loop`) is what a person would write
around those pieces: no events, no stop checks, no ``float(loss)`` per step (so the CPU can
queue the next step's kernels while the GPU runs this one), no evaluation. Throughput is steps
per second of the last epoch (the first pays cuDNN's algorithm search and allocations).

Where the real CIFAR-10 files are absent, :func:`fake_cifar10` writes files of the real format
and shapes (5 x 10,000 training images, 10,000 test images, uint8 pixels, random) so the
loader, the loop and the evaluation run exactly as they would on the data.

Every function takes a ``device``, so the tests run them on the CPU with tiny shapes.
"""

from __future__ import annotations

import pickle
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hcl_core.config import RunConfig

__all__ = ["autocast_loss_values", "bare_loop", "cifar_config", "fake_cifar10", "ours", "transfers"]

CIFAR10_CLASSES = (b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck")


def fake_cifar10(root: Path, *, n_train: int = 50_000, n_test: int = 10_000, seed: int = 0) -> Path:
    """CIFAR-10's python batches under ``root/cifar-10-batches-py`` with random pixels and labels."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def batch(n: int, name: bytes) -> dict:
        return {b"batch_label": name, b"labels": [int(v) for v in rng.integers(0, 10, n)],
                b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                b"filenames": [b"img_%d.png" % i for i in range(n)]}

    per = n_train // 5
    for i in range(1, 6):
        with open(d / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch(per, b"training batch %d of 5" % i), f, protocol=2)
    with open(d / "test_batch", "wb") as f:
        pickle.dump(batch(n_test, b"testing batch 1 of 1"), f, protocol=2)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({b"num_cases_per_batch": per, b"label_names": list(CIFAR10_CLASSES), b"num_vis": 3072}, f,
                    protocol=2)
    return root


def cifar_config(data_root: Path | str, *, device: str, epochs: int, **changes: Any) -> RunConfig:
    """The benchmark's run: CIFAR-10, ResNet-18, batch 256, HCL (the app's defaults otherwise); no
    snapshot but the last."""
    values = {"dataset": "cifar10", "data_root": str(data_root), "encoder": "resnet18", "device": device,
              "epochs": epochs, "snapshot_every": 1000, **changes}
    return RunConfig(**values)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ours(config: RunConfig, root: Path) -> dict[str, Any]:
    """:func:`hcl_core.train.train` of ``config``: throughput of its last epoch (from its events),
    its whole wall time and how much of it the evaluations and the raw-pixel baseline took."""
    from bench.train_speed import summarise
    from hcl_core.train import train

    events: list[dict] = []
    t0 = time.perf_counter()
    result = train(config, callback=events.append, root=root)
    wall = time.perf_counter() - t0
    if result.state != "finished":
        raise RuntimeError(f"our training loop ended {result.state}: {result.message}")
    epochs = [e for e in events if e.get("type") == "epoch"]
    per_epoch = next(e for e in events if e.get("type") == "start")["steps_per_epoch"]
    train_s = sum(per_epoch / e["steps_per_s"] for e in epochs)
    s = summarise(events)
    return {"steps_per_s": epochs[-1]["steps_per_s"], "steps_per_s_all_epochs": [e["steps_per_s"] for e in epochs],
            "steps_per_epoch": per_epoch, "wall_s": wall, "training_s": train_s,
            "evaluation_and_setup_s": wall - train_s, "first_step_after_start_s": s["first_step_after_start_s"],
            "device": next(e for e in events if e.get("type") == "start")["device"]}


def _parts(config: RunConfig):
    from hcl_core import data as data_lib
    from hcl_core.encoders import build_encoder, resolve_device

    device = resolve_device(config.device)
    ds = data_lib.load_dataset(config.dataset, config.data_root, max_train=config.max_train)
    torch.manual_seed(config.seed)
    model = build_encoder(config.encoder, ds.input_shape, hidden_dim=config.hidden_dim,
                          out_dim=config.feature_dim).to(device)
    return device, ds, model


def bare_loop(config: RunConfig, *, epochs: int | None = None, steps: int | None = None,
              autocast: torch.dtype | None = None, loss_in_fp32: bool = False, record: bool = False
              ) -> dict[str, Any]:
    """The bare loop of ``config`` (see the module docstring) for ``epochs`` (or ``steps`` steps).

    ``autocast``: e.g. ``torch.bfloat16`` runs the forward pass (model and loss) under
    ``torch.autocast``; with ``loss_in_fp32`` the loss gets the projections cast back to float32.
    ``record``: also return every step's loss value (read once at the end, no per-step sync).
    """
    from hcl_core import data as data_lib
    from hcl_core.losses import compute_loss
    from hcl_core.registry import LOSSES

    device, ds, model = _parts(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    x, y = ds.train_x.to(device), ds.train_y.to(device)
    n = len(x)
    batch = min(config.batch_size, n)
    per_epoch = n // batch
    shuffle = torch.Generator().manual_seed(config.seed)
    aug = torch.Generator(device=device).manual_seed(config.seed + 1)
    supervised = LOSSES[config.loss].supervised
    losses, seconds, done = [], [], 0
    total = steps if steps is not None else per_epoch * (epochs or config.epochs)
    model.train()
    while done < total:
        _sync(device)
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=shuffle).to(device)
        count = min(per_epoch, total - done)
        for b in range(count):
            idx = perm[b * batch:(b + 1) * batch]
            x1, x2 = data_lib.two_views(x[idx], config.aug_strength, aug, is_image=ds.is_image)
            labels = y[idx] if supervised else None
            with torch.autocast(device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
                z = model(torch.cat([x1, x2]))
                if not loss_in_fp32:
                    loss = compute_loss(config.loss, z[:batch], z[batch:], labels, tau=config.tau,
                                        beta=config.beta, tau_plus=config.tau_plus)
            if loss_in_fp32:
                z = z.float()
                loss = compute_loss(config.loss, z[:batch], z[batch:], labels, tau=config.tau, beta=config.beta,
                                    tau_plus=config.tau_plus)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if record:
                losses.append(loss.detach())
        _sync(device)
        seconds.append((time.perf_counter() - t0, count))
        done += count
    last_s, last_n = seconds[-1]
    out = {"steps_per_s": last_n / last_s, "steps": done, "steps_per_epoch": per_epoch,
           "epoch_seconds": [s for s, _ in seconds]}
    if record:
        out["losses"] = torch.stack(losses).float().cpu().tolist()
    return out


def autocast_loss_values(config: RunConfig, *, dtype: torch.dtype = torch.bfloat16, batches: int = 4
                         ) -> dict[str, Any]:
    """Every registered loss on the same model outputs: float32, under ``autocast(dtype)``, and with the
    encoder under autocast but the loss in float32; relative differences to float32 (mean over batches)."""
    from hcl_core import data as data_lib
    from hcl_core.losses import compute_loss
    from hcl_core.registry import LOSSES

    device, ds, model = _parts(config)
    model.eval()
    g = torch.Generator(device=device).manual_seed(0)
    x, y = ds.train_x.to(device), ds.train_y.to(device)
    batch = min(config.batch_size, len(x))
    out: dict[str, Any] = {}
    diffs: dict[str, dict[str, list[float]]] = {name: {"autocast": [], "encoder_only": []} for name in LOSSES}
    with torch.no_grad():
        for b in range(batches):
            idx = torch.arange(b * batch, (b + 1) * batch, device=device) % len(x)
            x1, x2 = data_lib.two_views(x[idx], config.aug_strength, g, is_image=ds.is_image)
            both = torch.cat([x1, x2])
            z32 = model(both)
            with torch.autocast(device.type, dtype=dtype):
                zlow = model(both)
                auto = {name: compute_loss(name, zlow[:batch], zlow[batch:], y[idx], tau=config.tau,
                                           beta=config.beta, tau_plus=config.tau_plus) for name in LOSSES}
            for name in LOSSES:
                kw = {"tau": config.tau, "beta": config.beta, "tau_plus": config.tau_plus}
                ref = float(compute_loss(name, z32[:batch], z32[batch:], y[idx], **kw))
                enc = float(compute_loss(name, zlow[:batch].float(), zlow[batch:].float(), y[idx], **kw))
                diffs[name]["autocast"].append(abs(float(auto[name]) - ref) / max(abs(ref), 1e-12))
                diffs[name]["encoder_only"].append(abs(enc - ref) / max(abs(ref), 1e-12))
                entry = out.setdefault(name, {"float32": [], "autocast_loss_dtype": str(auto[name].dtype)})
                entry["float32"].append(ref)
    for name in LOSSES:
        out[name]["rel_diff_autocast"] = statistics.mean(diffs[name]["autocast"])
        out[name]["rel_diff_encoder_autocast_loss_fp32"] = statistics.mean(diffs[name]["encoder_only"])
        out[name]["float32"] = statistics.mean(out[name]["float32"])
    return out


def transfers(config: RunConfig, *, reps: int = 3) -> dict[str, Any]:
    """One epoch's worth of batches reaching the device: copied from pageable memory, from pinned memory
    with ``non_blocking=True``, or indexed on the device from a resident copy (what ``train`` does),
    plus the one-time copy of the whole training set from pageable and from pinned memory."""
    from hcl_core import data as data_lib
    from hcl_core.encoders import resolve_device

    device = resolve_device(config.device)
    x = data_lib.load_dataset(config.dataset, config.data_root, max_train=config.max_train).train_x
    pinned = x.pin_memory() if device.type == "cuda" else x
    batch = min(config.batch_size, len(x))
    slices = [slice(b * batch, (b + 1) * batch) for b in range(len(x) // batch)]

    def per_batch(source: torch.Tensor, non_blocking: bool) -> float:
        acc = torch.zeros((), device=device)
        _sync(device)
        t0 = time.perf_counter()
        for s in slices:
            acc += source[s].to(device, non_blocking=non_blocking).mean()
        _sync(device)
        return time.perf_counter() - t0

    def resident() -> float:
        xd = x.to(device)
        perm = torch.randperm(len(x), device=device)
        acc = torch.zeros((), device=device)
        _sync(device)
        t0 = time.perf_counter()
        for s in slices:
            acc += xd[perm[s]].mean()
        _sync(device)
        return time.perf_counter() - t0

    def whole(source: torch.Tensor, non_blocking: bool) -> float:
        _sync(device)
        t0 = time.perf_counter()
        source.to(device, non_blocking=non_blocking)
        _sync(device)
        return time.perf_counter() - t0

    runs = {"epoch_pageable_s": lambda: per_batch(x, False),
            "epoch_pinned_non_blocking_s": lambda: per_batch(pinned, True), "epoch_resident_s": resident,
            "whole_set_pageable_s": lambda: whole(x, False),
            "whole_set_pinned_s": lambda: whole(pinned, True)}
    for fn in runs.values():  # warm-up: allocations, the first copies
        fn()
    out = {name: statistics.median(fn() for _ in range(reps)) for name, fn in runs.items()}
    out["bytes"] = x.numel() * x.element_size()
    return out
