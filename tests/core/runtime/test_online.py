"""Online mode: open-loop arrivals, queueing, the max-delay batcher, overload detection.

Assertions are about structure and ordering; the few that involve time use sleeps much
longer than scheduling noise, and generous bounds.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from pipetune.core.kernel.errors import ConfigError, StageError
from pipetune.core.kernel.model import Pipeline, Stage, Trace
from pipetune.core.runtime.online import run_online


def nap_pipeline(seconds: float, batch_calls: list[int] | None = None) -> Pipeline:
    def nap(x: int) -> int:
        time.sleep(seconds)
        return x

    def nap_batch(xs: list[int]) -> list[int]:
        if batch_calls is not None:
            batch_calls.append(len(xs))
        time.sleep(seconds)
        return list(xs)

    return Pipeline("nap", (Stage("nap", nap, batch_fn=nap_batch),))


def test_burst_queues_behind_one_worker_in_arrival_order() -> None:
    result = run_online(nap_pipeline(0.02), [1, 2, 3, 4], trace=Trace((0, 0, 0, 0)))
    assert result.mode == "online" and result.outputs == [1, 2, 3, 4]
    queue = result.queue_s
    assert (np.diff(queue) > 0).all()  # each waits for the ones before it
    assert (result.latency_s >= result.stage_s.sum(axis=1) - 1e-9).all()
    assert np.allclose(result.latency_s, queue + result.stage_s.sum(axis=1))
    assert result.latency_s[-1] > 3 * 0.02  # waited for three naps, then its own


def test_two_workers_serve_a_burst_in_pairs() -> None:
    result = run_online(
        nap_pipeline(0.03), list(range(4)), trace=Trace((0, 0, 0, 0)), workers=2, spans=True
    )
    order = np.argsort(result.start_s)
    # The first two start together; the last two wait about one nap.
    assert result.start_s[order[1]] - result.start_s[order[0]] < 0.02
    assert result.queue_s[order[2]] > 0.015
    assert len({span.worker for span in result.spans}) == 2


def test_batcher_fills_batches_from_a_backlog() -> None:
    calls: list[int] = []
    result = run_online(
        nap_pipeline(0.01, calls), list(range(8)), trace=Trace((0,) * 8), max_batch=4
    )
    assert calls == [4, 4] and result.batch_sizes == [4, 4]
    assert result.online.mean_batch == 4


def test_batcher_does_not_wait_past_max_wait() -> None:
    calls: list[int] = []
    # Arrivals 100 ms apart with a 5 ms max wait: every batch closes with one request.
    run_online(
        nap_pipeline(0.001, calls),
        [1, 2, 3],
        trace=Trace((0, 0.1, 0.2)),
        max_batch=8,
        max_wait_ms=5,
    )
    assert calls == [1, 1, 1]


def test_batcher_waits_for_a_second_request_within_max_wait() -> None:
    calls: list[int] = []
    run_online(
        nap_pipeline(0.001, calls),
        [1, 2],
        trace=Trace((0, 0.02)),
        max_batch=2,
        max_wait_ms=500,
    )
    assert calls == [2]


@pytest.mark.slow
def test_rates_are_reported_and_light_load_is_not_overloaded() -> None:
    result = run_online(nap_pipeline(0.001), list(range(40)), rate=40, seed=1)
    stats = result.online
    assert stats.source == "poisson" and stats.offered_rps == 40
    assert stats.requests == 40 and result.completed == 40
    assert stats.scheduled_rps > 0 and stats.submitted_rps > 0 and stats.completed_rps > 0
    assert stats.overloaded is False and stats.verdict.startswith("keeps up")
    assert stats.lag_ms["p50"] >= 0
    assert 0 < stats.utilization < 0.9


@pytest.mark.slow
def test_overload_is_detected() -> None:
    # 10 ms of service offered 200 requests per second: the queue can only grow.
    result = run_online(nap_pipeline(0.01), list(range(60)), rate=200, seed=0)
    stats = result.online
    assert stats.overloaded is True
    assert stats.verdict.startswith("overloaded")
    assert stats.queue_growth_ms is not None
    assert stats.queue_growth_ms[1] > stats.queue_growth_ms[0]
    assert stats.max_queue_depth > 5


def test_too_few_requests_get_no_verdict() -> None:
    result = run_online(nap_pipeline(0.001), [1, 2, 3], rate=100)
    assert result.online.overloaded is False
    assert "too few" in result.online.verdict


def test_requests_cycle_through_items() -> None:
    result = run_online(nap_pipeline(0.0), ["a", "b"], rate=1000, requests=5)
    assert result.outputs == ["a", "b", "a", "b", "a"]
    assert list(result.item_index) == [0, 1, 0, 1, 0]


def test_errors_stop_or_skip() -> None:
    def picky(x: int) -> int:
        if x == 2:
            raise RuntimeError("no twos")
        return x

    p = Pipeline("picky", (Stage("picky", picky),))
    with pytest.raises(StageError, match="'picky' raised RuntimeError on input #2"):
        run_online(p, [0, 1, 2, 3], rate=500)
    result = run_online(p, [0, 1, 2, 3], rate=500, on_error="skip")
    assert result.ok == [True, True, False, True]
    assert [e.index for e in result.errors] == [2]


def test_trace_from_another_pipeline_is_refused() -> None:
    with pytest.raises(ConfigError, match="recorded on pipeline 'other'"):
        run_online(nap_pipeline(0), [1], trace=Trace((0,), pipeline="other"))


def test_deadline_stops_a_stuck_run() -> None:
    from pipetune.core.kernel.errors import StageTimeout

    with pytest.raises(StageTimeout, match="'nap'"):
        run_online(nap_pipeline(1.0), [1, 2], trace=Trace((0, 0)), timeout_s=0.2)


def test_progress_counts_completions() -> None:
    seen: list[int] = []
    run_online(nap_pipeline(0.0), [1, 2, 3], rate=1000, progress=seen.append)
    assert sorted(seen) == [1, 2, 3]


def test_interrupt_inside_a_stage_keeps_what_was_measured() -> None:
    def stage(x: int) -> int:
        if x == 3:
            raise KeyboardInterrupt
        return x

    p = Pipeline("k", (Stage("k", stage),))
    result = run_online(p, list(range(10)), rate=1000)
    assert result.stopped is True
    assert result.ok[:3] == [True, True, True] and not result.ok[3]
