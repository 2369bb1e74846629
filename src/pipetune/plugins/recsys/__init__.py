"""The recsys plugin: two-stage ranking, ANN retrieval, user-embedding caches and
batched feature reads.

Building blocks are exported lazily: importing this package imports neither faiss nor
torch.

    from pipetune.plugins.recsys import exact_topk, full_ranking, embedding, feature_lookup
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "full_ranking": "blocks",
    "exact_topk": "blocks",
    "embedding": "blocks",
    "feature_lookup": "blocks",
    "key_of": "blocks",
    "default_query": "blocks",
    "Candidates": "blocks",
    "TTLCache": "cache",
    "SimulatedFeatureStore": "features",
    "CountingStore": "features",
    "IndexSpec": "ann",
    "AnnSearcher": "ann_search",
    "choose_index": "ann",
    "recall_at_k": "fidelity",
    "ndcg_at_k": "fidelity",
    "ranked_ids_fidelity": "fidelity",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
