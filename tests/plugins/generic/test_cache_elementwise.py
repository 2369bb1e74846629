"""Per-element caching for stages that declare ``meta["elementwise"]`` (a document's
sections to their embeddings): a section shared by two documents is computed once."""

from __future__ import annotations

import numpy as np

from pipetune import Pipeline, Stage
from pipetune.core.kernel.state import cache_stats, reset_state
from pipetune.plugins.generic.cache import cached_stage


def _embedding_stage(calls: list):
    def embed(sections, *, scale):
        calls.append(tuple(sections))
        return np.array([[len(s) * scale, s.count("a")] for s in sections], dtype=np.float32)

    def embed_batch(documents, *, scale):
        flat = [s for doc in documents for s in doc]
        rows = embed(tuple(flat), scale=scale)
        bounds = np.cumsum([0, *map(len, documents)])
        return [rows[bounds[i] : bounds[i + 1]] for i in range(len(documents))]

    return Stage(
        "embed",
        embed,
        kind="inference",
        slots={"scale": 2.0},
        batch_fn=embed_batch,
        meta={"elementwise": True},
    )


def test_elements_are_cached_across_documents_and_outputs_are_unchanged():
    calls: list = []
    stage = _embedding_stage(calls)
    cached = cached_stage(stage, capacity=64)
    docs = [("header", "body one", "footer"), ("header", "body two", "footer"), ("header",)]
    expected = [stage(d) for d in docs]
    calls.clear()
    got = [cached(d) for d in docs]
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a, b)
    assert [len(c) for c in calls] == [3, 1]  # then only "body two"; the third doc: all hits
    pipeline = Pipeline("p", (cached,))
    stats = cache_stats(pipeline)["embed"]
    assert stats["hits"] == 3 and stats["misses"] == 4

    reset_state(pipeline)
    calls.clear()
    batched = cached.call_batch(docs)
    for a, b in zip(expected, batched, strict=True):
        np.testing.assert_array_equal(a, b)
    assert calls == [("header", "body one", "footer", "body two")]  # one call, each once
    again = cached.call_batch(docs[:1])  # all hits through the batch wrapper: still an array
    assert isinstance(again[0], np.ndarray) and again[0].shape == (3, 2)


def test_empty_documents_and_a_replaced_slot():
    calls: list = []
    cached = cached_stage(_embedding_stage(calls))
    assert cached(()).shape == (0,) or len(cached(())) == 0
    first = cached(("x",))
    rescaled = cached.with_slots(scale=5.0)
    assert rescaled(("x",))[0, 0] == 5.0 != first[0, 0]
