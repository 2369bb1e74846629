"""on_error="skip": the inputs the original fails on are set aside and listed."""

from __future__ import annotations

import pytest

from pipetune.core.kernel.errors import PipelineError
from pipetune.core.kernel.model import Pipeline, Stage, Workload
from pipetune.core.loop.screening import screen


def decode(x: int) -> int:
    if x in (2, 5):
        raise OSError(f"#{x} is truncated")
    return x * 10


def test_failing_inputs_are_set_aside_with_their_workload_index() -> None:
    workload = Workload(items=tuple(range(8)), labels=tuple(range(8)))
    screened = screen(Pipeline("p", (Stage("decode", decode),)), workload)
    assert screened.kept == (0, 1, 3, 4, 6, 7)
    assert screened.workload.items == (0, 1, 3, 4, 6, 7)
    assert screened.workload.labels == (0, 1, 3, 4, 6, 7)
    assert screened.outputs == [0, 10, 30, 40, 60, 70]
    assert [(s["index"], s["stage"]) for s in screened.skipped] == [(2, "decode"), (5, "decode")]
    assert screened.warning(8).startswith("2 of 8 inputs skipped (--on-error skip)")


def test_nothing_left_is_an_error() -> None:
    with pytest.raises(PipelineError, match="fails on every one of the 2 inputs"):
        screen(Pipeline("p", (Stage("decode", decode),)), Workload(items=(2, 5)))
