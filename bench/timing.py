"""Side-by-side timing: interleaved repetitions, medians, ratio of medians."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable


def interleaved(fns: dict[str, Callable[[], object]], *, reps: int, warmup: int = 1) -> dict[str, list[float]]:
    """Time each function ``reps`` times, A B A B ...: a load spike hits both sides alike.

    Returns the seconds of every repetition per name (warm-up calls are not recorded).
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(reps):
        # alternate the order too, so neither side always runs right after the other
        order = list(fns.items()) if r % 2 == 0 else list(reversed(fns.items()))
        for name, fn in order:
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def load_average() -> float:
    """The 1-minute load average (other processes competing for the cores), -1 if unknown."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return -1.0


def r3(x: float) -> float:
    return float(f"{x:.4g}")


def system_cpu_seconds() -> float:
    """CPU seconds all processes on this machine have used so far (busy time from /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
