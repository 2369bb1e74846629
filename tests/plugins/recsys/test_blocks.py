"""The building blocks compute what they claim, and bad input gets clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from pipetune.core.kernel.errors import ConfigError, PipelineError, StageError
from pipetune.core.kernel.model import Pipeline
from pipetune.core.runtime.offline import run_offline
from pipetune.plugins.recsys import (
    SimulatedFeatureStore,
    TTLCache,
    embedding,
    exact_topk,
    feature_lookup,
    full_ranking,
)
from pipetune.plugins.recsys.features import CountingStore


def brute_force(items: np.ndarray, query: np.ndarray, k: int, metric: str) -> list[int]:
    if metric == "ip":
        scores = items @ query
    elif metric == "l2":
        scores = -((items - query) ** 2).sum(1)
    else:
        scores = (items @ query) / np.linalg.norm(items, axis=1)
    return list(np.argsort(-scores, kind="stable")[:k])


@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
def test_exact_topk_matches_brute_force(metric: str) -> None:
    rng = np.random.default_rng(0)
    items = rng.standard_normal((500, 16)).astype(np.float32)
    stage = exact_topk(items, 10, metric=metric)
    for query in rng.standard_normal((5, 16)).astype(np.float32):
        assert stage(query).tolist() == brute_force(items, query, 10, metric)
    batch = rng.standard_normal((3, 16)).astype(np.float32)
    assert stage(batch).shape == (3, 10)
    assert [r.tolist() for r in stage.call_batch(list(batch))] == [
        brute_force(items, q, 10, metric) for q in batch
    ]


def test_exact_topk_accepts_torch_matrices() -> None:
    torch = pytest.importorskip("torch", reason="torch is an optional dependency (recsys extra)")
    items = torch.randn(300, 8)
    stage = exact_topk(items, 5)
    query = np.ones(8, dtype=np.float32)
    assert stage(query).tolist() == brute_force(items.numpy(), query, 5, "ip")


def test_bad_input_errors_name_the_stage_and_slot() -> None:
    items = np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32)
    with pytest.raises(ConfigError, match=r"stage 'retrieve'.*k=101 is larger than the catalog"):
        exact_topk(items, 101)
    broken = items.copy()
    broken[[3, 7]] = np.nan
    with pytest.raises(ConfigError, match=r"slot 'items'.*2 item vector\(s\).*rows 3, 7"):
        exact_topk(broken, 5)
    with pytest.raises(ConfigError, match="2-D item matrix"):
        exact_topk(items[0], 5)
    stage = exact_topk(items, 5)
    with pytest.raises(PipelineError, match=r"stage 'retrieve'.*4 dimensions.*has 8"):
        stage(np.ones(4, dtype=np.float32))
    query = np.ones(8, dtype=np.float32)
    query[2] = np.inf
    with pytest.raises(PipelineError, match="NaN or infinite"):
        stage(query)
    # through the runtime the error still names the stage
    pipeline = Pipeline("p", (stage,))
    with pytest.raises(StageError, match=r"retrieve.*4 dimensions"):
        run_offline(pipeline, [np.ones(4, dtype=np.float32)])


def test_full_ranking_scores_every_item_or_the_candidates() -> None:
    rng = np.random.default_rng(1)
    items = rng.standard_normal((200, 8)).astype(np.float32)
    seen: list[int] = []

    def ranker(request, ids):
        seen.append(len(ids))
        return items[ids] @ request["query"]

    stage = full_ranking(ranker, items, 5)
    request = {"query": rng.standard_normal(8).astype(np.float32)}
    full = stage(request)
    assert seen == [200]
    assert full.tolist() == brute_force(items, request["query"], 5, "ip")
    subset = stage.fn(
        request,
        candidates=full[::-1].copy(),
        **{n: stage.slots[n] for n in ("ranker", "k", "catalog_size")},
    )
    assert seen[-1] == 5 and sorted(subset.tolist()) == sorted(full.tolist())
    with pytest.raises(ConfigError, match="ranker must be callable"):
        full_ranking("not a ranker", items, 5)


def test_feature_lookup_batched_equals_per_key_and_saves_calls() -> None:
    table = {("user", 1): np.arange(3.0), ("item", 5): np.ones(2), ("item", 6): np.zeros(2)}
    store = CountingStore(SimulatedFeatureStore(table, per_call_ms=0, per_key_ms=0))

    def keys(request):
        return [("user", request["user_id"])] + [("item", i) for i in request["history"]]

    request = {"user_id": 1, "history": [5, 6]}
    one = feature_lookup(store, keys)(request)
    assert store.calls == 3
    many = feature_lookup(store, keys, batched=True)(request)
    assert store.calls == 4 and store.keys == 6
    assert one.keys() == many.keys()
    for key in table:
        assert np.array_equal(one["features"][key], many["features"][key])
    with pytest.raises(KeyError, match="no features for key"):
        feature_lookup(store, lambda r: [("user", 99)])(request)


def test_embedding_cache_serves_repeat_users() -> None:
    calls: list[int] = []

    def encode(request, model):
        calls.append(request["user_id"])
        return np.full(4, float(request["user_id"]) * model)

    stage = embedding(encode, model=2.0)
    cached = stage.with_slots(cache=TTLCache(8, ttl_s=60))
    first = cached({"user_id": 3, "ts": 1})
    again = cached({"user_id": 3, "ts": 2})
    assert calls == [3]
    assert again["ts"] == 2 and np.array_equal(first["embedding"], again["embedding"])
    assert stage({"user_id": 3})["embedding"].tolist() == [6.0] * 4
    with pytest.raises(PipelineError, match="no 'user_id'"):
        cached({"user": 3})
