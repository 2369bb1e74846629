"""Parallel preprocessing: a thread pool or spawned worker processes built by a factory."""

from __future__ import annotations

import time

import pytest

from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.runtime.serving import ServingOptions
from pipetune.plugins.generic.parallel import materialize, parallel_stage

from .factories import build_pipeline, build_stage


def wait_then_double(x, *, delay):
    time.sleep(delay)
    return x * 2


def test_threads_keep_order_and_outputs():
    stage = Stage("io", wait_then_double, slots={"delay": 0.001})
    pool = parallel_stage(stage, workers=4)
    assert pool.call_batch(list(range(20))) == [x * 2 for x in range(20)]
    assert pool.meta["generic.parallel"] == {"how": "threads", "workers": 4}
    assert stage.batch_fn is None  # the original is untouched


def test_materialize_serves_the_pipeline_in_chunks_for_the_pool():
    pipeline = Pipeline("p", (Stage("io", wait_then_double, slots={"delay": 0.0}),))
    changed = materialize(pipeline, "io", {"workers": 3, "batch_size": 12, "how": "threads"})
    assert ServingOptions.of(changed).batch_size == 12
    assert ServingOptions.of(pipeline).batch_size == 1
    assert changed.run_batch([1, 2, 3]) == [2, 4, 6]


def test_processes_need_an_importable_factory():
    bare = Stage("square", lambda x: x * x)
    with pytest.raises(ConfigError, match="importable factory"):
        parallel_stage(bare, workers=2, how="processes")
    with pytest.raises(ConfigError, match="cannot import factory module"):
        parallel_stage(bare, workers=2, how="processes", factory="no.such.module:fn")


@pytest.mark.slow
def test_processes_built_from_the_factory_give_the_same_outputs():
    stage = build_stage()
    for spec in (None, "tests.plugins.generic.factories:build_pipeline"):
        pool = parallel_stage(stage, workers=2, how="processes", factory=spec)
        try:
            assert pool.call_batch(list(range(10))) == [x * x for x in range(10)]
        finally:
            pool.batch_fn._pool.shutdown()
    assert build_pipeline().run(3) == -9


def score(x, *, items, item):
    return items[x] + item


def test_a_slot_named_items_or_item_reaches_the_users_function():
    # a recsys stage's item matrix is often a slot called `items`: the pool's own batch
    # argument must not collide with it
    stage = Stage("rank", score, slots={"items": [10, 20, 30], "item": 1})
    pool = parallel_stage(stage, workers=2)
    assert pool.call_batch([0, 1, 2]) == [11, 21, 31]
