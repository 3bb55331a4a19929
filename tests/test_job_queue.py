"""The job queue: a comparison of several runs starts them as slots allow, in order, and never exceeds the limit."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from hcl_core.config import RunConfig
from hcl_core.job_queue import JobQueue
from hcl_core.jobs import JobManager

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

TINY = dict(dataset="digits", epochs=1, max_train=200, eval_size=50, snapshot_every=1, batch_size=64, threads=1)


def _start_event(run_dir: str) -> dict:
    with open(Path(run_dir) / "metrics.jsonl") as f:
        return next(e for e in map(json.loads, f) if e.get("type") == "start")


def test_queued_runs_start_in_order_within_the_limit_and_all_finish(tmp_path):
    manager = JobManager(tmp_path, max_active=1, warm=False)
    queue = JobQueue(manager, poll_s=0.05)
    try:
        configs = [RunConfig(loss=loss, **{**TINY, "threads": 0}) for loss in ("info_nce", "hcl", "hard_supcon")]
        tickets = queue.submit(configs, group="cmp")
        most_active = 0
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline:
            jobs = manager.jobs()
            most_active = max(most_active, sum(j.active for j in jobs))
            if all(t.job_id is not None for t in tickets) and not any(j.active for j in jobs):
                break
            time.sleep(0.05)
        assert most_active == 1
        ids = [t.job_id for t in tickets]
        assert None not in ids and ids == sorted(ids)
        states = [manager.get(i).view().state for i in ids]
        assert states == ["finished"] * 3, states
        cores = len(os.sched_getaffinity(0))
        assert queue.threads_per_run() == cores  # one run at a time: all the cores
        assert [_start_event(manager.get(i).view().run_dir)["threads"] for i in ids] == [cores] * 3
        assert [manager.get(i).view().config.loss for i in ids] == ["info_nce", "hcl", "hard_supcon"]
    finally:
        queue.shutdown()
        manager.shutdown()


def test_cancel_drops_only_the_runs_that_have_not_started(tmp_path):
    manager = JobManager(tmp_path, max_active=1, warm=False)
    queue = JobQueue(manager, poll_s=0.05)
    try:
        long = RunConfig(loss="info_nce", **{**TINY, "epochs": 200})
        first, second = queue.submit([long, RunConfig(loss="hcl", **TINY)], group="g")
        deadline = time.monotonic() + 60
        while first.job_id is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.job_id is not None and second.waiting
        assert queue.cancel("g") == 1
        assert second.cancelled and not second.waiting
        manager.get(first.job_id).stop(timeout=5)
        time.sleep(0.5)
        assert second.job_id is None  # never started
    finally:
        queue.shutdown()
        manager.shutdown()


def test_runs_that_ended_are_handed_over_once_nothing_trains(tmp_path):
    calls: list[tuple[list[str], bool]] = []
    manager = JobManager(tmp_path, max_active=2, warm=False,
                         after_runs=lambda dirs: calls.append((dirs, any(j.active for j in manager.jobs()))))
    try:
        long = manager.start(RunConfig(loss="info_nce", **{**TINY, "epochs": 200}))
        short = manager.start(RunConfig(loss="hcl", **TINY))
        assert short.wait(120) and short.view().state == "finished"
        deadline = time.monotonic() + 60
        while long.view().step == 0:  # its folder exists: a run to hand over
            assert time.monotonic() < deadline, "the long run never trained"
            time.sleep(0.05)
        time.sleep(0.2)
        assert calls == [], "handed over while another run still trains"
        long.stop(timeout=5)
        assert long.wait(30)
        assert calls == [], "handed over at once: the page showing the end should redraw first (SETTLE_S)"
        deadline = time.monotonic() + 10
        while not calls and time.monotonic() < deadline:
            time.sleep(0.05)
        assert calls == [([short.view().run_dir, long.view().run_dir], False)]
    finally:
        manager.shutdown()


def test_runs_side_by_side_share_the_cores_unless_their_config_names_a_number(tmp_path):
    manager = JobManager(tmp_path, max_active=2, warm=False)
    queue = JobQueue(manager, poll_s=0.05)
    try:
        share = max(1, len(os.sched_getaffinity(0)) // 2)
        assert queue.threads_per_run() == share
        tickets = queue.submit([RunConfig(loss="hcl", **{**TINY, "threads": 0}),
                                RunConfig(loss="info_nce", **{**TINY, "threads": 3})], group="g")
        deadline = time.monotonic() + 200
        while not (all(t.job_id is not None for t in tickets) and not any(j.active for j in manager.jobs())):
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.05)
        used = [_start_event(manager.get(t.job_id).view().run_dir)["threads"] for t in tickets]
        assert used == [share, 3]
    finally:
        queue.shutdown()
        manager.shutdown()
