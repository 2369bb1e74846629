"""The serving loop the recorded modes share: serving a chunk, stopping, supervising."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from pipetune.core.kernel import control
from pipetune.core.kernel.errors import StageError, StageTimeout
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.runtime.recorder import _Recorder
from pipetune.core.runtime.serving_loop import ServingLoop


def loop_over(
    fn: Callable[[Any], Any], progress: Callable[[int], None] | None = None
) -> ServingLoop:
    recorder = _Recorder(Pipeline("p", (Stage("s", fn),)), 4, on_error="stop")
    return ServingLoop(recorder, ["worker-0", "worker-1"], progress)


def test_a_served_chunk_is_recorded_and_counted() -> None:
    counts: list[int] = []
    loop = loop_over(lambda x: x * 2, progress=counts.append)
    assert loop.serve(range(0, 2), [1, 2], 0, True) and loop.serve([2], [3], 1, False)
    assert counts == [2, 3] and loop.states[0].stage == ""
    result = loop.result(wall_s=1.0, stopped=False, mode="offline", executor="thread", settings={})
    assert result.outputs[:3] == [2, 4, 6] and result.workers == 2 and not result.stopped


def test_an_interrupt_inside_a_stage_stops_and_keeps_what_was_measured() -> None:
    def interrupt(x: int) -> int:
        if x == 1:
            raise KeyboardInterrupt
        return x

    loop = loop_over(interrupt)
    assert loop.serve([0], [0], 0, False)
    assert not loop.serve([1], [1], 0, False)
    assert loop.stop.is_set() and loop.interrupted.is_set()
    result = loop.result(wall_s=1.0, stopped=False, mode="offline", executor="inline", settings={})
    assert result.stopped and result.ok[:2] == [True, False]


def test_a_failure_ends_the_run_and_is_raised_by_the_result() -> None:
    def fail(x: int) -> int:
        raise ValueError("bad")

    loop = loop_over(fail)
    assert not loop.serve([0], [0], 0, False) and loop.stop.is_set()
    with pytest.raises(StageError, match="bad"):
        loop.result(wall_s=1.0, stopped=False, mode="online", executor="thread", settings={})


def test_the_supervisor_names_the_stage_over_the_deadline() -> None:
    release = threading.Event()
    loop = loop_over(lambda x: release.wait(5))
    worker = threading.Thread(target=loop.serve, args=([0], [0], 0, False), daemon=True)
    worker.start()
    try:
        with pytest.raises(StageTimeout) as caught:
            loop.supervise([worker], timeout_s=0.1)
        assert caught.value.stage == "s" and caught.value.index == 0 and loop.stop.is_set()
    finally:
        release.set()


def test_a_cancelled_token_halts_the_workers_and_wakes_them() -> None:
    woken = threading.Event()
    with control.scope() as scope:
        loop = loop_over(lambda x: x)
        worker = threading.Thread(target=woken.wait, args=(5,), daemon=True)
        worker.start()
        scope.token.cancel()
        started = time.perf_counter()
        assert loop.supervise([worker], timeout_s=None, wake=woken.set) is True
        assert loop.stop.is_set() and woken.is_set() and time.perf_counter() - started < 1.0
        with pytest.raises(KeyboardInterrupt):
            loop.watch(None)
