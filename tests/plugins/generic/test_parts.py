"""Stages that map over the parts of their input: found on observed inputs (or declared),
their parts' repeat rate over the workload's own stream by pass length, and a cache per
part proposed with that rate and its 1 / (1 - hit rate) bound."""

from __future__ import annotations

import numpy as np
import pytest

from pipetune.core.kernel.manager import get_plugin_manager
from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
from pipetune.core.kernel.results import Change
from pipetune.core.kernel.state import cache_stats, reset_state
from pipetune.core.measure.profiler import profile
from pipetune.plugins.generic import parts
from pipetune.plugins.generic import proposals as ids
from pipetune.plugins.generic.cache import content_hash
from pipetune.plugins.generic.changes import result_cache

OPTIONS = {"sweep": False, "hot_functions": False, "layers": False, "memory": False}


def split(document):
    return tuple(document.split("|"))


def embed(sections):
    """Plain code: one row per section, each from that section alone."""
    return np.array([[len(s), s.count("e")] for s in sections], dtype=np.float32)


def mix(sections):  # not part-wise: every row depends on the whole input
    return np.array([[len(sections), len(s)] for s in sections], dtype=np.float32)


def _stream(n: int = 40) -> tuple[str, ...]:
    letterheads = ("acme ltd", "globex inc")
    # documents never repeat (each has its own revision line); their sections do
    return tuple(f"{letterheads[i % 2]}|body {i // 3}|rev {i}|signed ann" for i in range(n))


def test_a_part_mapping_stage_is_found_and_a_whole_input_one_is_not():
    stage = Stage("embed", embed)
    inputs = [split(d) for d in _stream(4)]
    outputs = [embed(v) for v in inputs]
    found = parts.verify_elementwise(stage, inputs, outputs)
    assert found == {"declared": False, "verified_parts": 6, "verified_inputs": 3}
    other = Stage("mix", mix)
    assert parts.verify_elementwise(other, inputs, [mix(v) for v in inputs]) is None
    assert parts.verify_elementwise(stage, ["a", "b"], ["x", "y"]) is None


def test_the_hit_curve_grows_with_the_pass_length():
    keys = [[content_hash(p) for p in split(d)] for d in _stream(40)]
    curve = parts.hit_curve(keys)
    assert curve["parts"] == 160 and curve["distinct_parts"] == 2 + 14 + 40 + 1
    rates = list(curve["by_pass_length"].values())
    assert rates == sorted(rates) and rates[-1] == curve["hit_rate"]
    assert curve["inputs_for_rate"] <= 40


@pytest.mark.slow
def test_the_loop_proposes_a_cache_per_part_at_the_streams_own_rate():
    pipeline = Pipeline(
        "docs", (Stage("split", split), Stage("embed", embed, kind="inference")), "tensor"
    )
    pm = get_plugin_manager(entry_points=False, disable=("recsys", "nlp", "vision", "llm"))
    found = profile(pipeline, Workload(items=_stream(40)), pm=pm, **OPTIONS)
    facts = found.facts["generic"]
    part = facts["part_repeats"]["embed"]
    assert part["over"] == "workload" and part["declared"] is False
    assert facts["repeat_rate"]["embed"] == part["hit_rate"] > 0.5
    assert facts["repeat_rate"]["split"] == 0.0
    cache = [p for p in ids.propose(pipeline, found, Requirements()) if p.id == ids.CACHE]
    assert [p.stage for p in cache] == ["embed"]
    assert cache[0].params["per"] == "element"
    assert "parts" in cache[0].rationale and "at most" in cache[0].rationale

    change = Change(result_cache.ID, "generic", "embed", dict(cache[0].params))
    cached = result_cache.materialize(change, pipeline, None)
    reset_state(cached)
    outputs = [cached.run(d) for d in _stream(40)]
    for got, want in zip(outputs, [pipeline.run(d) for d in _stream(40)], strict=True):
        np.testing.assert_array_equal(got, want)
    assert round(cache_stats(cached)["embed"]["hit_rate"], 4) == part["hit_rate"]


@pytest.mark.slow
def test_the_cache_is_measured_on_passes_long_enough_for_its_hit_rate():
    pipeline = Pipeline(
        "docs", (Stage("split", split), Stage("embed", embed, kind="inference")), "tensor"
    )
    pm = get_plugin_manager(entry_points=False, disable=("recsys", "nlp", "vision", "llm"))
    found = profile(pipeline, Workload(items=_stream(40)), pm=pm, **OPTIONS)
    part = found.facts["generic"]["part_repeats"]["embed"]
    (cache,) = [p for p in ids.propose(pipeline, found, Requirements()) if p.id == ids.CACHE]
    flight = cache.in_flight
    assert flight is not None and flight.batches_per_pass == 1 and flight.in_order
    assert flight.inputs <= part["inputs"] and str(flight.inputs) in part["by_pass_length"]
    at_pass = part["by_pass_length"][str(flight.inputs)]
    assert cache.est_stage_speedup == 1 / (1 - 0.97 * at_pass)
    assert f"passes of {flight.inputs} consecutive inputs" in flight.describe()
