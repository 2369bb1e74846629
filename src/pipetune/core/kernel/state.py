"""Warm state in a pipeline: how the validator resets it and reads cache statistics.

A change that adds state (a result cache, a user-embedding cache, a prefix cache, the
last frame's result kept for skipped frames) would otherwise be measured warm: the second
timed pass would hit everything the first pass left behind, and the speedup would be a
fiction. So every component that keeps state across inputs implements a small protocol,
and the validator calls it before **every** measured pass:

* ``pipetune_reset()`` — drop all warm state (empty the cache, forget the last frame).
* ``pipetune_cache_stats()`` — ``{"hits": int, "misses": int}`` since the last reset
  (optional; caches implement it so the validator can report the hit rate and refuse a
  stage speedup larger than the hit rate allows).
* ``pipetune_stats()`` — any other JSON-serializable figures since the last reset
  (optional; an adaptive router reports the share of inputs it sent to each model). The
  validator records them in the trial's notes under ``stats``.

The methods carry a ``pipetune_`` prefix on purpose: a plain ``reset()`` on a user's
object may mean something else entirely (re-initializing a torch module's weights).

Components are found in a stage's slots, its ``fn`` and its ``batch_fn`` (a callable
object holding a cache is found too), and one level inside tuples, lists and dicts held
in slots.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pipetune.core.kernel.model import Pipeline


@runtime_checkable
class Resettable(Protocol):
    """Warm state that the validator clears before each measured pass."""

    def pipetune_reset(self) -> None: ...


@runtime_checkable
class CacheStats(Protocol):
    """A cache that counts its hits and misses since the last reset."""

    def pipetune_cache_stats(self) -> Mapping[str, int]: ...


def components(pipeline: Pipeline) -> Iterator[tuple[str, str, Any]]:
    """``(stage, where, object)`` for every object a stage holds: slots, fn, batch_fn."""
    for stage in pipeline.stages:
        seen: set[int] = set()
        candidates: list[tuple[str, Any]] = [("fn", stage.fn), ("batch_fn", stage.batch_fn)]
        for name, value in stage.slots.items():
            candidates.append((f"slot {name}", value))
            if isinstance(value, list | tuple):
                candidates.extend((f"slot {name}[{i}]", v) for i, v in enumerate(value))
            elif isinstance(value, Mapping):
                candidates.extend((f"slot {name}[{k!r}]", v) for k, v in value.items())
        for where, value in candidates:
            if value is None or id(value) in seen:
                continue
            seen.add(id(value))
            yield stage.name, where, value
            bound_self = getattr(value, "__self__", None)  # a bound method of a stateful object
            if bound_self is not None and id(bound_self) not in seen:
                seen.add(id(bound_self))
                yield stage.name, f"{where}.__self__", bound_self


def reset_state(pipeline: Pipeline) -> list[str]:
    """Call ``pipetune_reset()`` on every resettable component; returns where it did."""
    done = []
    for stage, where, value in components(pipeline):
        if _has(value, "pipetune_reset"):
            value.pipetune_reset()
            done.append(f"{stage}: {where}")
    return done


def cache_stats(pipeline: Pipeline) -> dict[str, dict[str, float]]:
    """Hits, misses and hit rate per stage, summed over the stage's caches."""
    stats: dict[str, dict[str, float]] = {}
    for stage, _, value in components(pipeline):
        if not _has(value, "pipetune_cache_stats"):
            continue
        figures = value.pipetune_cache_stats()
        entry = stats.setdefault(stage, {"hits": 0, "misses": 0})
        entry["hits"] += int(figures.get("hits", 0))
        entry["misses"] += int(figures.get("misses", 0))
    for entry in stats.values():
        lookups = entry["hits"] + entry["misses"]
        entry["hit_rate"] = entry["hits"] / lookups if lookups else 0.0
    return stats


def component_stats(pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    """``pipetune_stats()`` of every component that has it, per stage."""
    stats: dict[str, dict[str, Any]] = {}
    for stage, _, value in components(pipeline):
        if _has(value, "pipetune_stats"):
            stats.setdefault(stage, {}).update(value.pipetune_stats())
    return stats


def has_state(pipeline: Pipeline) -> bool:
    return any(_has(value, "pipetune_reset") for _, _, value in components(pipeline))


def _has(value: Any, method: str) -> bool:
    # getattr on the type, not the instance: a Mock or a proxy answers any attribute.
    return callable(getattr(type(value), method, None))
