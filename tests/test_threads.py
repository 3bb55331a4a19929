"""The thread limiter: re-entrant, safe when users on different threads interleave, and train() leaves counts alone."""

from __future__ import annotations

import threading

import torch
from threadpoolctl import threadpool_info

from hcl_core.config import RunConfig
from hcl_core.threads import limited_threads


def _blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def test_the_limit_holds_inside_and_is_restored_after_nesting():
    torch_before, blas_before = torch.get_num_threads(), _blas_threads()
    with limited_threads():
        assert torch.get_num_threads() == 1 and all(n == 1 for n in _blas_threads())
        with limited_threads():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == torch_before and _blas_threads() == blas_before


def test_interleaved_users_on_two_threads_restore_the_original_count():
    """A enters, B enters, A leaves, B leaves: the count must come back to the original.

    Two separate save-and-restore helpers (one per page) restored the wrong value here: B saved
    A's 1 and put it back last, leaving the process on one thread.
    """
    torch.set_num_threads(2)
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[int] = []

    def a() -> None:
        with limited_threads():
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def b() -> None:
        a_in.wait(5)
        with limited_threads():
            b_in.set()
            a_out.wait(5)
            seen.append(torch.get_num_threads())

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == [1]  # still limited while B is inside, although A has left
    assert torch.get_num_threads() == 2


def test_training_does_not_change_the_callers_thread_count(tmp_path):
    from hcl_core.train import train

    torch.set_num_threads(2)
    train(RunConfig(epochs=1, threads=1, eval_size=50, snapshot_every=1, max_train=200), root=tmp_path)
    assert torch.get_num_threads() == 2
