"""Pause, resume and single-step: the RunControl between two steps, and a real job held and stepped."""

from __future__ import annotations

import threading
import time

import pytest

from hcl_core.config import RunConfig
from hcl_core.control import RunControl
from hcl_core.jobs import JobManager


def test_a_paused_control_blocks_a_step_lets_exactly_one_through_and_a_stop_wakes_it():
    c = RunControl()
    assert c.wait_turn(0.01) and not c.is_set()  # running: every step may go
    c.pause()
    assert not c.wait_turn(0.05) and c.paused  # held
    c.step()
    assert c.wait_turn(0.05)  # exactly one step through ...
    assert not c.wait_turn(0.05)  # ... then held again
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(c.wait_turn()))
    waiter.start()
    time.sleep(0.05)
    c.set()
    waiter.join(2)
    assert got == [False] and c.is_set()  # a stop wins while paused
    c2 = RunControl()
    c2.pause()
    c2.resume()
    assert c2.wait_turn(0.01) and not c2.paused


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_running_job_pauses_steps_once_resumes_and_stops(tmp_path):
    manager = JobManager(tmp_path, max_active=1, warm=False)
    try:
        job = manager.start(RunConfig(epochs=500, max_train=200, eval_size=50, snapshot_every=500,
                                      batch_size=16, threads=1))
        deadline = time.monotonic() + 90
        while job.view().step < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        job.pause()
        time.sleep(0.5)  # a step in flight may still land
        held = job.view().step
        time.sleep(1.0)
        assert job.view().step == held and job.view().paused  # nothing trains while paused
        job.step()
        while job.view().step == held and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)
        assert job.view().step == held + 1  # one step, then held again
        job.resume()
        while job.view().step < held + 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert job.view().step >= held + 5 and not job.view().paused
        job.pause()
        assert job.stop(timeout=2.0)  # a paused run stops too
        assert job.view().state == "stopped"
    finally:
        manager.shutdown()
