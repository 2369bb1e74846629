"""Replaying a recorded trace's mix of sizes: each request serves an item of its size."""

from __future__ import annotations

import numpy as np

from pipetune import Pipeline, Stage, Trace
from pipetune.core.runtime.arrivals import match_sizes
from pipetune.core.runtime.online import run_online


def test_nearest_size_wins_and_similar_items_take_turns() -> None:
    items = ["a" * n for n in (1, 10, 10, 10, 50, 100)]
    index = match_sizes(items, [10, 10, 10, 10, 100, 1, 48, 1000])
    assert index is not None
    assert [len(items[i]) for i in index] == [10, 10, 10, 10, 100, 1, 50, 100]
    assert sorted(index[:3]) == [1, 2, 3] and index[3] == index[0]  # the 10-long items rotate


def test_items_without_a_size_fall_back_to_order() -> None:
    assert match_sizes([object(), object()], [1, 2]) is None


def test_run_online_replays_the_recorded_sizes() -> None:
    items = tuple("w " * n for n in range(1, 30))
    pipeline = Pipeline("texts", (Stage("words", str.split), Stage("count", len)))
    sizes = [2 * n for n in (3, 3, 28, 1, 15) * 8]
    trace = Trace(tuple(i * 0.002 for i in range(len(sizes))), tuple(sizes), "texts")
    result = run_online(pipeline, items, trace=trace)
    served = [len(items[i]) for i in result.item_index]
    assert served[:5] == sizes[:5]  # the first request of each size gets the nearest item
    assert all(abs(got - want) <= 0.1 * want for got, want in zip(served, sizes, strict=True))
    assert len(set(served)) > len(set(sizes))  # similar items take turns
    assert list(result.outputs) == [n // 2 for n in served]
    # without sizes, items are served in order
    plain = run_online(pipeline, items, trace=Trace(trace.arrivals_s, None, "texts"))
    assert np.array_equal(plain.item_index, np.arange(len(sizes)) % len(items))
