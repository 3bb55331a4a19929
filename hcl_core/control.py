"""Stop, pause, resume and single-step a training run from another thread.

:func:`hcl_core.train.train` checks its ``stop`` object before every step. A :class:`RunControl`
is such an object that can also hold the run between two steps: paused, the loop waits (the
worker process then uses no CPU); :meth:`RunControl.step` lets exactly ``n`` more steps through
and pauses again, as TensorFlow Playground's step button does. A stop always wins, also while
paused. ``on_hold`` (optional) is called just before the loop is held, e.g. to send what the
run has done so far.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["RunControl"]


class RunControl:
    """A stop flag with a pause: ``is_set()`` says stop; :meth:`wait_turn` blocks while paused."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._stop = False
        self._paused = False
        self._credits = 0  # steps allowed through while paused
        self.on_hold: Callable[[], None] | None = None

    def is_set(self) -> bool:
        with self._cond:
            return self._stop

    @property
    def paused(self) -> bool:
        with self._cond:
            return self._paused and self._credits == 0

    def set(self) -> None:
        """Stop (also wakes a paused run so it can end)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()

    def pause(self) -> None:
        with self._cond:
            self._paused, self._credits = True, 0

    def resume(self) -> None:
        with self._cond:
            self._paused, self._credits = False, 0
            self._cond.notify_all()

    def step(self, n: int = 1) -> None:
        """Let ``n`` more steps through, then hold the run again (pauses it if it was running)."""
        with self._cond:
            self._paused = True
            self._credits += max(0, int(n))
            self._cond.notify_all()

    def wait_turn(self, timeout: float | None = None) -> bool:
        """Block while paused without credit; True when the next step may run, False on a stop.

        With ``timeout`` it returns False after that many seconds still paused (the caller may
        check for other work and wait again).
        """
        def free() -> bool:
            return self._stop or not self._paused or self._credits > 0

        with self._cond:
            holds = not free()
        if holds and self.on_hold is not None:  # outside the lock: it may take a while
            self.on_hold()
        with self._cond:
            ok = self._cond.wait_for(free, timeout)
            if self._stop or not ok:
                return False
            if self._paused:
                self._credits -= 1
            return True
