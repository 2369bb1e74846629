"""Adaptive computation at run time (:mod:`.adaptive`): the router that runs the small
path of a span, decides by confidence and counts its decisions, the callables that replace
the span's stages (the routing first stage, the pass-through later ones), and :func:`route`,
which builds the routed pipeline at a threshold.
"""

from __future__ import annotations

import inspect
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipetune.core.kernel.errors import ConfigError, PipelineError
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.kernel.pipeline import batch_outputs
from pipetune.plugins.generic.adaptive_span import (
    CONFIDENCE,
    META_KEY,
    Span,
    default_confidence,
    find_span,
    small_version,
)


@dataclass(frozen=True)
class Routed:
    """A result the small path already decided; later span stages pass it through."""

    value: Any


class _NotRun:
    def __repr__(self) -> str:
        return "<not routed>"


NOT_ROUTED = _NotRun()


def _accepts(fn: Callable[..., Any] | None) -> tuple[str, ...] | None:
    """Keyword names ``fn`` takes; ``None`` when it takes ``**kwargs`` (everything)."""
    if fn is None:
        return ()
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return ()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return tuple(
        p.name
        for p in params
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    )


def _pick(slots: Mapping[str, Any], names: tuple[str, ...] | None) -> dict[str, Any]:
    if names is None:
        return dict(slots)
    return {name: slots[name] for name in names if name in slots}


class Router:
    """The small path of a span, the threshold, and the routing counts."""

    def __init__(self, span: Span, stages: Sequence[Stage], threshold: float):
        self.span = span
        self.threshold = float(threshold)
        first = stages[0]
        self.first_small = dict(span.small.get(first.name, {}))
        self.first_fn = first.fn
        self.first_batch_fn = first.batch_fn
        self.first_accepts = _accepts(first.fn)
        self.first_batch_accepts = _accepts(first.batch_fn)
        self.rest = [small_version(s, span.small.get(s.name, {})) for s in stages[1:]]
        self.confidence: Stage | None = None
        if span.explicit:
            last = self.rest[-1] if self.rest else small_version(first, self.first_small)
            self.confidence = Stage(
                f"{last.name}.confidence", last.slots[CONFIDENCE], slots=dict(last.slots)
            )
        self._lock = threading.Lock()
        self.small_count = 0
        self.large_count = 0

    @property
    def single(self) -> bool:
        return not self.rest

    # -- the first stage, small or large ------------------------------------------------
    def _slots(self, slots: Mapping[str, Any], small: bool) -> dict[str, Any]:
        if not small:
            return dict(slots)
        return {**slots, **{slot: slots[name] for slot, name in self.first_small.items()}}

    def first(self, item: Any, slots: Mapping[str, Any], small: bool) -> Any:
        return self.first_fn(item, **_pick(self._slots(slots, small), self.first_accepts))

    def first_batch(self, items: list[Any], slots: Mapping[str, Any], small: bool) -> list[Any]:
        if not items:
            return []
        if self.first_batch_fn is None:
            return [self.first(item, slots, small) for item in items]
        use = _pick(self._slots(slots, small), self.first_batch_accepts)
        return batch_outputs(self.span.first, self.first_batch_fn(list(items), **use), items)

    # -- deciding -----------------------------------------------------------------------
    def decide(
        self, item: Any, slots: Mapping[str, Any], threshold: float | None = None
    ) -> tuple[float, Any]:
        """``(confidence, small result or NOT_ROUTED)`` for one input of the span."""
        threshold = self.threshold if threshold is None else threshold
        if self.confidence is not None:
            value = item
            if not self.single:
                value = self.first(item, slots, True)
                for stage in self.rest[:-1]:
                    value = stage(value)
            confidence = float(self.confidence(value))
            if confidence < threshold:
                return confidence, NOT_ROUTED
            out = self.rest[-1](value) if not self.single else self.first(value, slots, True)
            return confidence, out
        value = self.first(item, slots, True)
        for stage in self.rest:
            value = stage(value)
        confidence = default_confidence(value)
        return confidence, (value if confidence >= threshold else NOT_ROUTED)

    def decide_batch(
        self, items: list[Any], slots: Mapping[str, Any], threshold: float | None = None
    ) -> tuple[list[float], list[Any]]:
        threshold = self.threshold if threshold is None else threshold
        if self.confidence is not None:
            values = items
            if not self.single:
                values = self.first_batch(items, slots, True)
                for stage in self.rest[:-1]:
                    values = stage.call_batch(values)
            confidences = [float(self.confidence(v)) for v in values]
            keep = [i for i, c in enumerate(confidences) if c >= threshold]
            chosen = [values[i] for i in keep]
            if self.single:
                decided = self.first_batch(chosen, slots, True)
            else:
                decided = self.rest[-1].call_batch(chosen) if chosen else []
            out: list[Any] = [NOT_ROUTED] * len(items)
            for i, value in zip(keep, decided, strict=True):
                out[i] = value
            return confidences, out
        values = self.first_batch(items, slots, True)
        for stage in self.rest:
            values = stage.call_batch(values)
        confidences = [default_confidence(v) for v in values]
        return confidences, [
            v if c >= threshold else NOT_ROUTED for v, c in zip(values, confidences, strict=True)
        ]

    def count(self, small: int, large: int) -> None:
        with self._lock:
            self.small_count += small
            self.large_count += large

    def stats(self) -> dict[str, Any]:
        total = self.small_count + self.large_count
        return {
            "span": list(self.span.names),
            "threshold": self.threshold,
            "small": self.small_count,
            "large": self.large_count,
            "small_share": self.small_count / total if total else 0.0,
        }


class RoutedEntry:
    """``fn``/``batch_fn`` of the span's first stage: the small path first, the large one
    for inputs it is not sure about. Implements the state protocol (counts reset before
    each measured pass) and ``pipetune_stats``."""

    def __init__(self, router: Router):
        self.router = router

    def __call__(self, item: Any, /, **slots: Any) -> Any:
        router = self.router
        _, out = router.decide(item, slots)
        if out is not NOT_ROUTED:
            router.count(1, 0)
            return out if router.single else Routed(out)
        router.count(0, 1)
        return router.first(item, slots, False)

    def batch(self, items: Sequence[Any], /, **slots: Any) -> list[Any]:
        router = self.router
        items = list(items)
        _, decided = router.decide_batch(items, slots)
        rest = [i for i, value in enumerate(decided) if value is NOT_ROUTED]
        large = router.first_batch([items[i] for i in rest], slots, False)
        out: list[Any] = [v if router.single else Routed(v) for v in decided]
        for i, value in zip(rest, large, strict=True):
            out[i] = value
        router.count(len(items) - len(rest), len(rest))
        return out

    def pipetune_reset(self) -> None:
        with self.router._lock:
            self.router.small_count = 0
            self.router.large_count = 0

    def pipetune_stats(self) -> Mapping[str, Any]:
        return {"adaptive": self.router.stats()}


class PassThrough:
    """``fn``/``batch_fn`` of a later span stage: decided results pass (the last stage
    unwraps them), the others run the stage as it was."""

    def __init__(self, stage: Stage, last: bool):
        self.fn = stage.fn
        self.batch_fn: Any = stage.batch_fn  # batch() is called only when there is one
        self.accepts = _accepts(stage.fn)
        self.batch_accepts = _accepts(stage.batch_fn)
        self.last = last
        self.name = stage.name

    def __call__(self, item: Any, /, **slots: Any) -> Any:
        if isinstance(item, Routed):
            return item.value if self.last else item
        return self.fn(item, **_pick(slots, self.accepts))

    def batch(self, items: Sequence[Any], /, **slots: Any) -> list[Any]:
        items = list(items)
        todo = [i for i, item in enumerate(items) if not isinstance(item, Routed)]
        done = list(self.batch_fn([items[i] for i in todo], **_pick(slots, self.batch_accepts)))
        if len(done) != len(todo):
            raise PipelineError(
                f"stage {self.name!r}: batch_fn returned {len(done)} outputs for {len(todo)}"
            )
        out = [item.value if self.last and isinstance(item, Routed) else item for item in items]
        for i, value in zip(todo, done, strict=True):
            out[i] = value
        return out


def route(pipeline: Pipeline, threshold: float, span: Span | None = None) -> Pipeline:
    """A new pipeline whose span routes inputs at ``threshold`` (the original is untouched)."""
    span = span or find_span(pipeline)
    if span is None:
        raise ConfigError(
            f"pipeline {pipeline.name!r} declares no smaller model: add a small_<slot> slot "
            "(e.g. small_model=) next to the slot it stands in for"
        )
    if not math.isfinite(threshold):
        raise ConfigError(f"adaptive threshold must be a finite number, not {threshold!r}")
    stages = [pipeline.stage(name) for name in span.names]
    router = Router(span, stages, threshold)
    entry = RoutedEntry(router)
    note = {"span": list(span.names), "threshold": float(threshold), "role": "router"}
    replaced = {
        stages[0].name: stages[0].evolve(
            fn=entry,
            batch_fn=entry.batch if stages[0].batch_fn is not None else None,
            meta={**stages[0].meta, META_KEY: note},
        )
    }
    for position, stage in enumerate(stages[1:], start=1):
        passing = PassThrough(stage, last=position == len(stages) - 1)
        replaced[stage.name] = stage.evolve(
            fn=passing,
            batch_fn=passing.batch if stage.batch_fn is not None else None,
            meta={**stage.meta, META_KEY: {**note, "role": "pass-through"}},
        )
    result = pipeline
    for name, stage in replaced.items():
        result = result.replace(name, stage)
    return result
