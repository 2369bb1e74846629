"""Dynamic batching is a serving change, tuned on the metric the requirements name."""

from __future__ import annotations

import time

import pytest

from pipetune.core.kernel.errors import Rejected
from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
from pipetune.core.runtime.serving import ServingOptions, with_serving
from pipetune.plugins.generic import batching


def per_call(x, *, overhead):
    time.sleep(overhead)  # a fixed cost per call (a model launch, a round trip)
    return x + 1


def per_call_batch(items, *, overhead):
    time.sleep(overhead)
    return [x + 1 for x in items]


def slower_batch(items, *, overhead):
    time.sleep(2 * overhead * len(items))  # a batch path that is worse per input
    return [x + 1 for x in items]


def _pipeline(batchable: bool) -> Pipeline:
    stage = Stage(
        "model",
        per_call,
        kind="inference",
        slots={"overhead": 0.002},
        batch_fn=per_call_batch if batchable else slower_batch,
    )
    return Pipeline("p", (stage,), output_kind="any")


@pytest.mark.slow
def test_batching_is_tuned_when_a_call_has_a_fixed_cost():
    workload = Workload(items=tuple(range(48)))
    tuned = batching.tune(_pipeline(True), workload, Requirements())
    assert tuned.params["batch_size"] >= 4
    assert tuned.notes["gain_on_tune_split"] > 2
    # validated with passes that can form these batches, back to back (a batch job)
    size = tuned.params["batch_size"]
    assert tuned.in_flight.inputs == size and tuned.in_flight.arrival == "backlog"
    assert tuned.in_flight.pass_inputs == 2 * size
    assert [point["batch_size"] for point in tuned.notes["curve"]][:2] == [2, 4]


@pytest.mark.slow
def test_batching_is_refused_when_it_cannot_pay():
    with pytest.raises(Rejected, match="batching does not pay"):
        batching.tune(_pipeline(False), Workload(items=tuple(range(16))), Requirements())


def test_materialize_only_changes_how_the_pipeline_is_served():
    pipeline = _pipeline(True)
    served = batching.materialize(pipeline, {"batch_size": 16, "max_delay_ms": 2.0})
    assert ServingOptions.of(served) == ServingOptions(batch_size=16, max_delay_ms=2.0)
    assert served.stages == pipeline.stages and ServingOptions.of(pipeline).batch_size == 1
    assert ServingOptions.of(with_serving(served, batch_size=4)).max_delay_ms == 2.0


def test_the_stage_batch_speedup_is_measured_cold():
    measured = batching.stage_batch_speedup(
        _pipeline(True).stage("model"), list(range(8)), mean_ms=2.0
    )
    assert measured["batch"] == 8 and measured["speedup"] > 2


@pytest.mark.slow
def test_online_batching_is_measured_with_queueing():
    from pipetune.core.measure.timed_pass import RuntimeSpec

    pipeline = _pipeline(True).evolve(name="p")
    slow = pipeline.replace("model", pipeline.stage("model").with_slots(overhead=0.005))
    batched = with_serving(slow, batch_size=8, max_delay_ms=2.0)
    # one at a time the stage serves about 200/s: 150/s arriving queues up
    runtime = RuntimeSpec(mode="online", rate=150.0, seed=3)
    gain, before, after = batching.paired_gain(slow, batched, list(range(40)), runtime, "p99")
    assert gain > 1.5 and after < before  # batching drains the queue: P99 falls
