"""Decode-specific parallelism: decode a batch of images in a thread pool.

Split of ownership (each transformation has one owning plugin): the generic plugin
decides *whether* the pipeline runs in batches or concurrently (dynamic batching,
concurrency); this module makes a *decode* stage use a batch well. JPEG and PNG decoders
in OpenCV and Pillow release the GIL, so threads decode in parallel without processes.
The plugin's decode block exposes a ``workers=`` slot; a plain user decode stage gets a
``batch_fn`` that maps its own ``fn`` over a batch in the pool, so generic batching then
applies to it too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from pipetune.core.kernel.model import accepted_slots


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


class ParallelBatch:
    """A ``batch_fn`` that maps a stage's per-item ``fn`` over a batch in a thread pool.
    Outputs keep the input order; the first exception is re-raised like the serial map."""

    def __init__(self, fn: Callable[..., Any], workers: int):
        self.fn = fn
        self.workers = max(1, int(workers))

    def __call__(self, items: Sequence[Any], /, **slots: Any) -> list[Any]:
        from pipetune.plugins.vision.blocks import _pool

        accepted = {name: slots[name] for name in accepted_slots(self.fn, slots)}
        if self.workers == 1 or len(items) < 2:
            return [self.fn(item, **accepted) for item in items]
        return list(_pool(self.workers).map(lambda item: self.fn(item, **accepted), items))
