"""Long-lived worker threads: reused across passes, never handed out while busy."""

from __future__ import annotations

import threading

from pipetune.core import workers


def _ident(out: list[int]) -> None:
    out.append(threading.get_ident())


def test_a_finished_worker_is_reused() -> None:
    seen: list[int] = []
    first = workers.start(_ident, (seen,), "pipetune-test")
    first.join(5)
    created = workers._count
    second = workers.start(_ident, (seen,), "pipetune-test")
    second.join(5)
    assert not first.is_alive() and not second.is_alive()
    assert workers._count == created  # an idle thread served it: none was created
    assert threading.get_ident() not in seen


def test_a_busy_worker_is_not_handed_out_and_errors_stay_on_the_handle() -> None:
    release = threading.Event()
    ran_on: list[threading.Thread] = []

    def busy() -> None:
        ran_on.append(threading.current_thread())
        release.wait(5)

    def fail() -> None:
        ran_on.append(threading.current_thread())
        raise ValueError("boom")

    stuck = workers.start(busy)
    failed = workers.start(fail)
    failed.join(5)
    assert isinstance(failed.error, ValueError) and stuck.is_alive()
    assert ran_on[0] is not ran_on[1]  # the busy (hung) worker was not given the second job
    assert ran_on[1].is_alive()  # the worker that raised survives to serve again
    release.set()
    stuck.join(5)
    assert not stuck.is_alive()
