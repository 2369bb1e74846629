"""The recsys plugin's change types, one module each (its id, params dataclass, tune and
materialize); :mod:`.common` holds the index artifacts, targets and confirmation they
share. :func:`change_types` is what ``register_changes`` returns."""

from __future__ import annotations

from pipetune.core.kernel.registry import ChangeType


def change_types() -> list[ChangeType]:
    from pipetune.plugins.recsys.changes import (
        ann_exact,
        ann_two_stage,
        batched_feature_reads,
        user_embedding_cache,
    )

    return [
        ann_two_stage.CHANGE,
        ann_exact.CHANGE,
        user_embedding_cache.CHANGE,
        batched_feature_reads.CHANGE,
    ]
