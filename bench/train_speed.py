"""Training speed: the bare loop in a plain process, measured from its events."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.timing import system_cpu_seconds
from hcl_core.config import RunConfig

ROOT = Path(__file__).resolve().parent.parent


def summarise(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Throughput figures from a run's events (the ``epoch`` events' ``steps_per_s``).

    ``steps_per_s`` is the time-weighted aggregate over epochs 2.. (total steps / total epoch
    seconds): the first epoch pays one-time costs (first allocations, thread pool start-up) that
    are not throughput. Evaluation time between epochs is not counted, on either side.
    """
    start = next((e for e in events if e.get("type") == "start"), {})
    per_epoch = int(start.get("steps_per_epoch", 0))
    epochs = [e for e in events if e.get("type") == "epoch" and e.get("steps_per_s")]
    steady = epochs[1:] or epochs
    seconds = [per_epoch / e["steps_per_s"] for e in steady]
    half = seconds[len(seconds) // 2:]
    steps = [e for e in events if e.get("type") == "step"]
    end = next((e for e in events if e.get("type") == "end"), {})
    return {
        "steps_per_s": per_epoch * len(seconds) / sum(seconds) if seconds else 0.0,
        "steps_per_s_median_epoch": statistics.median(e["steps_per_s"] for e in steady) if steady else 0.0,
        "steps_per_s_second_half": per_epoch * len(half) / sum(half) if half else 0.0,
        "epoch_seconds_median": statistics.median(seconds) if seconds else 0.0,
        "epochs_measured": len(seconds),
        "steps_per_epoch": per_epoch,
        "first_step_after_start_s": steps[0]["elapsed"] if steps else None,
        "run_seconds": (end.get("summary") or {}).get("seconds"),
    }


def events_of(metrics: Path) -> list[dict[str, Any]]:
    out = []
    with open(metrics, encoding="utf-8") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


class BareRun:
    """The bare loop of ``config`` in a fresh plain process, started now.

    ``wait=True``: the process imports everything, then waits for :meth:`go` (its start-up can
    overlap unmeasured work); :meth:`finish` waits for it and returns its summary, its peak RSS
    (``peak_rss_mb``) and CPU shares measured from :meth:`go` on. ``env`` adds environment variables.
    """

    def __init__(self, config: RunConfig, *, env: dict[str, str] | None = None, wait: bool = False):
        full_env = {**os.environ, **(env or {})}
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full_env.get("PYTHONPATH")]))
        self._stack = contextlib.ExitStack()
        root = self._stack.enter_context(tempfile.TemporaryDirectory(prefix="hcl-bench-bare-"))
        self._out = self._stack.enter_context(tempfile.TemporaryFile(mode="w+"))  # noqa: SIM115
        self._err = self._stack.enter_context(tempfile.TemporaryFile(mode="w+"))  # noqa: SIM115
        cmd = [sys.executable, "-m", "bench.bare_train", config.to_json(), root] + (["--wait"] if wait else [])
        self.proc = subprocess.Popen(cmd, cwd=str(ROOT), env=full_env, stdout=self._out, stderr=self._err,
                                     stdin=subprocess.PIPE if wait else subprocess.DEVNULL, text=True)
        self._waiting = wait
        self._t0 = self._sys0 = None
        self._cpu0 = 0.0
        if not wait:
            self._mark()

    def _mark(self) -> None:
        self._sys0, self._t0 = system_cpu_seconds(), time.perf_counter()

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._out.seek(0)
            if "ready" in self._out.read():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self._err.seek(0)
        raise RuntimeError(f"the bare training process did not get ready: {self._err.read()[-3000:]}")

    def go(self) -> None:
        if self._waiting:
            self.wait_ready()
            self._cpu0 = _process_cpu(self.proc.pid)
            self._mark()
            self.proc.stdin.write("go\n")
            self.proc.stdin.close()
            self._waiting = False

    def finish(self) -> dict[str, Any]:
        self.go()
        try:
            # wait4 gives the child's own resource usage: ru_maxrss is its peak RSS in KiB on Linux.
            _, status, usage = os.wait4(self.proc.pid, 0)
            wall, system_cpu = time.perf_counter() - self._t0, system_cpu_seconds() - self._sys0
            self.proc.returncode = os.waitstatus_to_exitcode(status)
            self._out.seek(0)
            self._err.seek(0)
            lines = [x for x in self._out.read().strip().splitlines() if x.startswith("{")]
            if self.proc.returncode != 0 or not lines:
                raise RuntimeError(f"bare training run failed (exit {self.proc.returncode}): "
                                   f"{self._err.read()[-3000:]}")
            result = json.loads(lines[-1])
        finally:
            self._stack.close()
        cpu = usage.ru_utime + usage.ru_stime - self._cpu0
        # CPU shares: the trainer's CPU seconds per wall second (2.0 = both cores all the time), and
        # what every other process on the machine used meanwhile (other users' load included).
        result.update(peak_rss_mb=usage.ru_maxrss / 1024, process_wall_s=wall, trainer_cpu_s=cpu,
                      trainer_cpu_share=cpu / wall, others_cpu_share=max(0.0, system_cpu - cpu) / wall)
        return result


def _process_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bare_run(config: RunConfig, *, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Train ``config`` in a fresh plain process and wait for it (see :class:`BareRun`)."""
    return BareRun(config, env=env).finish()
