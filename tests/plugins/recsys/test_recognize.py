"""Recognition of the plugin's blocks and of plain user code, and the hints."""

from __future__ import annotations

import numpy as np
import pytest

from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.plugins.recsys import embedding, exact_topk, feature_lookup, full_ranking
from pipetune.plugins.recsys.features import SimulatedFeatureStore
from pipetune.plugins.recsys.recognize import hints_for, recognize, recognize_all

ITEMS = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)


def user_topk(query, *, items, k):
    scores = items @ query
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top])]


def test_blocks_are_recognized() -> None:
    def ranker(request, ids):
        return ITEMS[ids] @ request["query"]

    pipeline = Pipeline(
        "p",
        (
            feature_lookup(SimulatedFeatureStore({}), lambda r: []),
            embedding(lambda r, m: r, model=None),
            full_ranking(ranker, ITEMS, 10),
            exact_topk(ITEMS, 5, metric="l2"),
        ),
    )
    found = recognize_all(pipeline)
    assert {name: rec.role for name, rec in found.items()} == {
        "features": "feature_lookup",
        "embed": "embedding",
        "rank": "full_ranking",
        "retrieve": "exact_topk",
    }
    assert (found["retrieve"].catalog_size, found["retrieve"].dim) == (300, 8)
    assert (found["retrieve"].metric, found["retrieve"].k) == ("l2", 5)


def test_plain_numpy_and_torch_matrices_in_slots() -> None:
    stage = Stage("search", user_topk, slots={"items": ITEMS, "k": 7})
    rec = recognize(stage)
    assert rec is not None and rec.role == "exact_topk" and rec.source == "items"
    assert (rec.catalog_size, rec.k, rec.metric) == (300, 7, None)  # metric: from observation
    torch = pytest.importorskip("torch", reason="torch is an optional dependency")
    rec = recognize(Stage("search", user_topk, slots={"item_embeddings": torch.zeros(50, 4)}))
    assert rec is not None and rec.role == "exact_topk" and rec.catalog_size == 50


def test_plain_faiss_flat_index_in_slot() -> None:
    faiss = pytest.importorskip("faiss", reason="faiss is an optional dependency (recsys extra)")
    flat = faiss.IndexFlatIP(8)
    flat.add(ITEMS)

    def search(query, *, index, k=5):
        return index.search(query[None, :], k)

    rec = recognize(Stage("search", search, slots={"index": flat, "k": 5}))
    assert rec is not None and rec.role == "exact_topk" and rec.source == "index"
    assert (rec.metric, rec.transformable) == ("ip", True)
    hnsw = faiss.IndexHNSWFlat(8, 8)
    rec = recognize(Stage("search", search, slots={"index": hnsw}))
    assert rec is not None and rec.role == "ann"  # already approximate: nothing to propose

    def closed_over(query):  # the index is captured, not injected: cannot be swapped
        return flat.search(query[None, :], 5)

    rec = recognize(Stage("search", closed_over, slots={"index": flat}))
    assert rec is not None and not rec.transformable


def test_plain_ranker_with_and_without_candidates() -> None:
    def ranker(request, ids):
        return ITEMS[ids] @ request

    def rank_all(request, *, ranker, items, k, candidates=None):
        ids = np.arange(len(items)) if candidates is None else candidates
        return ids[np.argsort(-ranker(request, ids))[:k]]

    def rank_only_all(request, *, ranker, items, k):
        return np.argsort(-ranker(request, np.arange(len(items))))[:k]

    slots = {"ranker": ranker, "items": ITEMS, "k": 10}
    rec = recognize(Stage("rank", rank_all, kind="ranking", slots=slots))
    assert rec is not None and rec.role == "full_ranking" and rec.transformable
    stage = Stage("rank", rank_only_all, kind="ranking", slots=slots)
    rec = recognize(stage)
    assert rec is not None and rec.role == "full_ranking" and not rec.transformable
    assert any("candidates=None" in hint for hint in hints_for(stage))


def test_plain_torch_encoder_and_store_get_hints() -> None:
    torch = pytest.importorskip("torch", reason="torch is an optional dependency")
    model = torch.nn.Linear(4, 4)

    def embed(request, *, model):
        return model(request)

    stage = Stage("embed", embed, kind="inference", slots={"model": model})
    rec = recognize(stage)
    assert rec is not None and rec.role == "embedding" and not rec.transformable
    assert any("user-embedding cache" in hint for hint in hints_for(stage))

    def lookup(request, *, store):
        return [store.get(k) for k in request]

    stage = Stage("lookup", lookup, kind="features", slots={"store": SimulatedFeatureStore({})})
    rec = recognize(stage)
    assert rec is not None and rec.role == "feature_lookup"
    assert any("batched reads" in hint for hint in hints_for(stage))


def test_unrelated_and_opaque_stages() -> None:
    assert recognize(Stage("double", lambda x: 2 * x)) is None
    opaque = Stage("rank", lambda x: x, kind="ranking")
    assert recognize(opaque) is None
    assert any("items=" in hint for hint in hints_for(opaque))


def test_small_catalog_hint() -> None:
    hints = hints_for(exact_topk(ITEMS, 5))
    assert any("under 10,000" in hint for hint in hints)
