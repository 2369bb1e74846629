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
    second = workers.start(_ident, (seen,), "pipetune-test")
    second.join(5)
    assert not first.is_alive() and not second.is_alive()
    assert seen[0] == seen[1] and seen[0] != threading.get_ident()


def test_a_busy_worker_is_not_handed_out_and_errors_stay_on_the_handle() -> None:
    release = threading.Event()
    seen: list[int] = []

    def busy() -> None:
        seen.append(threading.get_ident())
        release.wait(5)

    def fail() -> None:
        seen.append(threading.get_ident())
        raise ValueError("boom")

    stuck = workers.start(busy)
    failed = workers.start(fail)
    failed.join(5)
    assert isinstance(failed.error, ValueError) and stuck.is_alive()
    assert seen[0] != seen[1]  # the busy (hung) worker was not given the second job
    release.set()
    stuck.join(5)
    assert not stuck.is_alive()
    after = workers.start(_ident, (seen,))  # the worker that raised still serves
    after.join(5)
    assert seen[-1] in seen[:2]
