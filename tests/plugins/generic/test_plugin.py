"""The generic plugin's hooks: what it proposes from the evidence, and how it applies."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pipetune.core.kernel.manager import get_plugin_manager
from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
from pipetune.core.kernel.registry import DemoSetup
from pipetune.core.kernel.results import Change, LatencyStats, Profile, StageStats
from pipetune.core.measure.profiler import profile
from pipetune.core.runtime.machine import detect_machine
from pipetune.core.runtime.serving import ServingOptions
from pipetune.plugins.generic import plugin
from pipetune.plugins.generic import proposals as ids


def _pm():
    return get_plugin_manager(
        entry_points=False, disable=("recsys", "nlp", "vision", "llm", "hardware")
    )


def lookup(key, *, table):
    time.sleep(0.0005)
    return table.get(key, 0)


@pytest.mark.slow
def test_repeated_inputs_get_a_cache_proposal_with_the_measured_repeat_rate():
    pipeline = Pipeline("p", (Stage("lookup", lookup, slots={"table": {"a": 1}}),), "any")
    repeated = Workload(items=tuple("aabacada" * 4), warmup=0, repeats=1)
    unique = Workload(items=tuple(str(i) for i in range(32)), warmup=0, repeats=1)
    options = {"sweep": False, "hot_functions": False, "layers": False, "memory": False}
    pm = _pm()
    found = profile(pipeline, repeated, pm=pm, **options)
    assert found.facts["generic"]["repeat_rate"]["lookup"] == 28 / 32
    proposals = plugin.propose_changes(pipeline, found, Requirements())
    cache = [p for p in proposals if p.id == ids.CACHE]
    assert len(cache) == 1 and cache[0].evidence["repeat_rate"] == 28 / 32
    assert "88% of the inputs" in cache[0].rationale
    fresh = profile(pipeline, unique, pm=pm, **options)
    assert not [
        p for p in plugin.propose_changes(pipeline, fresh, Requirements()) if p.id == ids.CACHE
    ]


def _profile(stages, *, holds_gil=None, mode="offline", batch=None) -> Profile:
    names = [s.name for s in stages]
    stats = (
        *tuple(
            StageStats(
                name=n,
                kind="other",
                share=0.9 / len(names),
                p50_ms=1.0,
                mean_ms=1.0,
                cpu_ratio=0.9,
                holds_gil=holds_gil,
            )
            for n in names
        ),
        StageStats(name="other", kind="other", share=0.1, p50_ms=0.1),
    )
    facts = {"generic": {"repeat_rate": {}, "batch": batch or {}}}
    return Profile(
        pipeline="p",
        mode=mode,
        samples=10,
        throughput_rps=100.0,
        latency_ms=LatencyStats(p50=1, p95=1, p99=1, max=1),
        stages=stats,
        machine=detect_machine(),
        facts=facts,
    )


def parse(text):
    return text.split()


def test_a_stage_that_runs_faster_on_two_threads_gets_a_thread_pool():
    pipeline = Pipeline("p", (Stage("parse", parse),))
    proposals = plugin.propose_changes(
        pipeline, _profile(pipeline.stages, holds_gil=False), Requirements()
    )
    assert [p.id for p in proposals] == [ids.THREADS]
    assert proposals[0].conflicts == (ids.PROCESSES,)


def test_a_gil_bound_stage_needs_a_factory_for_processes():
    import os

    if (os.cpu_count() or 1) < 2:
        return
    bare = Pipeline("p", (Stage("parse", parse),))
    (proposal,) = plugin.propose_changes(
        bare, _profile(bare.stages, holds_gil=True), Requirements()
    )
    assert proposal.id == ids.PROCESSES and not proposal.applicable
    assert "meta={'factory'" in proposal.reason
    declared = Pipeline("p", (Stage("parse", parse, meta={"factory": "m:f"}),))
    (ready,) = plugin.propose_changes(
        declared, _profile(declared.stages, holds_gil=True), Requirements()
    )
    assert ready.applicable and ready.params == {"factory": "m:f"}


def test_no_pool_is_proposed_for_a_latency_metric():
    pipeline = Pipeline("p", (Stage("parse", parse),))
    found = _profile(pipeline.stages, holds_gil=False)
    assert plugin.propose_changes(pipeline, found, Requirements(p99_ms=10)) == []


def classify(x, *, w):
    return int(np.argmax(x @ w))


def classify_batch(xs, *, w):
    return [int(i) for i in np.argmax(np.stack(xs) @ w, axis=1)]


def test_batching_is_proposed_from_a_measured_batch_speedup_for_throughput_only():
    pipeline = Pipeline(
        "p", (Stage("model", classify, slots={"w": np.eye(4)}, batch_fn=classify_batch),)
    )
    measured = {
        "model": {
            "batch": 16,
            "per_item_ms_single": 1.0,
            "per_item_ms_batched": 0.2,
            "speedup": 5.0,
        }
    }
    found = _profile(pipeline.stages, batch=measured)
    (proposal,) = plugin.propose_changes(pipeline, found, Requirements())
    assert proposal.id == ids.BATCHING and proposal.est_stage_speedup == 5.0
    assert plugin.propose_changes(pipeline, found, Requirements(p99_ms=5)) == []
    online = _profile(pipeline.stages, batch=measured, mode="online")
    assert [p.id for p in plugin.propose_changes(pipeline, online, Requirements(p99_ms=5))] == [
        ids.BATCHING
    ]


def test_changes_materialize_through_the_owner_and_never_mutate():
    pm = _pm()
    pipeline = Pipeline(
        "p", (Stage("model", classify, slots={"w": np.eye(4)}, batch_fn=classify_batch),)
    )
    cached = pm.materialize(
        Change(proposal=ids.CACHE, plugin="generic", stage="model", params={"capacity": 8}),
        pipeline,
        ".",
    )
    assert "generic.cache" in cached.stage("model").meta and pipeline.stage("model").meta == {}
    served = pm.materialize(
        Change(
            proposal=ids.BATCHING,
            plugin="generic",
            stage="model",
            params={"batch_size": 8, "max_delay_ms": 0.0},
        ),
        cached,
        ".",
    )
    assert ServingOptions.of(served).batch_size == 8
    x = np.arange(4.0)
    assert served.run_batch([x, x]) == [pipeline.run(x)] * 2


@pytest.mark.slow
def test_the_queries_demo_builds_a_real_small_pipeline():
    (demo,) = plugin.register_demos()
    setup = demo.build(True)
    assert isinstance(setup, DemoSetup) and not demo.default
    assert len(setup.workload) == 240 and setup.workload.labels is not None
    outputs = setup.pipeline.run_batch(list(setup.workload.items[:20]))
    assert outputs == [setup.pipeline.run(x) for x in setup.workload.items[:20]]
    accuracy = np.mean([o == y for o, y in zip(outputs, setup.workload.labels[:20], strict=True)])
    assert accuracy > 0.5  # a real classifier, not a constant
