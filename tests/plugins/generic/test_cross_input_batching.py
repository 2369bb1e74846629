"""``generic.cross_input_batching``: measured on observed inputs, proposed for throughput
jobs (not for an offline latency job), tuned with its parts, materialized from params."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pipetune.core.kernel.artifacts import ArtifactStore
from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import Rejected
from pipetune.core.kernel.manager import get_plugin_manager
from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
from pipetune.core.kernel.results import Change
from pipetune.core.measure.profiler import profile
from pipetune.core.runtime.serving import ServingOptions
from pipetune.plugins.generic import crossbatch
from pipetune.plugins.generic import proposals as ids
from pipetune.plugins.generic.changes import cross_input_batching

torch = pytest.importorskip("torch", reason="torch is not installed: pip install torch")


class Launch(torch.nn.Module):
    """A model whose every call has a fixed cost, whatever the batch (a kernel launch)."""

    def __init__(self, cost_s: float = 0.01):
        super().__init__()
        self.cost_s = cost_s
        self.weight = torch.nn.Parameter(torch.ones(3))

    def forward(self, x):
        time.sleep(self.cost_s)
        return x * self.weight


def classify(values, *, model):
    with torch.no_grad():
        out = model(torch.tensor([values], dtype=torch.float32))
    return int(out.sum().item()) % 3


def _pipeline(cost_s: float = 0.01) -> Pipeline:
    stage = Stage("classify", classify, kind="inference", slots={"model": Launch(cost_s)})
    return Pipeline("p", (stage,), output_kind="labels")


def _workload(n: int = 48) -> Workload:
    rng = np.random.default_rng(0)
    return Workload(items=tuple(tuple(rng.integers(0, 9, 3).tolist()) for _ in range(n)))


def _pm():
    return get_plugin_manager(entry_points=False, disable=("recsys", "nlp", "vision", "llm"))


OPTIONS = {"sweep": False, "hot_functions": False, "layers": False, "memory": False}


@pytest.mark.slow
def test_a_one_at_a_time_stage_gets_measured_and_proposed_for_throughput():
    pm = _pm()
    found = profile(_pipeline(), _workload(24), pm=pm, **OPTIONS)
    measured = found.facts["generic"]["coalesce"]["classify"]
    assert measured["slots"] == ["model"] and measured["speedup"] > 1.5
    throughput = Requirements(optimize_for="throughput")
    proposals = [
        p for p in ids.propose(_pipeline(), found, throughput) if p.id == ids.CROSS_BATCHING
    ]
    assert len(proposals) == 1
    assert proposals[0].params == {"slots": ["model"]}
    assert "nlp.cross_input_batching" in proposals[0].conflicts
    assert proposals[0].in_flight.inputs == measured["inputs"]
    latency = Requirements(p99_ms=50)  # offline: an input would wait for its whole batch
    assert not [p for p in ids.propose(_pipeline(), found, latency) if p.id == ids.CROSS_BATCHING]
    hints = pm.hook.stage_hints(stage=_pipeline().stage("classify"), pipeline=_pipeline())
    assert not any("batch_fn" in h for hint in hints for h in hint)


def _context(pipeline: Pipeline, workload: Workload, tmp_path) -> TuneContext:
    requirements = Requirements(optimize_for="throughput")
    return TuneContext(_pm(), pipeline, workload, requirements, ArtifactStore(tmp_path))


@pytest.mark.slow
def test_tune_chooses_a_group_tries_the_parts_and_materializes(tmp_path):
    pipeline = _pipeline()
    context = _context(pipeline, _workload(32), tmp_path)
    proposal = ids.Proposal(
        cross_input_batching.ID, "generic", "classify", "t", params={"slots": ["model"]}
    )
    tuned = cross_input_batching.tune(proposal, pipeline, context)
    assert tuned.params["batch_size"] in crossbatch.GROUP_SIZES
    assert tuned.params["window"] >= tuned.params["batch_size"]
    assert set(tuned.notes["parts"]) == {"inference_mode"}
    assert tuned.in_flight is not None and tuned.in_flight.inputs == tuned.params["window"]
    assert tuned.in_flight.arrival == "backlog"  # a batch job has its inputs at once
    change = Change(cross_input_batching.ID, "generic", "classify", tuned.params)
    built = cross_input_batching.materialize(change, pipeline, tmp_path)
    assert ServingOptions.of(built).batch_size == tuned.params["window"]
    assert (
        built.stage("classify").batch_fn is not None and pipeline.stage("classify").batch_fn is None
    )
    items = list(_workload().items)
    assert crossbatch.batched_outputs(built, items) == [pipeline.run(x) for x in items]


@pytest.mark.slow
def test_tune_refuses_when_batching_does_not_pay(tmp_path):
    pipeline = _pipeline(cost_s=0.0)

    class Pricey(torch.nn.Module):  # a batch costs more per input than one at a time
        def forward(self, x):
            time.sleep(0.002 * x.shape[0] ** 2)
            return x

    slow = pipeline.replace("classify", pipeline.stage("classify").with_slots(model=Pricey()))
    proposal = ids.Proposal(
        cross_input_batching.ID, "generic", "classify", "t", params={"slots": ["model"]}
    )
    with pytest.raises(Rejected, match="does not pay"):
        cross_input_batching.tune(proposal, slow, _context(slow, _workload(24), tmp_path))


@pytest.mark.slow
def test_parts_alone_are_kept_where_batching_does_not_pay(tmp_path):
    class Pricey(torch.nn.Module):  # a batch costs more per input than one at a time
        def forward(self, x):
            time.sleep(0.001 * x.shape[0] ** 2)
            return x

    pipeline = _pipeline(cost_s=0.0)
    slow = pipeline.replace("classify", pipeline.stage("classify").with_slots(model=Pricey()))

    def cheaper(candidate, setting):  # a lossless part: the same answers, less work
        return candidate.replace(
            "classify", slow.stage("classify").with_slots(model=Launch(0.0))
        ), setting

    context = _context(slow, _workload(24), tmp_path)
    parts = [crossbatch.Part("cheaper", cheaper), crossbatch.inference_mode_part()]
    tuned = crossbatch.tune(slow, "classify", ["model"], context, parts=parts, parts_alone=True)
    assert tuned.params["batch_size"] == 1 and "does not pay" in tuned.notes["batching"]
    assert tuned.notes["parts"]["cheaper"]["kept"] is True
    assert tuned.notes["parts"]["inference_mode"]["kept"] is False  # no batched calls
    with pytest.raises(Rejected, match="none of its parts holds"):
        crossbatch.tune(slow, "classify", ["model"], context, parts=parts[1:], parts_alone=True)


def test_a_compiled_stand_in_for_a_model_is_still_batchable():
    from pipetune.plugins.generic.coalesce import batchable_slots

    class StandIn:  # what a compiled model leaves in the slot: the same calls, its source
        def __init__(self, source):
            self.source = source

        def __call__(self, x):
            return self.source(x)

    stage = _pipeline().stage("classify")
    compiled = stage.with_slots(model=StandIn(stage.slots["model"]))
    assert batchable_slots(stage) == batchable_slots(compiled) == ["model"]
    assert batchable_slots(stage.with_slots(model=object())) == []
