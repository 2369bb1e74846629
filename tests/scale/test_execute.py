"""A group of stages over a batch: one outcome per input, batch failures isolated."""

from __future__ import annotations

import threading

import pytest

from pipetune import Stage
from pipetune.scale.execute import failing_stage, run_group


def double(x):
    if x == 3:
        raise ValueError("three")
    return 2 * x


def double_batch(items):
    if 3 in items:
        raise ValueError("a batch with three")
    return [2 * x for x in items]


def test_a_failing_batch_is_retried_one_input_at_a_time():
    stages = [Stage("double", double, batch_fn=double_batch), Stage("inc", lambda x: x + 1)]
    result = run_group(stages, [1, 2, 3, 4, 5], batch_size=2)
    assert result.outputs == [3, 5, None, 9, 11]
    assert result.failures == {2: ("double", "ValueError", "three")}
    assert set(result.stage_s) == {"double", "inc"}


def test_io_groups_run_their_calls_concurrently():
    together = threading.Barrier(4, timeout=10)  # passes only if 4 calls run at once

    def wait(x):
        together.wait()
        return x

    result = run_group([Stage("io", wait)], list(range(16)), threads=4)
    assert result.outputs == list(range(16)) and not result.failures


def test_the_failing_stage_is_named_from_the_traceback():
    stage = Stage("double", double)
    try:
        stage(3)
    except ValueError as exc:
        assert failing_stage(exc) == "double"
    assert failing_stage(ValueError("not raised by a stage")) is None


@pytest.mark.slow
def test_a_hung_input_is_a_timeout_of_its_stage_and_the_others_go_on():
    release = threading.Event()

    def hang_on_two(x):
        if x == 2:
            release.wait(30)
        return x

    try:
        result = run_group([Stage("slow", hang_on_two)], [1, 2, 3], timeout_s=0.5)
    finally:
        release.set()
    assert result.outputs == [1, None, 3]
    stage, kind, message = result.failures[1]
    assert (stage, kind) == ("slow", "TimeoutError") and "0.5 s" in message
