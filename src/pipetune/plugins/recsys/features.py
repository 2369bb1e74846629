"""Feature-store access: the per-key lookup pattern, its batched form, and a simulated store.

A feature store (Redis, DynamoDB, Feast's online store) answers over the network: each call
pays a round trip, each key a little more. A stage that calls ``store.get(key)`` once per
item pays the round trip per item; one ``get_many(keys)`` pays it once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from pipetune.core.kernel.errors import ConfigError

#: Batch-read method names recognized on a store object, in order of preference.
BATCH_METHODS = ("get_many", "mget", "multi_get", "batch_get", "get_batch")


def batch_method(store: Any) -> str | None:
    """The name of ``store``'s batch-read method, or ``None``."""
    for name in BATCH_METHODS:
        if callable(getattr(store, name, None)):
            return name
    return None


def read_many(store: Any, keys: Sequence[Hashable]) -> list[Any]:
    """Values for ``keys`` in one batch call (the store's batch method)."""
    method = batch_method(store)
    if method is None:
        raise ConfigError(
            f"{type(store).__name__} has no batch-read method (one of {', '.join(BATCH_METHODS)})"
        )
    values = list(getattr(store, method)(list(keys)))
    if len(values) != len(keys):
        raise ConfigError(
            f"{type(store).__name__}.{method} returned {len(values)} values for {len(keys)} keys"
        )
    return values


class SimulatedFeatureStore:
    """An in-memory feature table behind a simulated network round trip.

    Each call sleeps ``per_call_ms`` (the round trip) plus ``per_key_ms`` per key (the
    payload), the way an online feature store answers: time spent waiting, not computing,
    so the GIL is released as it would be on a socket. Values are copied out, as a real
    store deserializes them.
    """

    def __init__(
        self,
        lookup: Mapping[Hashable, Any] | Callable[[Hashable], Any],
        *,
        per_call_ms: float = 0.5,
        per_key_ms: float = 0.002,
        name: str = "feature-store",
    ) -> None:
        if per_call_ms < 0 or per_key_ms < 0:
            raise ConfigError("simulated feature-store latencies must be non-negative")
        self._lookup = lookup
        self.per_call_ms = per_call_ms
        self.per_key_ms = per_key_ms
        self.name = name

    def _value(self, key: Hashable) -> Any:
        try:
            value = self._lookup(key) if callable(self._lookup) else self._lookup[key]
        except (KeyError, IndexError):
            raise KeyError(f"{self.name}: no features for key {key!r}") from None
        copy = getattr(value, "copy", None)
        return copy() if callable(copy) else value

    def _wait(self, keys: int) -> None:
        delay = (self.per_call_ms + self.per_key_ms * keys) / 1000.0
        if delay > 0:
            time.sleep(delay)

    def get(self, key: Hashable) -> Any:
        self._wait(1)
        return self._value(key)

    def get_many(self, keys: Sequence[Hashable]) -> list[Any]:
        self._wait(len(keys))
        return [self._value(key) for key in keys]

    def __repr__(self) -> str:
        return (
            f"SimulatedFeatureStore({self.name!r}, per_call_ms={self.per_call_ms:g}, "
            f"per_key_ms={self.per_key_ms:g})"
        )


class CountingStore:
    """A proxy that counts calls and keys on a store (to measure the lookup pattern)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._lock = threading.Lock()
        self.calls = 0
        self.keys = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not callable(attribute) or name not in ("get", *BATCH_METHODS):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            keys = len(args[0]) if name != "get" and args else 1
            with self._lock:
                self.calls += 1
                self.keys += keys
            return attribute(*args, **kwargs)

        return counted
