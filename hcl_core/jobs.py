"""Background training jobs for the app: worker processes supervised by threads.

Why processes: a training thread inside the Streamlit server shares the GIL with every page
rerun and loses most of its speed (``shared/docs/MEASURED.md``: 24 steps/s instead of 205 with
a 0.5 s refresh). A worker process (:mod:`hcl_core.worker`) trains at full speed; one thread per
job reads its event stream into a :class:`JobState` that pages read under a lock. One worker is
kept warm (torch already imported) so Start answers at once; it is warmed while nothing trains.

One :class:`JobManager` serves every tab and rerun (the app keeps it in ``st.cache_resource``):
every tab can list the running jobs (:meth:`JobManager.active`) and stop any of them, and a tab
finds the job it started by the job's token (:meth:`JobManager.find`, e.g. from ``?job=`` in
its URL), so a reload re-attaches to its own job, not to whichever started last.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import RunConfig
from .runlog import RunHistory
from .store import DEFAULT_ROOT, Run, RunFileError, mark_ended

log = logging.getLogger(__name__)

__all__ = ["ACTIVE_STATES", "Job", "JobInfo", "JobLimitError", "JobManager", "JobState"]

ACTIVE_STATES = ("starting", "running", "stopping")
#: Part of a stop's time budget kept for terminating a worker that did not stop by itself.
FORCE_MARGIN_S = 0.4
#: Seconds after the last job ended before the spare worker is warmed and the ended runs are laid
#: out (both take seconds of CPU): the page showing the end redraws first.
SETTLE_S = 2.0
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


class JobLimitError(RuntimeError):
    """Too many jobs are running: a new start is refused, not queued."""


class JobState:
    """What a page shows of one job, or of a stored run drawn like one (:meth:`of_run`).

    The events are folded by a :class:`~hcl_core.runfiles.RunHistory` (the same fold Compare
    uses for stored runs): ``steps`` ``[(step, loss)]`` (thinned to at most ``MAX_POINTS``),
    ``epochs`` and ``evals`` (the events), ``baseline``, ``summary``. A page gets a copy
    (:meth:`Job.view`), so what it reads never changes under it.
    """

    def __init__(self, job_id: int, config: RunConfig, state: str = "starting", message: str = "",
                 run_dir: str | None = None, started: float | None = None, history: RunHistory | None = None,
                 token: str = ""):
        self.job_id = job_id
        self.token = token
        self.config = config
        self.state = state  # starting / running / stopping / finished / stopped / failed
        self.message = message
        self.started = time.time() if started is None else started
        self.history = history if history is not None else RunHistory()
        if run_dir is not None:
            self.history.run_dir = run_dir
        self.stderr_tail: list[str] = []
        self.paused = False  # held between two steps by the user (Job.pause / Job.step)
        self._baseline: dict[str, Any] | None = None
        self._summary: dict[str, Any] | None = None

    @classmethod
    def of_run(cls, run: Run, history: RunHistory | None = None) -> JobState:
        """A stored run as the live view draws it (``history``: the run's, if read already)."""
        s = cls(0, run.config, state=run.state, message=run.message,
                history=(history or run.history()).copy(), started=run.status.get("started"))
        s.history.run_dir = str(run.path)
        if run.summary:
            s._summary = dict(run.summary)
        return s

    # -- what the event stream says -----------------------------------------------------------
    @property
    def run_dir(self) -> str | None:
        return self.history.run_dir

    @run_dir.setter
    def run_dir(self, value: str | None) -> None:
        self.history.run_dir = value

    @property
    def total_steps(self) -> int:
        return self.history.total_steps

    @property
    def step(self) -> int:
        return self.history.step

    @property
    def epoch(self) -> int:
        return self.history.epoch

    @property
    def steps_per_s(self) -> float:
        return self.history.steps_per_s

    @property
    def steps(self) -> list[tuple[int, float]]:
        return self.history.points

    @property
    def epochs(self) -> list[dict[str, Any]]:
        return self.history.epochs

    @property
    def evals(self) -> list[dict[str, Any]]:
        return self.history.evals

    @property
    def baseline(self) -> dict[str, Any]:
        return self._baseline if self._baseline is not None else self.history.baseline

    @baseline.setter
    def baseline(self, value: dict[str, Any]) -> None:
        self._baseline = value

    @property
    def summary(self) -> dict[str, Any]:
        if self._summary is not None:
            return self._summary
        return (self.history.end or {}).get("summary", {})

    @summary.setter
    def summary(self, value: dict[str, Any]) -> None:
        self._summary = value

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def progress(self) -> float:
        return min(self.step / self.total_steps, 1.0) if self.total_steps else 0.0

    def copy(self) -> JobState:
        c = JobState(self.job_id, self.config, self.state, self.message, started=self.started,
                     history=self.history.copy(), token=self.token)
        c.stderr_tail = list(self.stderr_tail)
        c.paused = self.paused
        c._baseline, c._summary = self._baseline, self._summary
        return c

    def apply(self, event: dict[str, Any]) -> None:
        """Fold one event of the worker's stream into the state (checked first; a bad one is counted)."""
        checked = self.history.apply(event)
        kind = checked["type"] if checked is not None else None
        if kind == "start":
            self.state = "running" if self.state == "starting" else self.state
        elif kind == "end":
            self.state = checked["state"]
            self.message = checked.get("message", "")
        elif kind == "error":
            self.state, self.message = "failed", checked.get("message", "unknown error")


@dataclass(frozen=True)
class JobInfo:
    """One job as a list of jobs shows it: ``token`` identifies it in a link (``?job=<token>``)."""

    job_id: int
    token: str
    config: RunConfig
    state: str
    run_id: str | None
    run_dir: str | None
    started: float
    step: int
    total_steps: int

    @property
    def progress(self) -> float:
        return min(self.step / self.total_steps, 1.0) if self.total_steps else 0.0


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
                 on_end: Callable[[Job], None] | None = None, threads: int = 0):
        self.id = job_id
        self.token = secrets.token_urlsafe(8)
        self.config = config
        self._on_end = on_end
        self._proc = proc
        self._lock = threading.Lock()
        self._state = JobState(job_id, config, token=self.token)
        self._done = threading.Event()
        self._stderr_done = threading.Event()
        self._stderr: collections.deque[str] = collections.deque(maxlen=40)
        request = {"config": config.to_dict(), "root": str(root), "threads": threads}
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
        # Close this worker's pipes once it has ended: finished jobs stay in JobManager._jobs for
        # the pages, and three open descriptors per finished run would add up over a long session
        # to "Too many open files". stderr is closed by its reader.
        self._stderr_done.wait(5.0)
        for stream in (self._proc.stdin, self._proc.stdout):
            with contextlib.suppress(OSError, ValueError):
                stream.close()
        mark = None  # what the run's files must say when the worker could not write it itself
        with self._lock:
            s = self._state
            if s.state == "stopping":
                s.state, s.message = "stopped", s.message or "stopped by the user"
                mark = "stopped by the user (worker terminated)"
            elif s.active and code == -signal.SIGTERM:  # terminated from outside, e.g. `kill PID`
                s.state, s.message = "stopped", "stopped: the training process was terminated (SIGTERM)"
                mark = s.message
            elif s.active:  # the process ended without saying how: it crashed or was killed
                tail = " | ".join(list(self._stderr)[-3:])
                s.state = "failed"
                s.message = f"the training process ended unexpectedly (exit code {code}). {tail}".strip()
            s.stderr_tail = list(self._stderr)
        if mark is not None:  # before _done: whoever waits for the job finds its files settled
            self._mark_run("stopped", mark)
        # Before _done: whoever waits for this job finds it among the manager's ended runs.
        if self._on_end is not None:
            self._on_end(self)
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
    def view(self) -> JobState:
        """The job's state now, as a copy that does not change afterwards."""
        with self._lock:
            return self._state.copy()

    def info(self) -> JobInfo:
        with self._lock:
            s = self._state
            run_dir = s.run_dir
            return JobInfo(self.id, self.token, s.config, s.state, Path(run_dir).name if run_dir else None, run_dir,
                           s.started, s.step, s.total_steps)

    @property
    def run_id(self) -> str | None:
        """The run folder's name, once the worker has created it."""
        with self._lock:
            run_dir = self._state.run_dir
        return Path(run_dir).name if run_dir else None

    @property
    def active(self) -> bool:
        with self._lock:
            return self._state.active

    def _send(self, command: str) -> bool:
        with contextlib.suppress(BrokenPipeError, OSError, ValueError):
            self._proc.stdin.write(command + "\n")
            self._proc.stdin.flush()
            return True
        return False

    def pause(self) -> None:
        """Hold the run before its next step (the worker then uses no CPU); :meth:`resume` goes on."""
        with self._lock:
            if not self._state.active:
                return
            self._state.paused = True
        self._send("pause")

    def resume(self) -> None:
        with self._lock:
            self._state.paused = False
        self._send("resume")

    def step(self) -> None:
        """Train exactly one more step, then hold the run again."""
        with self._lock:
            if not self._state.active:
                return
            self._state.paused = True
        self._send("step")

    def stop(self, timeout: float = 1.0, *, wait: bool = True) -> bool:
        """Ask the worker to stop; if it has not ended in time, terminate it: ends within ``timeout`` s.

        Returns True once the process has ended. The worker checks the flag before every step,
        so a normal stop closes the run files itself; a forced one marks the run ``stopped``.
        ``wait=False`` returns at once (the page's Stop button: the click's rerun shows
        "Stopping…" instead of waiting) and a background thread keeps the same deadline.
        """
        with self._lock:
            if self._state.active:
                self._state.state = "stopping"
            trained = self._state.history.n_steps > 0
        with contextlib.suppress(BrokenPipeError, OSError, ValueError):
            self._proc.stdin.write("stop\n")
            self._proc.stdin.flush()
        if not wait:
            threading.Thread(target=self._end_within, args=(timeout, trained), name=f"job-{self.id}-stop",
                             daemon=True).start()
            return self._done.is_set()
        return self._end_within(timeout, trained)

    def _end_within(self, timeout: float, trained: bool) -> bool:
        # The stop must end within ``timeout``. Before any step (imports, data loading: seconds on
        # big data sets) the worker cannot react and there is nothing to save, so it is terminated
        # at once. Later it gets the budget less FORCE_MARGIN_S, kept for terminating and reaping
        # it (tests/test_faults.py measures it).
        if self._done.wait(max(0.0, timeout - FORCE_MARGIN_S) if trained else 0.0):
            return True
        self._proc.terminate()
        try:
            self._proc.wait(2.0)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._done.wait(2.0)
        self._mark_run("stopped", "stopped by the user (worker terminated)")
        return self._done.is_set()

    def _mark_run(self, state: str, message: str) -> None:
        """Record how the run ended when its worker could not (it was terminated)."""
        with self._lock:
            run_dir = self._state.run_dir
        if run_dir:
            with contextlib.suppress(RunFileError, OSError):
                mark_ended(run_dir, state, message)

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
        after_runs: called with the folders of the runs that ended, once no job is training (on
            the reader thread of the last job that ended): the app lays out their embeddings.
    """

    def __init__(self, root: str | os.PathLike = DEFAULT_ROOT, *, max_active: int = 2, warm: bool = True,
                 worker_threads: int | None = None, after_runs: Callable[[list[str]], None] | None = None):
        self.root = Path(root)
        self.after_runs = after_runs
        self._ended: list[str] = []
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
            if self._closed:  # a refill racing shutdown() would leave an orphan worker
                return
            if self._spare is None or self._spare.poll() is not None:
                self._spare = _spawn_worker(self.worker_threads)

    def _take_worker(self) -> subprocess.Popen:
        with self._lock:
            proc, self._spare = self._spare, None
        if proc is None or proc.poll() is not None:
            proc = _spawn_worker(self.worker_threads)
        return proc

    def _job_ended(self, job: Job) -> None:
        """Once nothing trains: warm the next spare worker and hand the runs that ended to ``after_runs``.

        Not while a job runs: the spare's imports take 5-7 s of CPU, which on a 2-core machine
        came straight out of the training (bench/: the app kept less of the bare loop's speed);
        laying out a run's embeddings would cost the same. And not at once either but
        :data:`SETTLE_S` later: the page that showed the run redraws its end first (Stop
        answered in 1.1-1.4 s while the spare imported torch beside the rerun).
        """
        run_dir = job.view().run_dir
        with self._lock:
            if run_dir:
                self._ended.append(run_dir)
        if any(j.active for j in self.jobs()):
            return
        timer = threading.Timer(SETTLE_S, self._settle)
        timer.daemon = True
        timer.start()

    def _settle(self) -> None:
        if self._closed or any(j.active for j in self.jobs()):
            return  # a job started meanwhile: its end settles again
        if self.warm:
            self._refill_spare()
        with self._lock:
            ended, self._ended = self._ended, []
        if ended and self.after_runs is not None:
            try:
                self.after_runs(ended)
            except Exception:  # a hook's bug must not end the timer thread silently
                log.exception("after_runs failed for %s", ended)

    def start(self, config: RunConfig, *, threads: int = 0) -> Job:
        """Start a job for ``config``; raises :class:`JobLimitError` when ``max_active`` run.

        ``threads``: torch threads for the worker when the config leaves them at 0 (torch's
        default); the job queue shares the cores between runs that train side by side.
        """
        # Check and register under one lock: two sessions pressing Start together must not both
        # pass the check while the workers are being taken.
        with self._start_lock:
            active = [j for j in self.jobs() if j.active]
            if len(active) >= self.max_active:
                raise JobLimitError(
                    f"{len(active)} runs are already training (the limit is {self.max_active}): "
                    "stop one or wait for it to finish"
                )
            job = Job(next(self._ids), config, self._take_worker(), self.root, on_end=self._job_ended,
                      threads=threads)
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
        """The most recently started job."""
        with self._lock:
            return self._jobs[max(self._jobs)] if self._jobs else None

    def active(self) -> list[JobInfo]:
        """Every job still starting, running or stopping, oldest first: what any tab lists and can stop."""
        return [j.info() for j in self.jobs() if j.active]

    def find(self, ref: str | None) -> Job | None:
        """The job with token ``ref`` (what a tab keeps in its URL), or whose run folder is named ``ref``."""
        if not ref:
            return None
        jobs = self.jobs()
        return next((j for j in jobs if j.token == ref), None) or next(
            (j for j in reversed(jobs) if j.run_id == ref), None)

    def stop(self, ref: str, timeout: float = 1.0) -> bool:
        """Stop the job ``ref`` (a token or a run id); False if there is no such active job."""
        job = self.find(ref)
        if job is None or not job.active:
            return False
        return job.stop(timeout)

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
