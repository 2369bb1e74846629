"""A content-keyed cache of a component's calls, for plain code that maps over the parts of
its input inside the stage (``for section in split(doc): model(**tokenizer(section))``).

The stage's inputs never repeat (documents are revisions), but its calls to the model do:
the same letterhead, the same unchanged paragraph. While the stage runs, a
:class:`CallCache` stands in for the model: a call whose arguments hash to one seen before
returns the earlier result (a copy, so code that edits a result in place cannot corrupt
the cache); any other call goes to the model; attribute reads go to the model. The slot
itself keeps the model, so other plugins still recognize and replace it (a replaced model
never gets an old answer: keys carry the component's identity). The stage's function
carries the validator's state protocol, so the hit rate is measured from cold like any
cache's, and :func:`observe_calls` measures, on observed inputs, how often a stage's calls
to a component repeat.
"""

from __future__ import annotations

import copy
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from pipetune.core.kernel.errors import PipelineError
from pipetune.core.kernel.model import Stage, accepted_slots
from pipetune.plugins.generic.cache import (
    ResultCache,
    SharedCacheState,
    Unhashable,
    content_hash,
    name_after,
)

META_KEY = "generic.call_cache"


def call_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """A content hash of a call's arguments and the grad mode it runs under."""
    torch = sys.modules.get("torch")
    grad = bool(torch.is_grad_enabled()) if torch is not None else None
    return content_hash((args, sorted(kwargs.items()), grad))


def innermost(component: Any) -> Any:
    """The component behind pipetune's proxies (``__pipetune_wrapped__``)."""
    for _ in range(8):
        inner = getattr(type(component), "__pipetune_wrapped__", None)
        if inner is None:
            return component
        component = component.__pipetune_wrapped__
    return component


def copied(value: Any) -> Any:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return value.clone()
    try:
        return copy.deepcopy(value)
    except Exception:  # not copyable: the same object (a read-only result)
        return value


class CallCache:
    """A component whose calls are answered from a bounded LRU keyed by their content
    (salted with the component's identity: a replaced model never gets an old answer)."""

    def __init__(self, target: Any, store: ResultCache, salt: int | None = None):
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_store", store)
        object.__setattr__(self, "_salt", id(innermost(target)) if salt is None else salt)

    @property
    def __pipetune_wrapped__(self) -> Any:
        return self._target

    def rewrap(self, inner: Any) -> CallCache:
        """The same cache in front of another callable (a batching proxy of the target)."""
        return CallCache(inner, self._store, self._salt)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            key = call_key(args, kwargs) + str(self._salt).encode()
        except Unhashable:
            self._store.unhashable += 1
            return self._target(*args, **kwargs)
        found, value = self._store.get(key)
        if found:
            return copied(value)
        value = self._target(*args, **kwargs)
        self._store.put(key, copied(value))
        return value

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("pipetune's CallCache proxy is read-only")

    def __repr__(self) -> str:
        return f"CallCache({type(self._target).__name__}, capacity={self._store.capacity})"


class _CallCached:
    """The stage's function (or batch function) with one slot's calls cached: the slot
    keeps the component itself, so other plugins still recognize and replace it."""

    def __init__(
        self, inner: Callable[..., Any], slot: str, store: ResultCache, accepts: Sequence[str]
    ):
        self.inner = inner
        self.slot = slot
        self.cache = store
        self.accepts = tuple(accepts)
        name_after(self, inner, "call_cached")

    def __call__(self, value: Any, /, **slots: Any) -> Any:
        kwargs = {name: slots[name] for name in self.accepts}
        if self.slot in kwargs:
            kwargs[self.slot] = CallCache(kwargs[self.slot], self.cache)
        return self.inner(value, **kwargs)


class CallCachedFn(SharedCacheState, _CallCached):
    """Carries the validator's state protocol for the cache it shares with the stage's
    batch function (only here, so the cache is counted once)."""


def call_cached_stage(stage: Stage, slot: str, capacity: int = 4096) -> Stage:
    """A copy of ``stage`` whose calls to ``slot`` are answered from a cache when repeated."""
    if not stage.injects(slot):
        raise PipelineError(
            f"stage {stage.name!r}: its function does not take {slot!r} as a keyword argument"
        )
    store = ResultCache(capacity)
    fn = CallCachedFn(stage.fn, slot, store, accepted_slots(stage.fn, stage.slots))
    batch_fn = None
    if stage.batch_fn is not None:
        accepts = accepted_slots(stage.batch_fn, stage.slots)
        batch_fn = _CallCached(stage.batch_fn, slot, store, accepts)
    note = {"slot": slot, "capacity": capacity}
    return stage.evolve(fn=fn, batch_fn=batch_fn).noted(**{META_KEY: note})


class _Recorder:
    """Records the content hash of every call, and counts calls per input."""

    def __init__(self, target: Any):
        self.target = target
        self.keys: list[bytes] = []
        self.unhashable = 0
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            key = call_key(args, kwargs)
            with self._lock:
                self.keys.append(key)
        except Unhashable:
            self.unhashable += 1
        return self.target(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


def observe_calls(stage: Stage, slot: str, inputs: Sequence[Any]) -> dict[str, Any] | None:
    """Run ``stage`` on ``inputs`` with ``slot`` recorded: calls per input, and the share
    of calls that repeat an earlier one (in order, over these inputs)."""
    if not inputs or not stage.injects(slot):
        return None
    recorder = _Recorder(stage.slots[slot])
    recorded = stage.with_slots(**{slot: recorder})
    for value in inputs:
        recorded(value)
    calls = len(recorder.keys)
    if calls == 0:
        return None
    distinct = len(set(recorder.keys))
    return {
        "slot": slot,
        "inputs": len(inputs),
        "calls": calls,
        "calls_per_input": round(calls / len(inputs), 3),
        "distinct_calls": distinct,
        "hit_rate": round(1 - distinct / calls, 4),
        "unhashable": recorder.unhashable,
        "over": "sample",
    }
