"""Composing the loop's other owners' transformations by hand, for the benchmark only.

The generic plugin owns result caching and batching (DESIGN §3). Until the optimize loop
runs them, the benchmark composes equivalents directly: documents in batches through each
stage's ``batch_fn``, and an LRU keyed by the content of each tokenized section in front of
the embed stage (the stage declares ``meta["elementwise"]``: one output row per section,
depending on that section only).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipetune.core.model import Pipeline, Stage
from pipetune.plugins.nlp.padding import Encoded


class SectionCache:
    """A bounded LRU from a tokenized section to its embedding, with hit counts."""

    def __init__(self, capacity: int = 100_000):
        self.capacity = capacity
        self.rows: OrderedDict[Encoded, np.ndarray] = OrderedDict()
        self.hits = 0
        self.lookups = 0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.lookups if self.lookups else 0.0

    def embed(self, stage: Stage, documents: Sequence[Sequence[Encoded]]) -> list[np.ndarray]:
        missing: dict[Encoded, None] = {}
        for doc in documents:
            for seq in doc:
                self.lookups += 1
                if seq in self.rows:
                    self.hits += 1
                    self.rows.move_to_end(seq)
                else:
                    missing[seq] = None
        if missing:
            todo = tuple(missing)
            for seq, row in zip(todo, stage.call_batch([todo])[0], strict=True):
                self.rows[seq] = row
                if len(self.rows) > self.capacity:
                    self.rows.popitem(last=False)
        return [np.stack([self.rows[seq] for seq in doc]) for doc in documents]


def with_section_cache(pipeline: Pipeline, cache: SectionCache, stage: str = "embed") -> Pipeline:
    original = pipeline.stage(stage)
    if not original.meta.get("elementwise"):
        raise ValueError(f"stage {stage!r} is not elementwise: a per-section cache is not exact")

    def one(encoded: Sequence[Encoded]) -> np.ndarray:
        return cache.embed(original, [encoded])[0]

    def many(documents: Sequence[Sequence[Encoded]]) -> list[np.ndarray]:
        return cache.embed(original, documents)

    cached = Stage(
        original.name,
        one,
        kind=original.kind,
        batch_fn=many,
        meta={**original.meta, "composed": "section cache"},
    )
    return pipeline.replace(stage, cached)


def run_batched(pipeline: Pipeline, items: Sequence[Any], batch: int) -> list[Any]:
    """``items`` through ``pipeline`` in batches of ``batch`` documents."""
    out: list[Any] = []
    for start in range(0, len(items), batch):
        out.extend(pipeline.run_batch(list(items[start : start + batch])))
    return out
