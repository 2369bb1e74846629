"""Plain code that maps over the parts of its input inside the stage: its repeated model
calls are cached by content (found on observed inputs, proposed, materialized), the slot
keeps the model, and the cache composes with cross-input batching in either order."""

from __future__ import annotations

import numpy as np
import pytest

from pipetune.core.kernel.manager import get_plugin_manager
from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
from pipetune.core.kernel.results import Change
from pipetune.core.kernel.state import cache_stats, reset_state
from pipetune.core.measure.profiler import profile
from pipetune.plugins.generic import proposals as ids
from pipetune.plugins.generic.callcache import call_cached_stage
from pipetune.plugins.generic.changes import result_cache
from pipetune.plugins.generic.coalesce import coalesced_stage

torch = pytest.importorskip("torch", reason="torch is not installed: pip install torch")
OPTIONS = {"sweep": False, "hot_functions": False, "layers": False, "memory": False}


class Counting(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(2, 3)
        self.rows = 0

    def forward(self, x):
        self.rows += x.shape[0]
        return self.linear(x)


def features(section: str) -> list[float]:
    return [len(section), sum(map(ord, section)) % 997]


def embed_document(document, *, model):
    """Plain user code: one model call per section, inside the stage."""
    rows = []
    with torch.no_grad():
        for section in document.split("|"):
            rows.append(model(torch.tensor([features(section)], dtype=torch.float32)))
    return torch.cat(rows).mean(0).numpy()


def _distinct() -> int:
    return len({tuple(features(s)) for d in _documents() for s in d.split("|")})


def _documents(n: int = 24) -> tuple[str, ...]:
    return tuple(f"acme ltd|body {i // 4}|rev {i}|signed" for i in range(n))


def _pipeline(model) -> Pipeline:
    stage = Stage("embed", embed_document, kind="inference", slots={"model": model})
    return Pipeline("docs", (stage,), output_kind="tensor")


@pytest.mark.slow
def test_repeated_calls_are_found_and_cached_per_call():
    model = Counting()
    pipeline = _pipeline(model)
    pm = get_plugin_manager(entry_points=False, disable=("recsys", "nlp", "vision", "llm"))
    found = profile(pipeline, Workload(items=_documents()), pm=pm, **OPTIONS)
    calls = found.facts["generic"]["call_repeats"]["embed"]
    assert calls["slot"] == "model" and calls["calls_per_input"] == 4.0
    assert calls["hit_rate"] > 0.3
    (cache,) = [p for p in ids.propose(pipeline, found, Requirements()) if p.id == ids.CACHE]
    assert cache.params["per"] == "call" and cache.params["slot"] == "model"

    change = Change(result_cache.ID, "generic", "embed", dict(cache.params))
    cached = result_cache.materialize(change, pipeline, None)
    assert cached.stage("embed").slots["model"] is model  # other plugins still see the model
    expected = [pipeline.run(d) for d in _documents()]
    reset_state(cached)
    model.rows = 0
    for document, want in zip(_documents(), expected, strict=True):
        np.testing.assert_allclose(cached.run(document), want, rtol=1e-6)
    stats = cache_stats(cached)["embed"]
    assert stats["hits"] + stats["misses"] == 4 * 24
    assert model.rows == stats["misses"] == _distinct()
    replaced = cached.replace("embed", cached.stage("embed").with_slots(model=Counting()))
    replaced.run(_documents()[0])  # the same cache, another model: no stale answer
    assert replaced.stage("embed").slots["model"].rows == 4


def test_a_call_cache_and_cross_input_batching_compose_in_either_order():
    model = Counting()
    pipeline = _pipeline(model)
    expected = [pipeline.run(d) for d in _documents()]
    stage = pipeline.stage("embed")
    both = (
        coalesced_stage(call_cached_stage(stage, "model"), ["model"], batch_size=8),
        call_cached_stage(coalesced_stage(stage, ["model"], batch_size=8), "model"),
    )
    for combined in both:
        model.rows = 0
        got = combined.call_batch(list(_documents()))
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert model.rows == _distinct()  # each distinct section computed once, in batches
        reset_state(Pipeline("p", (combined,)))
