"""Background training jobs for the app: worker processes supervised by threads.

Why processes: a training thread inside the Streamlit server shares the GIL with every page
rerun and loses most of its speed (``shared/docs/MEASURED.md``: 24 steps/s instead of 205 with
a 0.5 s refresh). A worker process (:mod:`hcl_core.worker`) trains at full speed; one thread per
job reads its event stream into a :class:`JobState` that pages read under a lock. One worker is
kept warm (torch already imported) so Start answers at once; it is warmed while nothing trains.

One :class:`JobManager` serves every tab and rerun (the app keeps it in ``st.cache_resource``),
so several tabs watch the same job and a reload re-attaches to it.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import RunConfig
from .store import DEFAULT_ROOT, load_run

ACTIVE_STATES = ("starting", "running", "stopping")
#: Part of a stop's time budget kept for terminating a worker that did not stop by itself.
FORCE_MARGIN_S = 0.4
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


class JobLimitError(RuntimeError):
    """Too many jobs are running: a new start is refused, not queued."""


@dataclass
class JobState:
    """What a page shows of one job; a copy is handed out, so readers never see it change."""

    job_id: int
    config: RunConfig
    state: str = "starting"  # starting / running / stopping / finished / stopped / failed
    message: str = ""
    run_dir: str | None = None
    started: float = field(default_factory=time.time)
    total_steps: int = 0
    step: int = 0
    epoch: int = 0
    steps: list[tuple[int, float]] = field(default_factory=list)  # (step, loss)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    baseline: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    steps_per_s: float = 0.0
    stderr_tail: list[str] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def progress(self) -> float:
        return min(self.step / self.total_steps, 1.0) if self.total_steps else 0.0

    def copy(self) -> JobState:
        c = JobState(**{k: getattr(self, k) for k in self.__dataclass_fields__})
        c.steps, c.epochs, c.evals = list(self.steps), list(self.epochs), list(self.evals)
        c.stderr_tail = list(self.stderr_tail)
        return c

    def apply(self, event: dict[str, Any]) -> None:
        """Fold one event of the worker's stream into the state."""
        kind = event.get("type")
        if kind == "start":
            self.state = "running" if self.state == "starting" else self.state
            self.run_dir = event.get("run_dir")
            self.total_steps = int(event.get("total_steps", 0))
        elif kind == "step":
            self.step, self.epoch = int(event["step"]), int(event["epoch"])
            self.steps.append((self.step, float(event["loss"])))
        elif kind == "epoch":
            self.epochs.append(event)
            self.steps_per_s = float(event.get("steps_per_s", 0.0))
        elif kind == "eval":
            self.evals.append(event)
        elif kind == "baseline":
            self.baseline = {k: v for k, v in event.items() if k != "type"}
        elif kind == "end":
            self.state = event.get("state", "finished")
            self.message = event.get("message", "")
            self.summary = event.get("summary", {})
        elif kind == "error":
            self.state, self.message = "failed", event.get("message", "unknown error")


def _worker_command() -> list[str]:
    return [sys.executable, "-m", "hcl_core.worker"]


def _spawn_worker(threads: int | None) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PROJECT_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return subprocess.Popen(
        _worker_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, bufsize=1, cwd=str(_PROJECT_ROOT), env=env, start_new_session=True,
    )


class Job:
    """One training job: its worker process, the thread reading it, and its state."""

    def __init__(self, job_id: int, config: RunConfig, proc: subprocess.Popen, root: Path,
                 on_end: Callable[[], None] | None = None):
        self.id = job_id
        self.config = config
        self._on_end = on_end
        self._proc = proc
        self._lock = threading.Lock()
        self._state = JobState(job_id, config)
        self._done = threading.Event()
        self._stderr_done = threading.Event()
        self._stderr: collections.deque[str] = collections.deque(maxlen=40)
        request = {"config": config.to_dict(), "root": str(root)}
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        threading.Thread(target=self._read_events, name=f"job-{job_id}-events", daemon=True).start()
        threading.Thread(target=self._read_stderr, name=f"job-{job_id}-stderr", daemon=True).start()

    # -- reading the worker ------------------------------------------------------------------
    def _read_events(self) -> None:
        for line in self._proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self._lock:
                self._state.apply(event)
        code = self._proc.wait()
        # Reliability (issue 6): close this worker's pipes once it has ended. Finished jobs stay
        # in JobManager._jobs for the pages, and each held three open pipe descriptors: a long
        # session leaked 3 fds per run until "Too many open files". stderr is closed by its reader.
        self._stderr_done.wait(5.0)
        for stream in (self._proc.stdin, self._proc.stdout):
            with contextlib.suppress(OSError, ValueError):
                stream.close()
        with self._lock:
            s = self._state
            if s.state == "stopping":
                s.state, s.message = "stopped", s.message or "stopped by the user"
            elif s.active:  # the process ended without saying how: it crashed or was killed
                tail = " | ".join(list(self._stderr)[-3:])
                s.state = "failed"
                s.message = f"the training process ended unexpectedly (exit code {code}). {tail}".strip()
            s.stderr_tail = list(self._stderr)
        # Before _done: whoever waits for this job finds the manager settled (the next spare
        # worker already started), not in the middle of it.
        if self._on_end is not None:
            self._on_end()
        self._done.set()

    def _read_stderr(self) -> None:
        try:
            for line in self._proc.stderr:
                self._stderr.append(line.rstrip())
        finally:
            with contextlib.suppress(OSError, ValueError):
                self._proc.stderr.close()
            self._stderr_done.set()

    # -- the API pages use -------------------------------------------------------------------
    def snapshot(self) -> JobState:
        with self._lock:
            return self._state.copy()

    @property
    def active(self) -> bool:
        with self._lock:
            return self._state.active

    def stop(self, timeout: float = 1.0) -> bool:
        """Ask the worker to stop; if it has not ended in time, terminate it: ends within ``timeout`` s.

        Returns True once the process has ended. The worker checks the flag before every step,
        so a normal stop closes the run files itself; a forced one marks the run ``stopped``.
        """
        with self._lock:
            if self._state.active:
                self._state.state = "stopping"
            trained = bool(self._state.steps)
        with contextlib.suppress(BrokenPipeError, OSError, ValueError):
            self._proc.stdin.write("stop\n")
            self._proc.stdin.flush()
        # Reliability (issue 6): the stop must end within ``timeout``. Before any step (imports,
        # data loading, baseline, epoch-0 evaluation: seconds on big data sets) the worker cannot
        # react and there is nothing to save, so it is terminated at once. Later it gets the
        # budget less FORCE_MARGIN_S, kept for terminating and reaping it (0.1-0.36 s measured
        # on 2 busy cores). Before, the cooperative wait used all of ``timeout`` and a stop in
        # the start-up or an evaluation took 1.05-1.1 s.
        if self._done.wait(max(0.0, timeout - FORCE_MARGIN_S) if trained else 0.0):
            return True
        self._proc.terminate()
        try:
            self._proc.wait(2.0)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._done.wait(2.0)
        self._mark_run_stopped()
        return self._done.is_set()

    def _mark_run_stopped(self) -> None:
        run_dir = self.snapshot().run_dir
        if not run_dir:
            return
        from .store import atomic_write_json

        with contextlib.suppress(Exception):
            run = load_run(run_dir)
            if run.status.get("state") == "running":
                status = dict(run.status, state="stopped", message="stopped by the user (worker terminated)",
                              updated=time.time())
                atomic_write_json(Path(run_dir) / "status.json", status)

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def pid(self) -> int:
        return self._proc.pid


class JobManager:
    """Starts, tracks and stops training jobs; shared by every session of the app.

    Args:
        root: folder the runs are written to.
        max_active: at most this many jobs run at once; more starts raise :class:`JobLimitError`.
        warm: keep one worker process with torch imported, ready for the next start.
        worker_threads: torch threads per worker (None: torch's default).
    """

    def __init__(self, root: str | os.PathLike = DEFAULT_ROOT, *, max_active: int = 2, warm: bool = True,
                 worker_threads: int | None = None):
        self.root = Path(root)
        self.max_active = max_active
        self.warm = warm
        self.worker_threads = worker_threads
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()  # serialises start(): the limit check and the insert
        self._jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._spare: subprocess.Popen | None = None
        self._closed = False
        if warm:
            self._refill_spare()

    def _refill_spare(self) -> None:
        with self._lock:
            if self._closed:  # Reliability (issue 6): a refill racing shutdown() left an orphan worker
                return
            if self._spare is None or self._spare.poll() is not None:
                self._spare = _spawn_worker(self.worker_threads)

    def _take_worker(self) -> subprocess.Popen:
        with self._lock:
            proc, self._spare = self._spare, None
        if proc is None or proc.poll() is not None:
            proc = _spawn_worker(self.worker_threads)
        return proc

    def _job_ended(self) -> None:
        """Warm the next spare worker once nothing trains.

        Not while a job runs: the spare's imports take 5-7 s of CPU, which on a 2-core machine
        came straight out of the training (bench/: the app kept less of the bare loop's speed).
        """
        if self.warm and not any(j.active for j in self.jobs()):
            self._refill_spare()

    def start(self, config: RunConfig) -> Job:
        """Start a job for ``config``; raises :class:`JobLimitError` when ``max_active`` run."""
        # Reliability (issue 6): check and register under one lock. Before, two sessions pressing
        # Start together both passed the check while the workers were being taken, and more
        # than max_active jobs ran.
        with self._start_lock:
            active = [j for j in self.jobs() if j.active]
            if len(active) >= self.max_active:
                raise JobLimitError(
                    f"{len(active)} runs are already training (the limit is {self.max_active}): "
                    "stop one or wait for it to finish"
                )
            job = Job(next(self._ids), config, self._take_worker(), self.root, on_end=self._job_ended)
            with self._lock:
                self._jobs[job.id] = job
        return job

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def get(self, job_id: int) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def latest(self) -> Job | None:
        """The most recently started job (what a freshly loaded page re-attaches to)."""
        with self._lock:
            return self._jobs[max(self._jobs)] if self._jobs else None

    def stop_all(self, timeout: float = 1.0) -> None:
        for job in self.jobs():
            if job.active:
                job.stop(timeout)

    def shutdown(self) -> None:
        """Stop every job and the spare worker (tests and app exit)."""
        self.stop_all()
        with self._lock:
            self._closed = True
            spare, self._spare = self._spare, None
        if spare is not None and spare.poll() is None:
            with contextlib.suppress(OSError):
                spare.stdin.close()
            try:
                spare.wait(2.0)
            except subprocess.TimeoutExpired:
                spare.kill()
