"""The control scope: one cancellation token and one per-input deadline for every run."""

from __future__ import annotations

import threading
import time

import pytest

from pipetune.core.kernel import control, workers
from pipetune.core.kernel.errors import StageError, StageTimeout
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.runtime.offline import run_offline
from pipetune.core.runtime.online import run_online


def slow(x: int) -> int:
    time.sleep(0.02)
    return x


def test_outside_a_scope_nothing_is_cancelled_or_bounded() -> None:
    control.cancel("ignored")  # the inert token: a stray cancel cancels nothing
    assert not control.cancelled() and control.item_timeout() is None
    control.check()


def test_scopes_share_the_token_and_replace_the_deadline() -> None:
    with control.scope(item_timeout_s=5) as outer:
        with control.scope(item_timeout_s=1) as inner:
            assert inner.token is outer.token and control.item_timeout() == 1
            assert control.capped(30) == 1 and control.item_timeout(7) == 7
        assert control.item_timeout() == 5
        outer.token.cancel("test")
        with pytest.raises(control.Cancelled, match="test"):
            control.check()
    assert not control.cancelled()


def test_a_cancelled_token_stops_a_run_and_the_next_one_refuses_to_start() -> None:
    items = list(range(200))
    with control.scope(item_timeout_s=10) as scope:
        timer = threading.Timer(0.15, scope.token.cancel)
        timer.start()
        result = run_offline(Pipeline("p", (Stage("slow", slow),)), items)
        assert result.stopped and 0 < result.attempted < len(items)
        with pytest.raises(control.Cancelled):
            run_offline(Pipeline("p", (Stage("slow", slow),)), items)
        with pytest.raises(control.Cancelled):
            control.complete(result)


@pytest.mark.slow
def test_the_deadline_is_per_input_never_a_whole_pass() -> None:
    # 30 inputs of 20 ms: the pass takes 0.6 s, far over the 0.2 s per-input deadline
    result = run_offline(Pipeline("p", (Stage("slow", slow),)), range(30), timeout_s=0.2)
    assert result.completed == 30 and result.wall_s > 0.2


def test_an_input_over_the_deadline_is_named_with_its_stage() -> None:
    def hang_on_four(x: int) -> int:
        if x == 4:
            threading.Event().wait(5)
        return x

    with control.scope(item_timeout_s=0.3), pytest.raises(StageTimeout) as caught:
        run_offline(Pipeline("p", (Stage("hang", hang_on_four),)), range(8))
    assert caught.value.stage == "hang" and caught.value.index == 4


def test_online_requests_get_the_deadline_once_a_worker_takes_them() -> None:
    result = run_online(Pipeline("p", (Stage("slow", slow),)), range(20), rate=200, timeout_s=0.5)
    assert result.completed == 20


def test_sys_exit_in_a_stage_is_a_stage_error() -> None:
    def leave(x: int) -> int:
        raise SystemExit(0)

    with pytest.raises(StageError, match=r"called sys.exit\(0\) on input #0"):
        run_offline(Pipeline("p", (Stage("leave", leave),)), [1])


def test_a_renumbered_error_names_the_workload_index() -> None:
    error = StageError("s", 1, "x", ValueError("bad"))
    assert error.renumbered([10, 33, 40]).index == 33
    assert "input #33" in str(error.renumbered([10, 33, 40]))
    timeout = StageTimeout("s", 0, "x", 3.0).renumbered([7])
    assert isinstance(timeout, StageTimeout) and timeout.index == 7


def test_a_worker_call_is_bounded_and_cancellable() -> None:
    assert workers.call(lambda: 41 + 1, timeout_s=1) == 42
    with pytest.raises(TimeoutError, match=r"a nap did not finish within 0\.1 s"):
        workers.call(lambda: time.sleep(1), timeout_s=0.1, what="a nap")
    with control.scope() as scope:
        threading.Timer(0.1, scope.token.cancel).start()
        started = time.monotonic()
        with pytest.raises(control.Cancelled):
            workers.call(lambda: time.sleep(2))
        assert time.monotonic() - started < 1.0
    with pytest.raises(ValueError, match="raised in the call"):
        workers.call(lambda: (_ for _ in ()).throw(ValueError("raised in the call")))


def test_worker_threads_see_the_callers_scope() -> None:
    with control.scope(item_timeout_s=3):
        assert workers.call(control.item_timeout) == 3
