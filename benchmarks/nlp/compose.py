"""Composing the generic plugin's transformations with the nlp ones, for the benchmark.

The generic plugin owns result caching and batching (one owner per transformation). The
benchmark applies them directly, as the optimize loop would: batching as the pipeline's
serving options (``pipetune.core.runtime.serving.with_serving``: ``compare`` then runs
documents in batches through each stage's ``batch_fn``), and the generic plugin's
content-hash cache in front of the embed stage, which is cached per section because the
stage declares ``meta["elementwise"]``. The cache implements ``pipetune_reset``, so
``compare`` empties it before every timed pass.
"""

from __future__ import annotations

from pipetune.core.kernel.model import Pipeline
from pipetune.plugins.generic.cache import cached_stage


def with_section_cache(pipeline: Pipeline, capacity: int = 65_536) -> Pipeline:
    """``pipeline`` with the generic plugin's cache in front of its embed stage."""
    return pipeline.replace("embed", cached_stage(pipeline.stage("embed"), capacity))
