"""Long-lived worker threads: reused across passes, never handed out while busy."""

from __future__ import annotations

import threading

from pipetune.core.kernel import workers


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
    started = threading.Event()
    release = threading.Event()
    ran_on: dict[str, threading.Thread] = {}

    def busy() -> None:
        ran_on["busy"] = threading.current_thread()
        started.set()
        release.wait(5)

    def fail() -> None:
        ran_on["fail"] = threading.current_thread()
        raise ValueError("boom")

    stuck = workers.start(busy)
    # the busy job must be running before the second is handed out (a worker thread may
    # not have been scheduled yet; CI once saw the second job finish first)
    assert started.wait(5)
    failed = workers.start(fail)
    failed.join(5)
    assert isinstance(failed.error, ValueError) and stuck.is_alive()
    assert ran_on["busy"] is not ran_on["fail"]  # the busy worker did not get the second job
    assert ran_on["fail"].is_alive()  # the worker that raised survives to serve again
    assert workers.busy() >= 1  # the busy job's worker is not idle
    release.set()
    stuck.join(5)
    assert not stuck.is_alive()
