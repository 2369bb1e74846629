"""Result caching keyed by a content hash: a bounded LRU in front of a deterministic stage.

A workload where the same inputs come back (the same query, the same document section,
the same product page) pays for each repeat in full. :func:`cached_stage` returns a copy of
a stage that looks its input up by a hash of its *content* (not its identity: two equal
strings from two requests hit), runs the stage only on a miss, and keeps at most
``capacity`` results, evicting the least recently used.

The cache implements the validator's state protocol (:mod:`pipetune.core.kernel.state`): it is
emptied before every measured pass (``pipetune_reset``) and reports its hits and misses
(``pipetune_cache_stats``), so its speedup is measured at the workload's own repeat rate
and can never exceed ``1 / (1 - hit rate)``.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipetune.core.kernel.content import ContentFeeder
from pipetune.core.kernel.model import Stage, accepted_slots

META_KEY = "generic.cache"


class Unhashable(TypeError):
    """The input has no stable content hash; the cache passes it through."""


def content_hash(value: Any) -> bytes:
    """A stable digest of ``value``'s content (equal content, equal digest)."""
    digest = hashlib.blake2b(digest_size=16)
    _FEEDER.feed(digest, value)
    return digest.digest()


def _feed_path(digest: Any, value: Path) -> None:
    """A file's identity and version, not its bytes: reading it would cost what the
    stage costs. An edited file has a new mtime and size, hence a new key."""
    try:
        stat = value.stat()
        digest.update(f"path:{value.resolve()}:{stat.st_mtime_ns}:{stat.st_size};".encode())
    except OSError:
        digest.update(f"path:{value};".encode())


def _unhashable(value: Any, exc: Exception) -> Unhashable:
    """The error for an input with no content hash: the cache passes it through."""
    return Unhashable(f"no content hash for {type(value).__name__}: {exc}")


_FEEDER = ContentFeeder(feed_path=_feed_path, unhashable=_unhashable)


class ResultCache:
    """A thread-safe, bounded LRU of stage results keyed by content hash."""

    def __init__(self, capacity: int = 4096):
        if capacity < 1:
            raise ValueError("cache capacity must be >= 1")
        self.capacity = capacity
        self._entries: OrderedDict[bytes, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.unhashable = 0

    def get(self, key: bytes) -> tuple[bool, Any]:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return True, self._entries[key]
            self.misses += 1
            return False, None

    def put(self, key: bytes, value: Any) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
                self.evictions += 1

    def __len__(self) -> int:
        return len(self._entries)

    # -- the validator's state protocol ----------------------------------------------------
    def pipetune_reset(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = self.evictions = self.unhashable = 0

    def pipetune_cache_stats(self) -> dict[str, int]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "unhashable": self.unhashable,
            "size": len(self._entries),
            "capacity": self.capacity,
        }


def _accepted(fn: Callable[..., Any] | None, slots: Mapping[str, Any]) -> tuple[str, ...]:
    return () if fn is None else accepted_slots(fn, slots)


def name_after(wrapper: Any, inner: Any, prefix: str) -> None:
    """Name ``wrapper`` after the function it wraps (``cached_encode``), in that function's
    module (else the wrapper class's), so reports and profiles still point at the user's
    code."""
    wrapper.__name__ = f"{prefix}_{getattr(inner, '__name__', 'stage')}"
    wrapper.__qualname__ = wrapper.__name__
    wrapper.__module__ = getattr(inner, "__module__", type(wrapper).__module__)


class SharedCacheState:
    """The validator's state protocol, passed to the :class:`ResultCache` in ``cache``.
    Only the per-item wrapper of a stage carries it, not the batch wrapper sharing the
    same cache, so that cache is reset and counted once."""

    cache: ResultCache

    def pipetune_reset(self) -> None:
        self.cache.pipetune_reset()

    def pipetune_cache_stats(self) -> dict[str, int]:
        return self.cache.pipetune_cache_stats()


class _Cached:
    """Shared by the per-item and batch wrappers: the key includes the identity of the
    slot objects, so a copy of the stage with a replaced slot (a faster tokenizer) never
    serves results computed with the old one."""

    def __init__(self, inner: Callable[..., Any], cache: ResultCache, stage_slots: Sequence[str]):
        self.inner = inner
        self.cache = cache
        self.inner_slots = tuple(stage_slots)
        name_after(self, inner, "cached")

    def _key(self, item: Any, slots: Mapping[str, Any]) -> bytes | None:
        try:
            digest = content_hash(item)
        except Unhashable:
            self.cache.unhashable += 1
            return None
        salt = ",".join(f"{name}={id(slots[name])}" for name in self.inner_slots)
        return digest + salt.encode()


class CachedFn(SharedCacheState, _Cached):
    """``fn(item, **slots)`` answered from the cache when the item was seen.

    It carries the validator's state protocol for the cache it shares with the stage's
    :class:`CachedBatchFn` (only here, so the cache is counted once).
    """

    def __call__(self, item: Any, /, **slots: Any) -> Any:
        kwargs = {name: slots[name] for name in self.inner_slots}
        key = self._key(item, kwargs)
        if key is None:
            return self.inner(item, **kwargs)
        found, value = self.cache.get(key)
        if found:
            return value
        value = self.inner(item, **kwargs)
        self.cache.put(key, value)
        return value


class CachedBatchFn(_Cached):
    """``batch_fn(items, **slots)``: only the misses go to the inner batch call."""

    def __call__(self, items: Sequence[Any], /, **slots: Any) -> list[Any]:
        kwargs = {name: slots[name] for name in self.inner_slots}
        results: list[Any] = [None] * len(items)
        missing: list[int] = []
        keys: list[bytes | None] = []
        first_of: dict[bytes, int] = {}
        for i, item in enumerate(items):
            key = self._key(item, kwargs)
            keys.append(key)
            if key is not None:
                found, value = self.cache.get(key)
                if found:
                    results[i] = value
                    continue
                if key in first_of:  # a repeat inside this batch: computed once
                    continue
                first_of[key] = i
            missing.append(i)
        if missing:
            computed = list(self.inner([items[i] for i in missing], **kwargs))
            for i, value in zip(missing, computed, strict=True):
                results[i] = value
                if keys[i] is not None:
                    self.cache.put(keys[i], value)  # type: ignore[arg-type]
        for i, key in enumerate(keys):
            if key is not None and key in first_of and first_of[key] != i:
                results[i] = results[first_of[key]]
        return results


#: A stage whose ``meta`` sets this to True maps a sequence to one output per element, each
#: depending on that element only (``fn(seq)[i] == fn((seq[i],))[0]``): a document's
#: sections to their embeddings. It is cached per element, so a section shared by two
#: documents (a letterhead, an unchanged paragraph of a revision) is computed once.
ELEMENTWISE_KEY = "elementwise"


def is_elementwise(stage: Stage) -> bool:
    return bool(stage.meta.get(ELEMENTWISE_KEY))


@dataclass
class _Lookup:
    """One call's cache lookups: each sequence's element keys, the values found by key, the
    misses to compute by key, and the unhashable elements (computed, never cached)."""

    keys: list[list[bytes | None]] = field(default_factory=list)
    found: dict[bytes, Any] = field(default_factory=dict)
    todo: dict[bytes, Any] = field(default_factory=dict)
    loose: list[Any] = field(default_factory=list)


class _ElementwiseCached(_Cached):
    """Per-element lookups for an elementwise stage; the misses of every sequence in a call
    go to the inner function in one call (each element once)."""

    def __init__(
        self,
        inner: Callable[..., Any],
        cache: ResultCache,
        stage_slots: Sequence[str],
        *,
        batch: bool,
        shape: dict[str, bool],
    ):
        super().__init__(inner, cache, stage_slots)
        self.batch = batch
        # Shared by the per-item and batch wrappers: whether the stage returns an array
        # (its cached rows are then stacked back into one).
        self.shape = shape

    def _compute(self, elements: list[Any], kwargs: Mapping[str, Any]) -> list[Any]:
        if self.batch:
            out = next(iter(self.inner([tuple(elements)], **kwargs)))
        else:
            out = self.inner(tuple(elements), **kwargs)
        self.shape["stack"] = isinstance(out, np.ndarray)
        rows = list(out)
        if len(rows) != len(elements):
            raise ValueError(
                f"an elementwise stage returned {len(rows)} outputs for {len(elements)} elements"
            )
        return rows

    def outputs(self, sequences: Sequence[Any], kwargs: Mapping[str, Any]) -> list[Any]:
        """Each sequence's output: its elements answered from the cache where seen, the
        rest computed in one inner call."""
        lookup = self._look_up(sequences, kwargs)
        loose_values = self._compute_misses(lookup, kwargs)
        return [
            self._assemble(seq, row_keys, lookup.found, loose_values, kwargs)
            for seq, row_keys in zip(sequences, lookup.keys, strict=True)
        ]

    def _look_up(self, sequences: Sequence[Any], kwargs: Mapping[str, Any]) -> _Lookup:
        """Key every element and look each distinct key up once; a repeat inside this call
        counts as a hit (it is computed once)."""
        lookup = _Lookup()
        for seq in sequences:
            row_keys = []
            for element in seq:
                key = self._key(element, kwargs)
                row_keys.append(key)
                if key is None:
                    lookup.loose.append(element)
                elif key not in lookup.found and key not in lookup.todo:
                    hit, value = self.cache.get(key)
                    if hit:
                        lookup.found[key] = value
                    else:
                        lookup.todo[key] = element
                else:
                    self.cache.hits += 1  # a repeat inside this call: computed once
            lookup.keys.append(row_keys)
        return lookup

    def _compute_misses(self, lookup: _Lookup, kwargs: Mapping[str, Any]) -> Iterator[Any]:
        """Compute the misses and the unhashable elements in one inner call, caching the
        misses; returns the unhashable elements' outputs, in order."""
        missing = list(lookup.todo.items())
        computed = (
            self._compute([e for _, e in missing] + lookup.loose, kwargs)
            if missing or lookup.loose
            else []
        )
        for (key, _), value in zip(missing, computed, strict=False):
            lookup.found[key] = value
            self.cache.put(key, value)
        return iter(computed[len(missing) :])

    def _assemble(
        self,
        seq: Any,
        row_keys: list[bytes | None],
        found: Mapping[bytes, Any],
        loose_values: Iterator[Any],
        kwargs: Mapping[str, Any],
    ) -> Any:
        """One sequence's output from its elements' rows: stacked when the stage returns an
        array, else a tuple or list like the input."""
        if not row_keys:  # an empty sequence: the stage's own empty output
            return self._compute_empty(seq, kwargs)
        rows = [found[k] if k is not None else next(loose_values) for k in row_keys]
        if self.shape.get("stack"):
            return np.stack(rows)
        return tuple(rows) if isinstance(seq, tuple) else rows

    def _compute_empty(self, seq: Any, kwargs: Mapping[str, Any]) -> Any:
        if self.batch:
            return next(iter(self.inner([seq], **kwargs)))
        return self.inner(seq, **kwargs)


class ElementwiseCachedFn(SharedCacheState, _ElementwiseCached):
    """``fn(sequence, **slots)`` with each element answered from the cache when seen. It
    carries the state protocol for the cache it shares with the batch wrapper."""

    def __call__(self, sequence: Any, /, **slots: Any) -> Any:
        kwargs = {name: slots[name] for name in self.inner_slots}
        return self.outputs([sequence], kwargs)[0]


class ElementwiseCachedBatchFn(_ElementwiseCached):
    """``batch_fn(sequences, **slots)``: the misses of all sequences in one inner call."""

    def __call__(self, sequences: Sequence[Any], /, **slots: Any) -> list[Any]:
        kwargs = {name: slots[name] for name in self.inner_slots}
        return self.outputs(list(sequences), kwargs)


def cached_stage(stage: Stage, capacity: int = 4096, *, per_element: bool | None = None) -> Stage:
    """A copy of ``stage`` with a result cache in front (the original is untouched).
    An elementwise stage (``meta["elementwise"]``, or ``per_element=True`` for a stage
    found to map over the parts of its input) is cached per element."""
    cache = ResultCache(capacity)
    if is_elementwise(stage) if per_element is None else per_element:
        shape: dict[str, bool] = {}
        fn: Any = ElementwiseCachedFn(
            stage.fn, cache, _accepted(stage.fn, stage.slots), batch=False, shape=shape
        )
        batch_fn: Any = (
            ElementwiseCachedBatchFn(
                stage.batch_fn,
                cache,
                _accepted(stage.batch_fn, stage.slots),
                batch=True,
                shape=shape,
            )
            if stage.batch_fn is not None
            else None
        )
        return stage.evolve(fn=fn, batch_fn=batch_fn).noted(
            **{META_KEY: {"capacity": capacity, "per": "element"}}
        )
    fn = CachedFn(stage.fn, cache, _accepted(stage.fn, stage.slots))
    batch_fn = (
        CachedBatchFn(stage.batch_fn, cache, _accepted(stage.batch_fn, stage.slots))
        if stage.batch_fn is not None
        else None
    )
    return stage.evolve(fn=fn, batch_fn=batch_fn).noted(**{META_KEY: {"capacity": capacity}})


def elements_of(inputs: Sequence[Any]) -> list[Any]:
    """The elements of an elementwise stage's inputs, flattened in order."""
    return [element for value in inputs for element in value]


def repeat_rate(items: Sequence[Any]) -> float | None:
    """The share of ``items`` that repeat an earlier one (the hit rate an unbounded cache
    would reach over one pass); ``None`` when the items cannot be hashed."""
    if not items:
        return None
    seen: set[bytes] = set()
    repeats = 0
    try:
        for item in items:
            key = content_hash(item)
            if key in seen:
                repeats += 1
            else:
                seen.add(key)
    except Unhashable:
        return None
    return repeats / len(items)
