"""The offline runtime: one worker, worker threads, errors, deadlines, Ctrl-C, spans."""

from __future__ import annotations

import _thread
import itertools
import signal
import threading
import time
from typing import Any

import numpy as np
import pytest

from pipetune.core.kernel.errors import ConfigError, StageError, StageTimeout
from pipetune.core.kernel.model import Pipeline, Stage, Workload
from pipetune.core.runtime import threads
from pipetune.core.runtime.offline import run, run_offline


def double(x: int) -> int:
    return x * 2


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three is not allowed")
    return x + 1


def pipeline(*stages: Stage) -> Pipeline:
    return Pipeline("p", stages or (Stage("double", double), Stage("inc", fail_on_three)))


def test_outputs_in_order_and_rows_sum_to_latency() -> None:
    result = run_offline(pipeline(), [0, 1, 2, 4], spans=True)
    assert result.outputs == [1, 3, 5, 9]
    assert result.ok == [True] * 4
    assert result.stage_s.shape == (4, 3)  # two stages + other
    assert np.allclose(result.stage_s.sum(axis=1), result.latency_s)
    assert (result.done_s >= result.start_s).all()
    assert result.executor == "inline" and result.workers == 1 and result.attempted == 4
    assert result.threads["pinned"] is False


@pytest.mark.parametrize("workers", [2, 4])
def test_worker_threads_give_the_same_outputs(workers: int) -> None:
    items = list(range(0, 40, 2))
    result = run_offline(pipeline(), items, workers=workers, spans=True, measure_cpu=True)
    assert result.outputs == [x * 2 + 1 for x in items]
    assert result.executor == "thread" and result.workers == workers
    assert result.cpu_clock == "thread" and result.cpu_s is not None
    assert {span.worker for span in result.spans} <= {f"worker-{w}" for w in range(workers)}
    assert len(result.spans) == 2 * len(items)


def test_threads_overlap_waiting_stages() -> None:
    """Structure, not speed: with 4 workers, some sleep spans overlap in time."""
    nap = Pipeline("nap", (Stage("nap", lambda x: time.sleep(0.02) or x),))
    result = run_offline(nap, list(range(8)), workers=4, spans=True)
    spans = sorted(result.spans, key=lambda s: s.start_s)
    assert any(b.start_s < a.end_s for a, b in itertools.pairwise(spans))


def test_batches_use_batch_fn() -> None:
    calls: list[int] = []

    def batch(xs: list[int]) -> list[int]:
        calls.append(len(xs))
        return [x * 10 for x in xs]

    p = Pipeline("b", (Stage("ten", lambda x: x * 10, batch_fn=batch),))
    result = run_offline(p, list(range(7)), batch_size=3)
    assert result.outputs == [x * 10 for x in range(7)]
    assert calls == [3, 3, 1]
    # Inputs of one batch share the batch's time.
    assert result.stage_s[0, 0] == result.stage_s[2, 0]


def test_stop_names_stage_input_and_exception() -> None:
    with pytest.raises(StageError) as info:
        run_offline(pipeline(Stage("inc", fail_on_three)), [1, 2, 3, 4])
    message = str(info.value)
    assert "'inc'" in message and "input #2" in message and "ValueError" in message
    assert "three is not allowed" in message


def test_stop_from_a_worker_thread_is_raised_in_the_caller() -> None:
    with pytest.raises(StageError, match="'inc'"):
        run_offline(pipeline(Stage("inc", fail_on_three)), list(range(10)), workers=3)


@pytest.mark.parametrize("workers", [1, 3])
def test_skip_records_errors_and_goes_on(workers: int) -> None:
    result = run_offline(
        pipeline(Stage("inc", fail_on_three)), list(range(6)), on_error="skip", workers=workers
    )
    assert result.ok == [True, True, True, False, True, True]
    assert result.outputs[3] is None and result.outputs[4] == 5
    assert [(e.index, e.stage) for e in result.errors] == [(3, "inc")]
    assert "ValueError" in result.errors[0].error


def test_deadline_names_the_stuck_stage() -> None:
    release = threading.Event()

    def stuck(x: int) -> int:
        if x == 2:
            release.wait(5)
        return x

    p = pipeline(Stage("fast", double), Stage("stuck", stuck))
    try:
        with pytest.raises(StageTimeout) as info:
            run_offline(p, [0, 3, 1, 3], timeout_s=0.3)  # double(1) == 2 gets stuck
        assert info.value.stage == "stuck" and info.value.index == 2
    finally:
        release.set()


def test_ctrl_c_keeps_what_was_measured() -> None:
    def interrupt(x: int) -> int:
        if x == 3:
            raise KeyboardInterrupt
        return x

    result = run_offline(pipeline(Stage("s", interrupt)), list(range(6)))
    assert result.stopped is True
    assert result.ok == [True, True, True, False, False, False]
    assert result.completed == 3


def test_ctrl_c_with_worker_threads_stops_cleanly() -> None:
    """Ctrl-C lands in the supervising (main) thread; workers finish their input."""

    def stage(x: int) -> int:
        if x == 5:
            _thread.interrupt_main()
        time.sleep(0.005)
        return x

    # A process started in the background by a shell without job control ignores SIGINT,
    # and then interrupt_main() does nothing: install the handler a terminal would give.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = run_offline(pipeline(Stage("s", stage)), list(range(200)), workers=2)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert result.stopped is True
    assert 0 < result.completed < 200
    assert all(result.outputs[i] == i for i in range(200) if result.ok[i])


def test_observations_are_bounded_and_aligned() -> None:
    result = run_offline(pipeline(), [0, 1, 2, 4, 5], observe=3)
    observed = result.observed
    assert observed is not None
    assert observed.indices == [0, 1, 2]
    assert observed.inputs_of("inc") == [0, 2, 4]
    assert observed.outputs_of("inc") == [1, 3, 5]


def test_time_boxed_run_covers_what_ran() -> None:
    nap = Pipeline("nap", (Stage("nap", lambda x: time.sleep(0.01) or x),))
    result = run_offline(nap, list(range(10_000)), max_duration_s=0.05, min_items=3)
    assert 3 <= len(result.ok) < 10_000
    assert all(result.ok)


def test_progress_counts_inputs() -> None:
    seen: list[int] = []
    run_offline(pipeline(), [0, 1, 2, 4], progress=seen.append)
    assert seen == [1, 2, 3, 4]


def test_thread_pin_is_recorded_in_the_result() -> None:
    with threads.pin_threads(1):
        result = run_offline(pipeline(), [1])
    assert result.threads["pinned"] is True and result.threads["requested"] == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"on_error": "ignore"}, "on_error"),
        ({"batch_size": 0}, "batch_size"),
        ({"workers": 0}, "workers"),
        ({"executor": "fork"}, "executor"),
        ({"executor": "process"}, "factory"),
        ({"timeout_s": 0}, "timeout_s"),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run_offline(pipeline(), [1], **options)


def test_run_dispatches_on_the_workload_mode() -> None:
    result = run(pipeline(), Workload(items=(0, 1)))
    assert result.mode == "offline" and result.outputs == [1, 3]
    with pytest.raises(ConfigError, match="rate"):
        run(pipeline(), Workload(items=(0, 1), mode="online"))


def test_online_and_stream_are_reachable_from_the_runtime_module() -> None:
    """The validator calls runtime.run_<mode> with the serving options' names."""
    from pipetune.core.kernel.model import Trace
    from pipetune.core.runtime import offline as runtime

    calls: list[int] = []

    def batch(xs: list[int]) -> list[int]:
        calls.append(len(xs))
        return [x * 2 for x in xs]

    p = Pipeline("b", (Stage("b", double, batch_fn=batch),))
    result = runtime.run_online(
        p, [1, 2, 3, 4], trace=Trace((0, 0, 0, 0)), batch_size=4, max_delay_ms=1.0
    )
    assert result.mode == "online" and result.outputs == [2, 4, 6, 8] and calls == [4]
    with pytest.raises(ConfigError, match="both batch_size"):
        runtime.run_online(p, [1], rate=10, batch_size=2, max_batch=3)
    with pytest.raises(ConfigError, match="serve"):
        runtime.run_stream(p, [1], rate=10, batch_size=2, max_delay_ms=1.0)


def test_interrupt_raised_inside_a_worker_thread_stops_cleanly() -> None:
    def stage(x: int) -> int:
        if x == 4:
            raise KeyboardInterrupt
        return x

    result = run_offline(pipeline(Stage("s", stage)), list(range(20)), workers=2)
    assert result.stopped is True
    assert not result.ok[4] and result.completed >= 1
