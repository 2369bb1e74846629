"""The routed span of adaptive computation (:mod:`.adaptive`): how a smaller model is
declared (``small_<slot>`` slots, an optional ``confidence`` slot), which stages it spans,
the default confidence of a score vector, and what the profile says the span costs. Routing,
tuning and the proposal all start from the span this module finds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pipetune.core.kernel.errors import ConfigError, PipelineError

if TYPE_CHECKING:
    from pipetune.core.kernel.model import Pipeline, Stage
    from pipetune.core.kernel.results import Profile

SMALL = "small_"
CONFIDENCE = "confidence"
META_KEY = "generic.adaptive"


@dataclass(frozen=True)
class Span:
    """The routed stages and their small-path substitutions."""

    names: tuple[str, ...]
    small: Mapping[str, Mapping[str, str]]  # stage -> {slot: small slot}
    explicit: bool  # a `confidence` slot on the last stage

    @property
    def first(self) -> str:
        return self.names[0]

    @property
    def last(self) -> str:
        return self.names[-1]


def declared(stage: Stage) -> dict[str, str]:
    """``{slot: small slot}`` for the ``small_*`` slots of ``stage``."""
    return {name[len(SMALL) :]: name for name in stage.slots if name.startswith(SMALL)}


def find_span(pipeline: Pipeline) -> Span | None:
    """The routed span, ``None`` when no stage declares a smaller model (or it is routed
    already). Raises :class:`ConfigError` for a declaration that cannot work."""
    stages = pipeline.stages
    if any(META_KEY in stage.meta for stage in stages):
        return None
    marked = [i for i, stage in enumerate(stages) if declared(stage)]
    if not marked:
        return None
    start = marked[0]
    end = max(
        i
        for i, stage in enumerate(stages)
        if i >= start and (declared(stage) or CONFIDENCE in stage.slots)
    )
    span = stages[start : end + 1]
    for stage in span:
        for slot, small in declared(stage).items():
            if slot not in stage.slots:
                raise ConfigError(
                    f"stage {stage.name!r} declares {small!r} but has no {slot!r} slot for it "
                    f"to stand in for (slots: {', '.join(stage.slots)})"
                )
    confidence = span[-1].slots.get(CONFIDENCE)
    if confidence is not None and not callable(confidence):
        raise ConfigError(
            f"stage {span[-1].name!r}: the 'confidence' slot must be a callable "
            "confidence(value, **slots) -> float"
        )
    return Span(
        names=tuple(s.name for s in span),
        small={s.name: declared(s) for s in span if declared(s)},
        explicit=confidence is not None,
    )


def small_version(stage: Stage, mapping: Mapping[str, str]) -> Stage:
    """``stage`` with its ``small_*`` slots substituted."""
    if not mapping:
        return stage
    return stage.with_slots(**{slot: stage.slots[small] for slot, small in mapping.items()})


def default_confidence(value: Any) -> float:
    """Top softmax probability of a score vector (probabilities are used as they are)."""
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().float().cpu().numpy()
    try:
        scores = np.asarray(value, dtype=np.float64).squeeze()
    except (TypeError, ValueError):
        scores = None
    if scores is None or scores.ndim != 1 or scores.size < 2 or not np.all(np.isfinite(scores)):
        raise PipelineError(
            f"adaptive computation: the small path's output is {type(value).__name__}, not a "
            "vector of scores; declare a 'confidence' slot (confidence(value, **slots) -> "
            "float) on the last routed stage"
        )
    if np.all(scores >= 0) and abs(scores.sum() - 1.0) < 1e-3:
        return float(scores.max())
    shifted = np.exp(scores - scores.max())
    return float(shifted.max() / shifted.sum())


# -- what the profile says of the span --------------------------------------------------------


def span_ms(profile: Profile, span: Span) -> float | None:
    total = 0.0
    for name in span.names:
        try:
            total += profile.stage(name).mean_ms
        except KeyError:
            return None
    return total


def first_stage_speedup(profile: Profile, span: Span, span_speedup: float) -> float | None:
    """The speedup of the span's first stage alone that saves what ``span_speedup`` saves
    on the whole span (the planner scales one stage)."""
    total = span_ms(profile, span)
    try:
        first = profile.stage(span.first).mean_ms
    except KeyError:
        return None
    if not total or not first:
        return None
    saving = total - total / span_speedup
    remaining = max(first - saving, first * 1e-3)
    return first / remaining
