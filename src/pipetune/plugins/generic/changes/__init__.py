"""The generic plugin's change types, one module each: its id, its params dataclass, its
tune and its materialize. :func:`change_types` is what ``register_changes`` returns."""

from __future__ import annotations

from pipetune.core.kernel.registry import ChangeType


def change_types() -> list[ChangeType]:
    from pipetune.plugins.generic.changes import (
        adaptive_computation,
        cross_input_batching,
        dynamic_batching,
        parallel_processes,
        parallel_threads,
        result_cache,
    )

    return [
        result_cache.CHANGE,
        dynamic_batching.CHANGE,
        parallel_threads.CHANGE,
        parallel_processes.CHANGE,
        adaptive_computation.CHANGE,
        cross_input_batching.CHANGE,
    ]
