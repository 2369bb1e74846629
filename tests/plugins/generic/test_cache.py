"""Result caching keyed by content hash: equality by content, bounded LRU, resettable."""

from __future__ import annotations

import hashlib

import numpy as np

from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.kernel.state import cache_stats, reset_state
from pipetune.plugins.generic.cache import (
    ResultCache,
    cached_stage,
    content_hash,
    repeat_rate,
)


def test_equal_content_hashes_equal_whatever_the_object():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert content_hash(a) == content_hash(a.copy())
    assert content_hash(a) != content_hash(a.astype(np.float64))  # dtype is content
    assert content_hash(a) != content_hash(a.reshape(4, 3))  # so is shape
    assert content_hash({"x": 1, "y": [1, 2]}) == content_hash({"y": [1, 2], "x": 1})
    assert content_hash((1, 2)) != content_hash([1, 2])
    assert content_hash("ab") != content_hash(b"ab")
    assert content_hash(1) != content_hash(1.0) and content_hash(True) != content_hash(1)


def test_a_file_path_hashes_by_identity_and_version(tmp_path):
    path = tmp_path / "doc.txt"
    path.write_text("one")
    first = content_hash(path)
    assert content_hash(tmp_path / "doc.txt") == first
    path.write_text("three")  # new size (and mtime): a new key
    assert content_hash(path) != first


def test_lru_evicts_the_least_recently_used_and_counts():
    cache = ResultCache(capacity=2)
    cache.put(b"a", 1)
    cache.put(b"b", 2)
    assert cache.get(b"a") == (True, 1)  # a is now the most recent
    cache.put(b"c", 3)  # evicts b
    assert cache.get(b"b") == (False, None)
    assert cache.get(b"c") == (True, 3)
    stats = cache.pipetune_cache_stats()
    assert stats["hits"] == 2 and stats["misses"] == 1 and stats["evictions"] == 1
    cache.pipetune_reset()
    assert len(cache) == 0 and cache.pipetune_cache_stats()["hits"] == 0


calls: list[str] = []


def shout(text, *, suffix):
    calls.append(text)
    return text.upper() + suffix


def shout_batch(texts, *, suffix):
    calls.append(f"batch{len(texts)}")
    return [t.upper() + suffix for t in texts]


def test_a_cached_stage_gives_the_same_outputs_and_skips_repeats():
    calls.clear()
    stage = Stage("shout", shout, slots={"suffix": "!"}, batch_fn=shout_batch)
    pipeline = Pipeline("p", (cached_stage(stage, capacity=8),))
    items = ["a", "b", "a", "c", "a", "b"]
    expected = [stage(x) for x in items]
    calls.clear()
    assert [pipeline.run(x) for x in items] == expected
    assert calls == ["a", "b", "c"]  # each distinct input computed once
    stats = cache_stats(pipeline)["shout"]
    assert stats["hits"] == 3 and stats["misses"] == 3 and stats["hit_rate"] == 0.5
    reset_state(pipeline)
    calls.clear()
    assert pipeline.run_batch(["x", "y", "x", "x"]) == ["X!", "Y!", "X!", "X!"]
    assert calls == ["batch2"]  # a repeat inside the batch is computed once
    assert stage.meta == {} and stage.fn is shout  # the original stage is untouched


def test_a_replaced_slot_never_serves_results_of_the_old_one():
    stage = cached_stage(Stage("shout", shout, slots={"suffix": "!"}), capacity=8)
    assert stage("a") == "A!"
    quieter = stage.with_slots(suffix="?")  # shares the cache object with `stage`
    assert quieter("a") == "A?"


def test_unhashable_inputs_pass_through():
    class Opaque:
        def __reduce__(self):
            raise TypeError("no pickling")

    stage = cached_stage(Stage("id", lambda x: 42), capacity=4)
    assert stage(Opaque()) == 42 and stage(Opaque()) == 42
    assert stage.fn.cache.unhashable == 2


def test_repeat_rate_is_the_one_pass_hit_rate():
    assert repeat_rate(["a", "b", "a", "a"]) == 0.5
    assert repeat_rate([]) is None
    digest = hashlib.sha256(b"x").digest()
    assert repeat_rate([digest, digest]) == 0.5


def test_a_cached_stage_passes_on_slots_named_like_its_own_arguments():
    from pipetune.core.kernel.model import Stage
    from pipetune.plugins.generic.cache import cached_stage

    def score(x, *, items, item):
        return items[x] + item

    stage = Stage("rank", score, slots={"items": [10, 20, 30], "item": 1})
    cached = cached_stage(stage)
    assert [cached(x) for x in (0, 1, 0)] == [11, 21, 11]
    assert cached.call_batch([2, 0]) == [31, 11]
