"""Thread counts of torch and of the BLAS libraries: one limiter for library code, one setter for owners.

Two rules keep a process's thread count right however its threads interleave:

* Library code that runs many small products (probes, kNN, theory grids, weight statistics,
  projections) wraps them in :func:`limited_threads`. On two busy cores a second OpenMP or BLAS
  thread only spin-waits for the first, so these calls are much faster on one. The limit is
  process-wide, so the limiter counts its users: the first to enter saves the counts and sets
  the limit, the last to leave restores them, whichever thread each one runs on and in whatever
  order they leave. Nested uses are free.
* Only the owner of a process (the app's worker, a sweep task, the ``train`` command) sets its
  thread count for good, with :func:`set_process_threads`; library functions never do.

``BENCHMARKS.md`` records what the limit saves.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["limited_threads", "set_process_threads"]

_LOCK = threading.Lock()
_users = 0
_saved_torch = 0
_blas_limiter: Any = None


@contextlib.contextmanager
def limited_threads(n: int = 1) -> Iterator[None]:
    """Run torch and BLAS on ``n`` threads while inside (re-entrant, safe across threads).

    The first user's ``n`` holds until the last user leaves: a nested or concurrent call with
    another ``n`` runs under the limit already in force.
    """
    global _users, _saved_torch, _blas_limiter
    import torch

    with _LOCK:
        if _users == 0:
            _saved_torch = torch.get_num_threads()
            # BLAS first: threadpoolctl restores every library it saw, torch's OpenMP included.
            from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

            # A fresh look at the loaded libraries each time: a BLAS loaded since (scipy's,
            # torch's) must be limited too.
            _blas_limiter = threadpool_limits(limits=n, user_api="blas")
            torch.set_num_threads(n)
        _users += 1
    try:
        yield
    finally:
        with _LOCK:
            _users -= 1
            if _users == 0:
                limiter, _blas_limiter = _blas_limiter, None
                limiter.restore_original_limits()
                torch.set_num_threads(_saved_torch)


def set_process_threads(n: int) -> None:
    """Set the process's torch threads to ``n`` (0 leaves torch's default). For process owners only."""
    if n:
        import torch

        torch.set_num_threads(n)
