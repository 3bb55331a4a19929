"""Run the benchmark suite: ``python -m bench [--quick]`` or ``python bench/run.py [--quick]``.

Progress goes to stderr; the last line of stdout is one JSON object with every figure (see
BENCHMARKS.md for what each one means and the targets). ``--quick`` takes about five minutes on
a 2-core machine (fewer repetitions, shorter runs), the full mode about twenty, ``--smoke`` (the
least of every part, for the tests) about four; ``--gpu`` is the CUDA benchmark (bench/gpu.py).
Everything is measured side by side: A and B repetitions interleaved, medians reported, and the
ratio of the medians.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # ``python bench/run.py``: make ``bench`` and ``hcl_core`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing import load_average, r3  # noqa: E402

#: The targets BENCHMARKS.md compares against.
TARGETS = {
    "loss_ratio_vs_naive_max": ("<=", 1.0),
    "train_throughput_ratio_app_vs_bare": (">=", 0.85),
    "first_update_seconds": ("<", 3.0),
    "interaction_ratio_vs_empty_page_max": ("<=", 3.0),
    "loss_peak_memory_matrices_max": ("<=", 3.0),
}

#: Every part, in the order they run.
PARTS = ("losses", "floor", "memory", "training", "projection", "app", "interactions")

MODES = {
    "quick": {"loss_sizes": (256, 512, 1024), "loss_reps": 3, "loss_warmup": 1, "app_reps": 1,
              "app_epochs": 10, "umap_warm_reps": 1, "default_run": False,
              "floor_sizes": (256, 1024), "floor_reps": 3, "memory_n": 1024,
              "interaction_reps": 2, "start_reps": 1, "run_epochs": 4, "snapshot_every": 2, "profile_over": None},
    # the least of everything, for tests/test_bench.py: its figures check the structure, not the speed
    "smoke": {"loss_sizes": (64,), "loss_reps": 1, "loss_warmup": 0, "app_reps": 1, "app_epochs": 3,
              "umap_warm_reps": 1, "default_run": False, "floor_sizes": (64,), "floor_reps": 1, "memory_n": 512,
              "interaction_reps": 1, "start_reps": 1, "run_epochs": 2, "snapshot_every": 1, "profile_over": None,
              "run_changes": {"max_train": 300, "eval_size": 100}},
    "full": {"loss_sizes": (256, 512, 1024), "loss_reps": 21, "loss_warmup": 3, "app_reps": 5,
             "app_epochs": 200, "umap_warm_reps": 3, "default_run": True,
             "floor_sizes": (256, 1024, 4096), "floor_reps": 9, "memory_n": 4096,
             "interaction_reps": 9, "start_reps": 5, "run_epochs": 30, "snapshot_every": 5, "profile_over": 3.0},
}

#: App alternatives (``--alternatives``): name, keyword arguments of bench.app_speed.run, config changes.
ALTERNATIVES = (
    ("page_closed_after_start", {"leave_page": True}, {}),
    ("worker_1_thread", {}, {"threads": 1}),
    ("refresh_2s", {"live_refresh_s": 2.0}, {}),
    ("refresh_2s_worker_1_thread", {"live_refresh_s": 2.0}, {"threads": 1}),
)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def machine() -> dict:
    import torch

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(), "cpu": cpu, "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def wait_quiet(max_load: float, timeout: float) -> float:
    """Wait (up to ``timeout`` s) until the 1-minute load average is below ``max_load``."""
    deadline = time.monotonic() + timeout
    load = load_average()
    while load >= max_load and time.monotonic() < deadline:
        log(f"waiting for a quieter machine: load average {load:.2f} >= {max_load}")
        time.sleep(15)
        load = load_average()
    return load


def verdicts(out: dict) -> dict:
    result = {}
    for key, (op, target) in TARGETS.items():
        value = out.get(key)
        if not isinstance(value, (int, float)):
            result[key] = "not measured"
            continue
        ok = value <= target if op == "<=" else value >= target if op == ">=" else value < target
        result[key] = f"{'pass' if ok else 'FAIL'} ({value} {op} {target})" if ok else \
            f"FAIL ({value}, target {op} {target})"
    return result


def _open_app(stack: contextlib.ExitStack, config, app_dir: str | None, *, prestart: bool):
    """Start the app's server and chromium on the Train page (and, optionally, a waiting bare run)."""
    from bench import app_speed
    from bench.train_speed import BareRun

    prestarted = None
    if prestart:
        prestarted = BareRun(config, wait=True)
        stack.callback(lambda: prestarted.proc.poll() is None and prestarted.proc.kill())
    opened = stack.enter_context(app_speed.session(app_dir=app_dir))
    app_speed.open_train_page(*opened, config)
    return opened, prestarted


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, shorter runs (a few minutes)")
    ap.add_argument("--smoke", action="store_true",
                    help="the least of every part (tests/test_bench.py checks the output's structure with it)")
    ap.add_argument("--only", nargs="*", choices=PARTS, help="run only these parts")
    ap.add_argument("--gpu", action="store_true",
                    help="the CUDA benchmark instead (bench/gpu.py): losses, a CIFAR-10-shaped ResNet-18 epoch "
                         "against a bare loop, bf16 autocast, transfers, the app's worker on CUDA")
    ap.add_argument("--alternatives", action="store_true",
                    help="also measure the app with alternatives (page closed, 1 worker thread, 2 s refresh); "
                         "the full mode does it by itself when the app keeps less than 80 %% of the bare speed")
    ap.add_argument("--app-dir", default=None, metavar="DIR",
                    help="serve the app from another checkout (e.g. one with a proposed change) for the app part")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                    help="first wait up to this long for the load average to fall below 1.0")
    a = ap.parse_args(argv)
    if a.gpu:
        from bench import gpu

        return gpu.main(quick=a.quick, log=log)
    mode = "smoke" if a.smoke else "quick" if a.quick else "full"
    p = MODES[mode]
    parts = set(a.only or PARTS)
    t_start = time.perf_counter()
    if a.wait_quiet:
        wait_quiet(1.0, a.wait_quiet)
    out: dict = {"mode": mode, "machine": machine(), "load_average_start": r3(load_average())}
    log(f"bench ({mode}) on {out['machine']['cores']} cores, {out['machine']['cpu']}, torch "
        f"{out['machine']['torch']}; load average {out['load_average_start']}")

    from hcl_core.config import RunConfig

    if "losses" in parts:
        from bench import loss_speed

        t0 = time.perf_counter()
        log("losses: forward+backward, ours vs naive, interleaved ...")
        results = loss_speed.run(p["loss_sizes"], reps=p["loss_reps"], warmup=p["loss_warmup"])
        for key, r in results.items():
            log(f"  {key:>18}: ours {r['ours_ms']:8.2f} ms  naive {r['naive_ms']:8.2f} ms  ratio {r['ratio']:.3f}"
                f"  finite at tau=0.05, beta=10: ours {r['ours_finite_tau0.05_beta10']}, "
                f"naive {r['naive_finite_tau0.05_beta10']}")
        out.update(loss_speed.summary(results))
        out["loss_details"] = results
        out["loss_params"] = {"timing": loss_speed.TIMING_PARAMS, "overflow": loss_speed.OVERFLOW_PARAMS,
                              "d": 128, "reps": p["loss_reps"]}
        log(f"  ({time.perf_counter() - t0:.1f} s)")

    if "floor" in parts:
        from bench import loss_floor

        t0 = time.perf_counter()
        log("losses: forward+backward against the matmul floor (Z Z^T and its gradient), interleaved ...")
        results = loss_floor.run(p["floor_sizes"], reps=p["floor_reps"], warmup=1)
        for key, r in results.items():
            log(f"  {key:>18}: loss {r['loss_ms']:9.2f} ms  floor {r['floor_ms']:9.2f} ms  ratio {r['ratio']:.2f}")
        out.update(loss_floor.summary(results))
        out["loss_floor_details"] = results
        log(f"  ({time.perf_counter() - t0:.1f} s)")

    if "memory" in parts:
        from bench import loss_floor
        from hcl_core.registry import LOSSES

        t0 = time.perf_counter()
        n = p["memory_n"]
        log(f"losses: peak extra memory at N = {n} (float32, CPU), one fresh process each ...")
        mem = {name: loss_floor.peak_memory(name, n) for name in ("matmul_floor", *LOSSES)}
        for name, r in mem.items():
            log(f"  {name:>12}: {r['peak_extra_bytes'] / 2**20:8.1f} MiB = {r['peak_extra_matrices']:.2f} "
                f"(2N)^2 float32 matrices")
        out["loss_peak_memory_matrices"] = {k: v["peak_extra_matrices"] for k, v in mem.items()}
        out["loss_peak_memory_matrices_max"] = max(v["peak_extra_matrices"] for k, v in mem.items()
                                                   if k != "matmul_floor")
        out["loss_peak_memory"] = {"N": n, "method": mem["matmul_floor"]["method"],
                                   "bytes": {k: v["peak_extra_bytes"] for k, v in mem.items()}}
        log(f"  ({time.perf_counter() - t0:.1f} s)")

    if "training" in parts and p["default_run"]:
        from bench.train_speed import bare_run

        t0 = time.perf_counter()
        log("training: the default digits run (30 epochs, evaluation every 5), 2 threads, plain process ...")
        r = bare_run(RunConfig(threads=2))
        out["epoch_seconds_digits_cpu"] = r3(r["epoch_seconds_median"])
        out["default_run_seconds"] = r3(r["run_seconds"])
        out["peak_memory_mb"] = r3(r["peak_rss_mb"])
        out["default_run"] = {k: (r3(v) if isinstance(v, float) else v) for k, v in r.items()}
        log(f"  epoch {r['epoch_seconds_median']:.3f} s, whole run {r['run_seconds']:.1f} s, "
            f"peak RSS {r['peak_rss_mb']:.0f} MB ({time.perf_counter() - t0:.1f} s)")

    # The default evaluation cadence (every 5 epochs): the page redraws its evaluation charts as they
    # arrive, as a user's page does; the evaluations' own time is left out on both sides (summarise).
    config = RunConfig(epochs=p["app_epochs"], threads=2)
    with contextlib.ExitStack() as stack:
        opened = prestarted = None
        if "projection" in parts:
            from bench.projection_speed import finish_cold_process, start_cold_process

            t0 = time.perf_counter()
            log("projection: UMAP of 2000 x 64 in a fresh process (cold), then warm; PCA ...")
            started = start_cold_process(2000, p["umap_warm_reps"])
            if mode != "full" and "app" in parts:
                # Quick mode only: the cold UMAP (one thread) leaves a core free, which the app's
                # start-up (server, chromium, spare worker) and the first bare process's imports
                # use meanwhile. It costs the cold UMAP figure a few seconds; the full mode does not.
                log("  (quick mode: the app server, chromium and the bare process start meanwhile)")
                opened, prestarted = _open_app(stack, config, a.app_dir, prestart=True)
            r = finish_cold_process(started)
            out["umap_seconds_cold"] = r3(r["umap_seconds_cold"])
            out["umap_seconds_warm"] = r3(r["umap_seconds_warm"])
            out["pca_seconds"] = r3(r["pca_seconds"])
            log(f"  cold {r['umap_seconds_cold']:.2f} s, warm {r['umap_seconds_warm']:.2f} s, "
                f"PCA {r['pca_seconds'] * 1e3:.2f} ms ({time.perf_counter() - t0:.1f} s)")

        if "app" in parts:
            from bench import app_speed

            t0 = time.perf_counter()
            log(f"app: Train page in chromium vs the bare loop, digits/mlp/batch 256, {config.epochs} epochs, "
                f"evaluated every {config.snapshot_every}, 2 threads, {p['app_reps']} interleaved repetition(s) ...")
            if opened is None:
                opened, _ = _open_app(stack, config, a.app_dir, prestart=False)
            r = app_speed.run(config, reps=p["app_reps"], opened=opened, prestarted=prestarted, log=log)
    if "app" in parts:
        out["train_throughput_ratio_app_vs_bare"] = r["ratio"]
        out["train_steps_per_s_app"] = r["app_steps_per_s"]
        out["train_steps_per_s_bare"] = r["bare_steps_per_s"]
        out["first_update_seconds"] = r["first_update_seconds"]
        out["first_update_all"] = r["first_update_all"]
        out["peak_memory_mb_app_worker"] = r3(max(x["worker_peak_rss_mb"] for x in r["app_runs"]))
        if "epoch_seconds_digits_cpu" not in out:  # quick mode: from the bare runs (same 2 threads)
            out["epoch_seconds_digits_cpu"] = r3(min(b["epoch_seconds_median"] for b in r["bare_runs"]))
            out["peak_memory_mb"] = r3(max(b["peak_rss_mb"] for b in r["bare_runs"]))
        out["app_details"] = r
        log(f"  ratio {r['ratio']}, first update {r['first_update_seconds']} s ({time.perf_counter() - t0:.1f} s)")

        low = isinstance(r["ratio"], float) and r["ratio"] < 0.8
        if a.alternatives or (mode == "full" and low):
            alts = {}
            for name, kwargs, changes in ALTERNATIVES:
                log(f"app alternative {name} ...")
                res = app_speed.run(config.replace(**changes), reps=1, app_dir=a.app_dir, log=log, **kwargs)
                alts[name] = {k: res[k] for k in ("app_steps_per_s", "bare_steps_per_s", "ratio",
                                                  "first_update_seconds")}
                alts[name]["ratio_vs_main_bare"] = r3(res["app_steps_per_s"] / r["bare_steps_per_s"])
                alts[name]["cpu_shares"] = {k: res["app_runs"][0][k] for k in (
                    "worker_cpu_share", "server_cpu_share", "chromium_cpu_share", "others_cpu_share")}
            out["app_alternatives"] = alts

    if "interactions" in parts:
        from bench import interactions

        t0 = time.perf_counter()
        log(f"interactions in chromium: the app against an empty app, {p['interaction_reps']} interleaved "
            f"repetitions ({p['start_reps']} of Start/Stop) ...")
        r = interactions.run(reps=p["interaction_reps"], start_reps=p["start_reps"], run_epochs=p["run_epochs"],
                             snapshot_every=p["snapshot_every"], app_dir=Path(a.app_dir) if a.app_dir else None,
                             run_changes=p.get("run_changes"), profile_over=p["profile_over"], log=log)
        for name, v in r["interaction_seconds"].items():
            log(f"  {name:>22}: app {v['app']:7.3f} s  empty {v['floor']:7.3f} s  "
                f"ratio {r['interaction_ratio_vs_empty_page'][name]:.2f}")
        out.update(r)
        log(f"  ({time.perf_counter() - t0:.1f} s)")

    out["load_average_end"] = r3(load_average())
    out["targets"] = verdicts(out)
    out["seconds"] = r3(time.perf_counter() - t_start)
    log(f"done in {out['seconds']} s")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
