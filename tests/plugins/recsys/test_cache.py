"""The user-embedding cache: bounded LRU with a TTL."""

from __future__ import annotations

import pytest

from pipetune.core.kernel.errors import ConfigError
from pipetune.plugins.recsys.cache import MISSING, TTLCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_ttl_expires_entries() -> None:
    clock = Clock()
    cache = TTLCache(10, ttl_s=5.0, clock=clock)
    cache.put("u1", "e1")
    clock.now = 4.9
    assert cache.get("u1") == "e1"
    clock.now = 10.0
    assert cache.get("u1") is MISSING
    assert cache.stats()["expired"] == 1


def test_lru_bound() -> None:
    cache = TTLCache(2, ttl_s=60.0)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is MISSING
    assert len(cache) == 2
    assert cache.stats()["evictions"] == 1


def test_get_or_compute_counts_hits() -> None:
    cache = TTLCache(4, ttl_s=60.0)
    calls = []
    for _ in range(3):
        cache.get_or_compute("u", lambda: calls.append(1) or "v")
    assert calls == [1]
    stats = cache.stats()
    assert (stats["hits"], stats["misses"]) == (2, 1)
    assert stats["hit_rate"] == pytest.approx(2 / 3)


def test_bad_settings() -> None:
    with pytest.raises(ConfigError):
        TTLCache(0, ttl_s=1)
    with pytest.raises(ConfigError):
        TTLCache(1, ttl_s=0)


def test_host_reset_protocol() -> None:
    from pipetune.core.kernel.model import Pipeline
    from pipetune.core.kernel.state import cache_stats, reset_state
    from pipetune.plugins.recsys import embedding

    stage = embedding(lambda r, m: [r["user_id"]], model=None)
    cache = TTLCache(8, ttl_s=60)
    pipeline = Pipeline("p", (stage.with_slots(cache=cache),))
    for user in (1, 1, 2):
        pipeline.run({"user_id": user})
    assert cache_stats(pipeline)["embed"] == {"hits": 1, "misses": 2, "hit_rate": 1 / 3}
    assert reset_state(pipeline) == ["embed: slot cache"]
    assert len(cache) == 0 and cache.pipetune_cache_stats() == {"hits": 0, "misses": 0}
