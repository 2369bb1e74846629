"""A bounded user-embedding cache with a time-to-live.

Why a domain cache beside the generic plugin's result cache? The generic cache
keys a stage's *whole input* by content hash: in a recommender each request carries its own
context (a timestamp, a session, the items on screen), so the same user rarely sends the
same bytes twice and a content-hash cache never hits. A user embedding depends on the user,
not on the request: this cache keys the embedding by the user's id, stores only the
embedding (the request's own fields still flow through), and bounds staleness with a TTL,
because a user's features drift and a cached embedding must be recomputed after a while.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from pipetune.core.kernel.errors import ConfigError

#: Returned by :meth:`TTLCache.get` on a miss (``None`` may be a cached value).
MISSING = object()


class TTLCache:
    """Least-recently-used eviction beyond ``maxsize`` entries; an entry older than
    ``ttl_s`` seconds is a miss and is recomputed. Thread-safe."""

    def __init__(
        self, maxsize: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not isinstance(maxsize, int) or maxsize < 1:
            raise ConfigError(f"cache maxsize must be a positive integer, got {maxsize!r}")
        if not ttl_s > 0:
            raise ConfigError(f"cache ttl_s must be positive, got {ttl_s!r}")
        self.maxsize = maxsize
        self.ttl_s = float(ttl_s)
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = self.expired = self.evictions = 0

    def get(self, key: Hashable) -> Any:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return MISSING
            stored_at, value = entry
            if now - stored_at > self.ttl_s:
                del self._entries[key]
                self.expired += 1
                self.misses += 1
                return MISSING
            self._entries.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, value: Any) -> None:
        now = self._clock()
        with self._lock:
            self._entries[key] = (now, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
                self.evictions += 1

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        value = self.get(key)
        if value is MISSING:
            value = compute()
            self.put(key, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    # The host's warm-state protocol (pipetune.core.kernel.state): the validator empties the cache
    # before every measured pass, so a speedup is never measured on a cache left warm by
    # the previous pass, and reads the hit rate the workload itself produced.
    def pipetune_reset(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = self.expired = self.evictions = 0

    def pipetune_cache_stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses}

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> dict[str, Any]:
        lookups = self.hits + self.misses
        return {
            "maxsize": self.maxsize,
            "ttl_s": self.ttl_s,
            "entries": len(self._entries),
            "hits": self.hits,
            "misses": self.misses,
            "expired": self.expired,
            "evictions": self.evictions,
            "hit_rate": self.hits / lookups if lookups else 0.0,
        }

    def __repr__(self) -> str:
        return f"TTLCache(maxsize={self.maxsize}, ttl_s={self.ttl_s:g}, entries={len(self)})"
