"""Prefix caching: a prompt prefix shared by many requests (a system prompt, a few-shot
header) is run through the model once; each request starting with it gets a *copy* of its
keys and values and runs only the rest of its prompt.

:func:`shared_prefixes` finds such prefixes in observed prompts (token level, so it works
whatever built the prompt); :class:`PrefixCache` holds their KV.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from typing import Any

from pipetune.plugins.llm import kv_cache

#: A prefix shorter than this saves too little prefill to be worth a cache entry.
MIN_PREFIX_TOKENS = 8


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def shared_prefixes(
    prompts: Sequence[Sequence[int]],
    *,
    min_tokens: int = MIN_PREFIX_TOKENS,
    min_share: float = 0.2,
    max_prefixes: int = 8,
) -> list[tuple[int, ...]]:
    """Token prefixes that at least ``min_share`` of ``prompts`` (and at least two) start
    with, each at least ``min_tokens`` long and shorter than every prompt using it (the last
    prompt token must still run to produce logits). Nested prefixes (a system prompt, then
    a few-shot header under it) are all returned, longest first."""
    rows = sorted(tuple(p) for p in prompts if p)
    if len(rows) < 2:
        return []
    need = max(2, int(min_share * len(rows) + 0.999999))
    adjacent = [_lcp(a, b) for a, b in itertools.pairwise(rows)]
    found: dict[tuple[int, ...], int] = {}

    def visit(lo: int, hi: int) -> None:
        # rows[lo:hi+1] form a run whose adjacent LCPs are adjacent[lo:hi]
        if hi - lo + 1 < need or lo >= hi:
            return
        depth = min(adjacent[lo:hi])
        shortest = min(len(rows[i]) for i in range(lo, hi + 1))
        usable = min(depth, shortest - 1)
        if usable >= min_tokens:
            prefix = rows[lo][:usable]
            found[prefix] = max(found.get(prefix, 0), hi - lo + 1)
        start = lo
        for i in range(lo, hi):  # split where the LCP equals this run's depth
            if adjacent[i] <= depth:
                visit(start, i)
                start = i + 1
        if start > lo:
            visit(start, hi)

    # top level: runs of rows whose adjacent LCP reaches min_tokens
    start = 0
    for i, value in enumerate([*adjacent, -1]):
        if value < min_tokens:
            visit(start, i)
            start = i + 1
    ranked = sorted(found, key=lambda p: (-len(p) * found[p], -len(p)))
    return sorted(ranked[:max_prefixes], key=len, reverse=True)


def prefix_coverage(
    prompts: Sequence[Sequence[int]], prefixes: Sequence[Sequence[int]]
) -> dict[str, float]:
    """How much prefill the prefixes would save on ``prompts``."""
    total = sum(len(p) for p in prompts) or 1
    saved, hits = 0, 0
    ordered = sorted((tuple(p) for p in prefixes), key=len, reverse=True)
    for prompt in prompts:
        for prefix in ordered:
            if len(prefix) < len(prompt) and tuple(prompt[: len(prefix)]) == prefix:
                saved += len(prefix)
                hits += 1
                break
    return {
        "requests_with_prefix": hits / max(len(prompts), 1),
        "prefill_tokens_saved": saved / total,
    }


class PrefixCache:
    """KV for known prompt prefixes, computed on first use and copied for each request.

    The cached tensors are never handed out: every hit gets a copy, because decoding
    appends to (and the batch schedulers pad) the cache it is given.
    """

    def __init__(self, prefixes: Sequence[Sequence[int]]):
        self.prefixes = sorted(
            {tuple(int(t) for t in p) for p in prefixes if p}, key=len, reverse=True
        )
        self._kv: dict[tuple[int, ...], Any] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.tokens_reused = 0

    def match(self, prompt: Sequence[int]) -> tuple[int, ...] | None:
        for prefix in self.prefixes:
            if len(prefix) < len(prompt) and tuple(prompt[: len(prefix)]) == prefix:
                return prefix
        return None

    def lookup(self, engine: Any, prompt: Sequence[int]) -> tuple[int, Any]:
        """``(reused_tokens, cache_copy)`` for ``prompt``, or ``(0, None)`` on a miss."""
        prefix = self.match(prompt)
        if prefix is None:
            self.misses += 1
            return 0, None
        with self._lock:
            kv = self._kv.get(prefix)
            if kv is None:
                # never appended to: transformers' own layers hold it without spare columns
                kv = kv_cache.new_cache(engine.model, growing=False)
                engine.forward(engine._tensor([list(prefix)]), cache=kv)
                self._kv[prefix] = kv
        self.hits += 1
        self.tokens_reused += len(prefix)
        return len(prefix), kv_cache.clone(engine.model, kv)

    def clear(self) -> None:
        """Forget the computed KV (the validator resets warm state between rounds)."""
        with self._lock:
            self._kv.clear()
        self.hits = self.misses = self.tokens_reused = 0

    # the validator's warm-state protocol (pipetune.core.kernel.state)
    def pipetune_reset(self) -> None:
        self.clear()

    def pipetune_cache_stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses}

    def stats(self) -> dict[str, Any]:
        return {
            "prefixes": [len(p) for p in self.prefixes],
            "hits": self.hits,
            "misses": self.misses,
            "tokens_reused": self.tokens_reused,
            "bytes": sum(kv_cache.nbytes(kv) for kv in self._kv.values()),
        }
