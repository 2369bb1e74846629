"""Composing the generic plugin's transformations with the nlp ones, for the benchmark.

The generic plugin owns result caching and batching (one owner per transformation). The
benchmark applies them directly, as the optimize loop would: documents in batches
through each stage's ``batch_fn``, and the generic plugin's content-hash cache in front
of the embed stage, which is cached per section because the stage declares
``meta["elementwise"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.state import cache_stats, reset_state
from pipetune.plugins.generic.cache import cached_stage


def with_section_cache(pipeline: Pipeline, capacity: int = 65_536) -> Pipeline:
    """``pipeline`` with the generic plugin's cache in front of its embed stage."""
    return pipeline.replace("embed", cached_stage(pipeline.stage("embed"), capacity))


def hit_rate(pipeline: Pipeline) -> float:
    return cache_stats(pipeline).get("embed", {}).get("hit_rate", 0.0)


def cold(pipeline: Pipeline) -> Pipeline:
    """Empty every cache in ``pipeline`` (each timed pass starts cold)."""
    reset_state(pipeline)
    return pipeline


def run_batched(pipeline: Pipeline, items: Sequence[Any], batch: int) -> list[Any]:
    """``items`` through ``pipeline`` in batches of ``batch`` documents."""
    out: list[Any] = []
    for start in range(0, len(items), batch):
        out.extend(pipeline.run_batch(list(items[start : start + batch])))
    return out
