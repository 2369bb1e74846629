"""The figures of an online run: rates, queue growth and the overload verdict."""

from __future__ import annotations

import numpy as np

from pipetune.core.runtime.online_stats import MIN_REQUESTS_FOR_VERDICT, _queue_growth, analyse
from pipetune.core.runtime.result import RunResult


def served(arrival: np.ndarray, start: np.ndarray, done: np.ndarray) -> RunResult:
    n = len(arrival)
    return RunResult(
        outputs=[None] * n,
        ok=[True] * n,
        latency_s=done - arrival,
        stage_s=np.c_[done - start, np.zeros(n)],
        wall_s=float(done.max()),
        stage_names=("s",),
        mode="online",
        arrival_s=arrival,
        start_s=start,
        done_s=done,
        busy_s=float((done - start).sum()),
    )


def test_a_queue_wait_that_keeps_growing_is_growth() -> None:
    service = np.full(30, 0.001)
    growth, growing = _queue_growth(np.linspace(0.0, 0.3, 30), service, np.arange(30.0))
    assert growing and growth is not None and growth[1] > growth[0]
    assert _queue_growth(np.full(30, 0.002), service, np.arange(30.0))[1] is False


def test_a_short_run_gets_no_verdict_and_a_steady_one_keeps_up() -> None:
    arrival = np.arange(5) * 0.1
    result = served(arrival, arrival, arrival + 0.01)
    submit = arrival.copy()
    attempted = np.ones(5, dtype=bool)
    stats = analyse(
        result,
        submit,
        source="poisson",
        offered_rps=10.0,
        max_batch=1,
        max_wait_ms=0.0,
        attempted=attempted,
    )
    assert not stats.overloaded and stats.verdict.startswith("only 5 requests")
    n = MIN_REQUESTS_FOR_VERDICT
    arrival = np.arange(n) * 0.1
    stats = analyse(
        served(arrival, arrival, arrival + 0.01),
        arrival.copy(),
        source="poisson",
        offered_rps=10.0,
        max_batch=1,
        max_wait_ms=0.0,
        attempted=np.ones(n, dtype=bool),
    )
    assert not stats.overloaded and stats.verdict.startswith("keeps up")
    assert stats.max_queue_depth == 0 and round(stats.completed_rps, 1) == 10.3
