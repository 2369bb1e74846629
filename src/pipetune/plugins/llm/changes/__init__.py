"""The llm plugin's change types, one module each (its id, params dataclass, tune and
materialize); :mod:`.common` holds the tune prologue and the config materialize they
share. :func:`change_types` is what ``register_changes`` returns. (``llm.kv_cache_loop``
is advice, not a change type.)"""

from __future__ import annotations

from pipetune.core.kernel.registry import ChangeType


def change_types() -> list[ChangeType]:
    from pipetune.plugins.llm.changes import (
        continuous_batching,
        cuda_graphs,
        kv_cache,
        prefix_cache,
        speculative_draft,
        speculative_prompt_lookup,
    )

    return [
        kv_cache.CHANGE,
        prefix_cache.CHANGE,
        continuous_batching.CHANGE,
        speculative_prompt_lookup.CHANGE,
        speculative_draft.CHANGE,
        cuda_graphs.CHANGE,
    ]
