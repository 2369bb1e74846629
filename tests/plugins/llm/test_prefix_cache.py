"""Prefix caching: detection of shared prefixes and identical outputs with reuse."""

from __future__ import annotations

from pipetune.plugins.llm.engine import Engine
from pipetune.plugins.llm.prefix_cache import PrefixCache, prefix_coverage, shared_prefixes
from pipetune.plugins.llm.records import GenerateConfig


def test_shared_prefixes_finds_system_prompt_and_nested_header():
    system = list(range(100, 140))  # 40 tokens
    header = list(range(200, 220))  # a few-shot header under the system prompt
    prompts = [[*system, 1, 2, i] for i in range(4)]
    prompts += [system + header + [3, i] for i in range(4)]
    prompts += [[7, 8, 9, i] for i in range(4)]  # no shared prefix
    found = shared_prefixes(prompts, min_tokens=8, min_share=0.2)
    # the longest prefix each group shares (the header group also shares its next token)
    assert tuple([*system, *header, 3]) in found
    assert tuple([*system, 1, 2]) in found
    assert tuple(system) in found  # shared by both groups
    assert found == sorted(found, key=len, reverse=True)
    coverage = prefix_coverage(prompts, found)
    assert coverage["requests_with_prefix"] == 8 / 12


def test_no_prefix_when_prompts_do_not_share_one():
    prompts = [[i, i + 1, i + 2] * 5 for i in range(10)]
    assert shared_prefixes(prompts) == []
    assert shared_prefixes([[1, 2, 3]]) == []


def test_a_prefix_never_covers_a_whole_prompt():
    prompts = [list(range(20)), list(range(20)), [*range(20), 5]]
    for prefix in shared_prefixes(prompts, min_tokens=4):
        assert len(prefix) < 20


def test_prefix_cache_gives_identical_tokens_and_counts_hits(model, requests_):
    prompts = [r.prompt_ids for r in requests_]
    prefixes = shared_prefixes(prompts)
    assert prefixes, "the fixture's requests share a system prompt"
    base = Engine(model, GenerateConfig())
    cache = PrefixCache(prefixes)
    cached = Engine(model, GenerateConfig(prefixes=tuple(prefixes)), prefix_cache=cache)
    for request in requests_:
        result = cached.generate(request)
        assert result.tokens == base.generate(request).tokens
        assert result.stats["prefix_tokens_reused"] >= len(prefixes[-1])
    stats = cache.stats()
    assert stats["hits"] == len(requests_) and stats["misses"] == 0
    assert stats["bytes"] > 0
    cache.clear()
    assert cache.stats()["hits"] == 0 and cache.stats()["bytes"] == 0


def test_cached_prefix_kv_is_copied_not_shared(llama, requests_):
    from pipetune.plugins.llm import kv_cache

    prefixes = shared_prefixes([r.prompt_ids for r in requests_])
    cache = PrefixCache(prefixes)
    engine = Engine(llama, GenerateConfig(), prefix_cache=cache)
    n, first = cache.lookup(engine, requests_[0].prompt_ids)
    kv_cache.pad_left(first, 3)  # what the batch schedulers do to a request's cache
    _, second = cache.lookup(engine, requests_[0].prompt_ids)
    assert kv_cache.seq_length(second) == n
