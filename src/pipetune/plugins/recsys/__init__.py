"""The recsys plugin: two-stage ranking, ANN retrieval, user-embedding caches and
batched feature reads.

Building blocks are exported lazily: importing this package imports neither faiss nor
torch.

    from pipetune.plugins.recsys import exact_topk, full_ranking, embedding, feature_lookup
"""

from __future__ import annotations

from pipetune.plugins._lazy import lazy_exports

_EXPORTS = {
    "full_ranking": "pipetune.plugins.recsys.blocks",
    "exact_topk": "pipetune.plugins.recsys.blocks",
    "embedding": "pipetune.plugins.recsys.blocks",
    "feature_lookup": "pipetune.plugins.recsys.blocks",
    "key_of": "pipetune.plugins.recsys.blocks",
    "default_query": "pipetune.plugins.recsys.blocks",
    "Candidates": "pipetune.plugins.recsys.blocks",
    "TTLCache": "pipetune.plugins.recsys.cache",
    "SimulatedFeatureStore": "pipetune.plugins.recsys.features",
    "CountingStore": "pipetune.plugins.recsys.features",
    "IndexSpec": "pipetune.plugins.recsys.ann",
    "AnnSearcher": "pipetune.plugins.recsys.ann_search",
    "choose_index": "pipetune.plugins.recsys.ann",
    "recall_at_k": "pipetune.plugins.recsys.fidelity",
    "ndcg_at_k": "pipetune.plugins.recsys.fidelity",
    "ranked_ids_fidelity": "pipetune.plugins.recsys.fidelity",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS, keep=globals())


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
