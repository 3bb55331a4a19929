"""The worker's event stream: step events batched, nothing reordered or lost, held runs flushed."""

from __future__ import annotations

import io
import json
import threading
import time

from hcl_core.config import RunConfig
from hcl_core.control import RunControl
from hcl_core.jobs import JobManager
from hcl_core.worker import BATCH_S, EventPipe


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CountingStream(io.StringIO):
    """A text stream that counts its write calls (each one a wake-up of the reading app)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        return super().write(s)


def _events(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _step(n: int) -> dict:
    return {"type": "step", "step": n, "loss": 1.0 / n}


def test_steps_wait_for_the_batch_interval_and_other_events_go_at_once_in_order():
    out, clock = CountingStream(), Clock()
    pipe = EventPipe(out, batch_s=0.25, clock=clock)
    pipe.send({"type": "start"})
    pipe.send(_step(1))  # the first point of the chart: at once
    assert [e.get("step") for e in _events(out)] == [None, 1] and out.writes == 2
    for n in range(2, 6):
        clock.now += 0.01
        pipe.send(_step(n))
    assert len(_events(out)) == 2  # held
    pipe.send({"type": "epoch", "epoch": 1})  # goes out with the steps before it, after them
    assert [e["type"] for e in _events(out)] == ["start", "step", "step", "step", "step", "step", "epoch"]
    assert [e["step"] for e in _events(out) if e["type"] == "step"] == [1, 2, 3, 4, 5]
    assert out.writes == 3
    clock.now += 0.1
    pipe.send(_step(6))
    clock.now += 0.2  # 0.3 s since the last write: this step takes the waiting one with it
    pipe.send(_step(7))
    assert [e.get("step") for e in _events(out)][-2:] == [6, 7] and out.writes == 4


def test_a_fast_run_writes_a_few_times_a_second_instead_of_at_every_step():
    out, clock = CountingStream(), Clock()
    pipe = EventPipe(out, clock=clock)
    for n in range(1, 901):  # ten seconds at 90 steps/s
        clock.now += 1 / 90
        pipe.send(_step(n))
    pipe.flush()
    assert [e["step"] for e in _events(out)] == list(range(1, 901))  # none lost, none reordered
    assert out.writes <= 10 / BATCH_S + 2


def test_a_held_run_flushes_its_last_steps_before_it_waits():
    out = CountingStream()
    pipe = EventPipe(out)
    control = RunControl()
    control.on_hold = pipe.flush
    pipe.send(_step(1))
    pipe.send(_step(2))  # within BATCH_S of the first: waits
    assert len(_events(out)) == 1
    control.pause()
    waiter = threading.Thread(target=control.wait_turn)
    waiter.start()
    deadline = time.monotonic() + 2
    while len(_events(out)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [e["step"] for e in _events(out)] == [1, 2]  # on screen while the run is held
    control.set()
    waiter.join(2)
    assert not waiter.is_alive()


def test_a_running_control_never_calls_on_hold():
    calls = []
    control = RunControl()
    control.on_hold = lambda: calls.append(1)
    for _ in range(100):
        assert control.wait_turn(0.01)
    control.pause()
    control.step()
    assert control.wait_turn(0.01)  # a credit: not held
    assert calls == []


def test_a_closed_pipe_stops_the_run_instead_of_raising():
    out = io.StringIO()
    control = RunControl()
    pipe = EventPipe(out, on_broken=control.set)
    out.close()
    pipe.send({"type": "start"})
    assert control.is_set()


def test_a_real_worker_delivers_every_step_of_a_run_in_order(tmp_path):
    manager = JobManager(tmp_path, max_active=1, warm=False)
    try:
        job = manager.start(RunConfig(epochs=6, max_train=200, eval_size=50, snapshot_every=3, batch_size=16,
                                      threads=1))
        assert job.wait(120)
        s = job.view()
        assert s.state == "finished"
        assert [n for n, _ in s.steps] == list(range(1, s.total_steps + 1))
        assert [e["epoch"] for e in s.evals] == [0, 3, 6]
    finally:
        manager.shutdown()
