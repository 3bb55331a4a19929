"""A queue in front of the job manager: comparisons of several runs with one click.

:class:`~hcl_core.jobs.JobManager` refuses a start beyond ``max_active`` (so a single Start never
waits silently). A comparison of four losses is different: the user asked for all of them at
once, so they start while slots are free and wait their turn beyond, and the page shows each as
queued, training or done. The queue starts them in the order given, from one background thread,
as soon as a slot frees.

Runs that train side by side share the machine's cores: each started by the queue gets
``cores // max_active`` torch threads (unless its config names a number). Left at torch's
default, every worker starts one thread per core, and on 2 cores two such runs took 1.4x longer
together than one after the other (BENCHMARKS.md, the classroom comparison).
"""

from __future__ import annotations

import itertools
import os
import threading
from dataclasses import dataclass, field

from .config import RunConfig
from .jobs import JobLimitError, JobManager

__all__ = ["JobQueue", "Ticket"]


@dataclass
class Ticket:
    """One queued run: its config, the comparison it belongs to, and its job once started."""

    id: int
    config: RunConfig
    group: str
    job_id: int | None = None
    error: str = ""
    cancelled: bool = field(default=False, repr=False)

    @property
    def waiting(self) -> bool:
        return self.job_id is None and not self.error and not self.cancelled


class JobQueue:
    """Starts submitted configs through ``manager`` as its ``max_active`` slots allow.

    Args:
        manager: the app's job manager (shared by every session).
        poll_s: how often a waiting queue looks for a free slot.
    """

    def __init__(self, manager: JobManager, *, poll_s: float = 0.25):
        self.manager = manager
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._tickets: list[Ticket] = []
        self._ids = itertools.count(1)
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="hcl-job-queue", daemon=True)
        self._thread.start()

    def submit(self, configs: list[RunConfig], *, group: str) -> list[Ticket]:
        """Queue ``configs`` under ``group`` (a comparison's name); they start in this order."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the job queue is shut down")
            tickets = [Ticket(next(self._ids), c, group) for c in configs]
            self._tickets.extend(tickets)
        self._wake.set()
        return tickets

    def tickets(self, group: str | None = None) -> list[Ticket]:
        with self._lock:
            return [t for t in self._tickets if group is None or t.group == group]

    def waiting(self) -> list[Ticket]:
        return [t for t in self.tickets() if t.waiting]

    def cancel(self, group: str) -> int:
        """Drop the group's runs that have not started; returns how many. Started ones keep running."""
        with self._lock:
            dropped = [t for t in self._tickets if t.group == group and t.waiting]
            for t in dropped:
                t.cancelled = True
        return len(dropped)

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
        self._wake.set()
        self._thread.join(timeout=2.0)

    def threads_per_run(self) -> int:
        """Torch threads for a run the queue starts: this process's cores shared by ``max_active`` runs."""
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, cores // max(1, self.manager.max_active))

    def _start_next(self) -> bool:
        """Start the first waiting ticket if a slot is free; True if one started."""
        with self._lock:
            ticket = next((t for t in self._tickets if t.waiting), None)
        if ticket is None:
            return False
        try:
            job = self.manager.start(ticket.config, threads=self.threads_per_run())
        except JobLimitError:
            return False
        except Exception as e:  # a run that cannot start must not block the ones behind it
            ticket.error = f"{type(e).__name__}: {e}"
            return True
        ticket.job_id = job.id
        return True

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
            while self._start_next():
                pass
            self._wake.wait(self.poll_s if self.waiting() else None)
            self._wake.clear()
