"""Adaptive computation: route easy inputs to a smaller model the user supplies, the rest to
the large one, with the confidence threshold tuned for fidelity.

**Declaring the smaller model.** Put it in a slot named ``small_<slot>`` next to the slot it
stands in for, on the stage that holds the large model::

    embed = embed.with_slots(small_model=first_two_layers)        # stands in for `model`
    classify = classify.with_slots(
        small_head=head_for_small_encoder,                         # stands in for `head`
        confidence=top_probability,                                # how sure the small path is
    )

The *routed span* runs from the first stage with a ``small_*`` slot to the last stage with a
``small_*`` or ``confidence`` slot. On the small path every stage of the span runs with its
``small_<slot>`` values substituted (stages with none run as they are). Confidence is

* with a ``confidence`` slot (a callable) on the span's last stage:
  ``confidence(value, **slots) -> float``, called on what that stage is about to receive
  (the small path's value), with that stage's small-path slots it names (``head=`` gets the
  small head) — for the nlp demo, the small head's top softmax probability over the
  section embeddings;
* otherwise the top softmax probability of the span's small output, which must then be a
  vector of scores (logits or probabilities: an ndarray, a tensor or a list of floats).

Easy inputs (confidence at or above the threshold) take the small path's result; the others
run the span as it was (the large model). Stages keep their names: the span's first stage
runs the small path (its time includes it) and hands an already-decided result to the later
span stages, which pass it through (:class:`Routed`).

**Tuning** (``tune``) runs the small path on the calibration (tuning) split and compares
the routed outputs with the large path's for every candidate threshold (each distinct
confidence, most confident first). For proportion metrics (label agreement, exact match,
recall...) it keeps the largest routed share whose cost stays within the remaining fidelity
budget *with 90 % confidence*: the cost bound is the routed share times a one-sided Wilson
upper bound on the share of routed inputs whose output changes, so a threshold is not picked
just before the first disagreement by luck (simulated on a hard toy, a point estimate with
half the budget held back failed the held-out gate 15-35 % of the time; the bound, 2-9 %).
For other metrics it keeps half the budget as the margin. Every smaller share must pass
too. With few calibration inputs the bound routes little: a 1 % budget needs a tuning split
of a few hundred inputs (the refusal says how many). The validator then checks fidelity on
the held-out split and the speed side by side. The change is refused (``Rejected``, with
the figures) when no threshold keeps fidelity, or when the small path costs too much of the
large one for the routed share to pay.

**Reporting.** The routing stage counts its decisions (``pipetune_stats``), so the held-out
pass of the validator records the share routed to each model in the trial's notes; the
tune notes carry the calibration figures.
"""

from __future__ import annotations

import inspect
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pipetune.core.kernel.errors import ConfigError, PipelineError, Rejected
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.kernel.results import Proposal, Tuned

if TYPE_CHECKING:
    from pipetune.core.kernel.context import Observations, TuneContext
    from pipetune.core.kernel.model import Requirements, Workload
    from pipetune.core.kernel.results import Change, Profile

PROPOSAL = "generic.adaptive_computation"
PLUGIN = "generic"
SMALL = "small_"
CONFIDENCE = "confidence"
META_KEY = "generic.adaptive"
#: For metrics that are not proportions: the share of the remaining fidelity budget kept as
#: a margin for the held-out split (the calibration may spend the rest).
SAFETY = 0.5
#: Proportion metrics: the one-sided confidence of the upper bound on the change rate of
#: routed inputs (Wilson score bound).
UPPER_CONFIDENCE = 0.90
UPPER_Z = 1.2816
#: Candidate thresholds tried at most (quantiles of the calibration confidences).
MAX_THRESHOLDS = 200
#: Observed inputs the profile facts time the small path on.
OBSERVE_ITEMS = 8
#: Without measured facts, the proposal's stage estimate.
DEFAULT_ESTIMATE = 1.5


# -- the declaration --------------------------------------------------------------------------


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


# -- routing at run time -------------------------------------------------------------------------


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
        out = list(self.first_batch_fn(list(items), **use))
        if len(out) != len(items):
            raise PipelineError(
                f"stage {self.span.first!r}: batch_fn returned {len(out)} outputs for "
                f"{len(items)} inputs"
            )
        return out

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

    def __call__(self, item: Any, **slots: Any) -> Any:
        router = self.router
        _, out = router.decide(item, slots)
        if out is not NOT_ROUTED:
            router.count(1, 0)
            return out if router.single else Routed(out)
        router.count(0, 1)
        return router.first(item, slots, False)

    def batch(self, items: Sequence[Any], **slots: Any) -> list[Any]:
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

    def __call__(self, item: Any, **slots: Any) -> Any:
        if isinstance(item, Routed):
            return item.value if self.last else item
        return self.fn(item, **_pick(slots, self.accepts))

    def batch(self, items: Sequence[Any], **slots: Any) -> list[Any]:
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


# -- profile facts, proposal ----------------------------------------------------------------------


def observe(pipeline: Pipeline, profile: Profile, observed: Observations) -> dict[str, Any] | None:
    """Profile facts: the small path's time and confidences on a few observed inputs of the
    span, against the span's measured time."""
    try:
        span = find_span(pipeline)
    except ConfigError as exc:
        return {"error": str(exc)}
    if span is None:
        return None
    facts: dict[str, Any] = {"span": list(span.names)}
    large_ms = _span_ms(profile, span)
    if large_ms is not None:
        facts["large_ms"] = large_ms
    inputs = observed.inputs_of(span.first)[:OBSERVE_ITEMS]
    if not inputs:
        return facts
    stages = [pipeline.stage(name) for name in span.names]
    router = Router(span, stages, -math.inf)
    slots = dict(stages[0].slots)
    try:
        router.decide(inputs[0], slots)  # warm-up
        started = time.perf_counter()
        confidences = [router.decide(item, slots)[0] for item in inputs]
        small_ms = (time.perf_counter() - started) * 1000.0 / len(inputs)
    except Exception as exc:  # the user's small model failing must not break profiling
        facts["error"] = f"{type(exc).__name__}: {exc}"
        return facts
    facts.update(small_ms=small_ms, confidence=[round(c, 4) for c in confidences])
    return facts


def _span_ms(profile: Profile, span: Span) -> float | None:
    total = 0.0
    for name in span.names:
        try:
            total += profile.stage(name).mean_ms
        except KeyError:
            return None
    return total


def proposals(pipeline: Pipeline, profile: Profile, facts: Mapping[str, Any]) -> list[Proposal]:
    try:
        span = find_span(pipeline)
    except ConfigError as exc:
        first = next((s.name for s in pipeline.stages if declared(s)), pipeline.stage_names[0])
        return [
            Proposal(
                id=PROPOSAL,
                plugin=PLUGIN,
                stage=first,
                title="Adaptive computation (route easy inputs to the smaller model)",
                applicable=False,
                reason=str(exc),
                effort="minutes",
                accuracy_risk="medium",
            )
        ]
    if span is None:
        return []
    entry: Any = facts.get("adaptive") if isinstance(facts.get("adaptive"), Mapping) else {}
    small_ms, large_ms = entry.get("small_ms"), entry.get("large_ms")
    confidences = entry.get("confidence") or []
    est = DEFAULT_ESTIMATE
    evidence: dict[str, Any] = {"span": list(span.names)}
    if small_ms and large_ms and large_ms > 0:
        # A first guess at the share: observed inputs the small path is at least 90 % sure of.
        share = float(np.mean([c >= 0.9 for c in confidences])) if confidences else 0.5
        span_speedup = large_ms / max(1e-9, small_ms + (1 - share) * large_ms)
        est = _first_stage_speedup(profile, span, span_speedup) or span_speedup
        evidence.update(small_ms=small_ms, large_ms=large_ms, confident_share=share)
        cost = (
            f"on {len(confidences)} observed inputs the small path costs {small_ms:.2f} ms "
            f"against {large_ms:.2f} ms for the span ({small_ms / large_ms:.0%}); "
            f"{share:.0%} of them it is >= 90 % sure of"
        )
    else:
        cost = "the small path's cost is measured when the threshold is tuned"
    span_text = " -> ".join(span.names)
    return [
        Proposal(
            id=PROPOSAL,
            plugin=PLUGIN,
            stage=span.first,
            title="Adaptive computation: route easy inputs to the smaller model",
            rationale=(
                f"a smaller model is declared for {span_text}; inputs it is confident about "
                f"take its result, the rest run the large model. {cost}. The confidence "
                "threshold is tuned on the calibration split for fidelity"
            ),
            est_stage_speedup=max(1.0, float(est)),
            effort="minutes",
            accuracy_risk="medium",
            params={"span": list(span.names)},
            evidence=evidence,
        )
    ]


def _first_stage_speedup(profile: Profile, span: Span, span_speedup: float) -> float | None:
    """The speedup of the span's first stage alone that saves what ``span_speedup`` saves
    on the whole span (the planner scales one stage)."""
    total = _span_ms(profile, span)
    try:
        first = profile.stage(span.first).mean_ms
    except KeyError:
        return None
    if not total or not first:
        return None
    saving = total - total / span_speedup
    remaining = max(first - saving, first * 1e-3)
    return first / remaining


# -- tune and materialize ---------------------------------------------------------------------


def tune(
    proposal: Proposal,
    pipeline: Pipeline,
    workload: Workload,
    requirements: Requirements,
    context: TuneContext,
    *,
    safety: float = SAFETY,
) -> Tuned:
    """Choose the threshold on the calibration split (see the module docstring)."""
    span = find_span(pipeline)
    if span is None:
        raise Rejected("no smaller model is declared (or the span is already routed)")
    stages = [pipeline.stage(name) for name in span.names]
    items = list(workload.items)
    if len(items) < 2:
        raise Rejected("the calibration split needs at least 2 inputs")
    context.log(f"adaptive: calibrating on {len(items)} inputs")
    inputs = context.stage_inputs(pipeline, span.first, items)
    confidences, small_outputs, small_ms = _small_path(pipeline, span, stages, inputs)
    large_outputs, large_ms = _large(pipeline, span, context, items, inputs)

    reference = context.fidelity(large_outputs)
    budget = max(0.0, reference.value - context.fidelity_floor)
    proportion = _is_proportion(reference.metric)
    changed = np.array([not _same(a, b) for a, b in zip(small_outputs, large_outputs, strict=True)])
    order = np.argsort(-confidences, kind="stable")
    changed_ranked = np.cumsum(changed[order])
    n = len(items)
    best, curve = _scan_thresholds(
        context,
        requirements,
        confidences,
        order,
        changed_ranked,
        (small_outputs, large_outputs),
        reference,
        safety,
    )
    span_text = " -> ".join(span.names)
    if best is None:
        raise _nothing_routable(curve, proportion, n, budget, span_text, reference.metric)
    figures = {
        "span": list(span.names),
        "calibration_items": n,
        "small_ms": small_ms,
        "large_ms": large_ms,
        "fidelity_budget": budget,
        "fidelity_of_large_path": reference.value,
        "metric": reference.metric,
        "rule": _rule(proportion, safety),
        "curve": curve[:50],
    }
    k, threshold, fidelity = best
    share = k / len(items)
    new_ms = small_ms + (1 - share) * large_ms
    span_speedup = large_ms / new_ms if new_ms > 0 else 1.0
    e2e = _e2e(context.profile, span, span_speedup)
    gate = 1.0 + requirements.min_gain
    figures.update(
        threshold=threshold,
        small_share=share,
        large_share=1 - share,
        calibration_fidelity=fidelity.value,
        changed_routed=int(changed_ranked[k - 1]),
        span_speedup=span_speedup,
        est_e2e_speedup=e2e,
    )
    context.log(
        f"adaptive: threshold {threshold:.4f} routes {share:.1%} to the small model, "
        f"{reference.metric} {fidelity.value:.4f} on calibration; span {span_speedup:.2f}x"
    )
    if (e2e if e2e is not None else span_speedup) < gate:
        raise _does_not_pay(figures, reference.metric, gate)
    est = _first_stage_speedup(context.profile, span, span_speedup) if context.profile else None
    return Tuned(
        params={"threshold": threshold, "span": list(span.names)},
        notes=figures,
        est_stage_speedup=est or span_speedup,
    )


def _small_path(
    pipeline: Pipeline, span: Span, stages: Sequence[Stage], inputs: Sequence[Any]
) -> tuple[np.ndarray, list[Any], float]:
    """The small model's confidence and the pipeline's output for each input when it takes
    the small path, and the small path's time per input (ms)."""
    router = Router(span, stages, -math.inf)
    slots = dict(stages[0].slots)
    router.decide(inputs[0], slots)  # warm-up (lazy initialisation of the small model)
    started = time.perf_counter()
    decided = [router.decide(value, slots) for value in inputs]
    small_ms = (time.perf_counter() - started) * 1000.0 / len(inputs)
    confidences = np.array([c for c, _ in decided])
    return confidences, _after_span(pipeline, span, [out for _, out in decided]), small_ms


def _scan_thresholds(
    context: TuneContext,
    requirements: Requirements,
    confidences: np.ndarray,
    order: np.ndarray,
    changed_ranked: np.ndarray,
    outputs: tuple[Sequence[Any], Sequence[Any]],
    reference: Any,
    safety: float,
) -> tuple[tuple[int, float, Any] | None, list[dict[str, Any]]]:
    """Route the k most confident inputs to the small model, for growing k, while the
    fidelity it costs stays within the budget: the last k that did (with its threshold and
    fidelity), or ``None``, and the curve of every k tried."""
    small_outputs, large_outputs = outputs
    floor = context.fidelity_floor
    budget = max(0.0, reference.value - floor)
    proportion = _is_proportion(reference.metric)
    n = len(confidences)
    best = None
    curve = []
    for k in _threshold_candidates(confidences[order]):  # the k most confident go small
        routed = list(large_outputs)
        for i in order[:k]:
            routed[i] = small_outputs[i]
        fidelity = context.fidelity(routed)
        changes = int(changed_ranked[k - 1])
        # The fidelity the routing may cost: a one-sided upper bound on the share of
        # routed inputs whose output changes, times the routed share (proportion metrics);
        # otherwise the calibration figure, keeping half the budget as a margin.
        if proportion:
            cost = k / n * wilson_upper(changes, k, UPPER_Z)
        else:
            cost = (reference.value - fidelity.value) / (1.0 - safety)
        drop = fidelity.details.get("accuracy_drop") if fidelity.details else None
        ok = (
            cost <= budget + 1e-12
            and fidelity.value >= floor - 1e-12
            and not (
                isinstance(drop, int | float) and drop > requirements.max_accuracy_drop + 1e-12
            )
        )
        threshold = float(confidences[order[k - 1]])
        curve.append(
            {
                "share": k / n,
                "threshold": threshold,
                "fidelity": fidelity.value,
                "changed": changes,
                "bound": cost,
            }
        )
        if not ok:
            break
        best = (k, threshold, fidelity)
    return best, curve


def _rule(proportion: bool, safety: float) -> str:
    """How the threshold is chosen, in words, for the report."""
    if proportion:
        return (
            f"largest routed share whose {UPPER_CONFIDENCE:.0%} upper bound on the fidelity "
            "it costs stays within the budget"
        )
    return f"largest routed share costing at most {1 - safety:.0%} of the budget"


def _does_not_pay(figures: Mapping[str, Any], metric: str, gate: float) -> Rejected:
    """Why routing at the chosen threshold is not fast enough to keep (from its figures)."""
    small_ms, large_ms = figures["small_ms"], figures["large_ms"]
    e2e = figures["est_e2e_speedup"]
    return Rejected(
        f"does not pay: the small path costs {small_ms:.2f} ms per input against "
        f"{large_ms:.2f} ms for the large span ({small_ms / large_ms:.0%}); routing "
        f"{figures['small_share']:.1%} of inputs to it (threshold {figures['threshold']:.3f}, "
        f"{metric} {figures['calibration_fidelity']:.4f} on calibration) gives "
        f"{figures['span_speedup']:.2f}x on the span"
        + (f", {e2e:.2f}x end to end" if e2e is not None else "")
        + f", below the {gate:.2f}x minimum"
    )


def _nothing_routable(
    curve: Sequence[Mapping[str, Any]],
    proportion: bool,
    n: int,
    budget: float,
    span_text: str,
    metric: str,
) -> Rejected:
    """Why no share of the inputs can take the small path."""
    top = curve[0] if curve else {"fidelity": float("nan"), "share": 0.0, "changed": 0}
    if proportion and top["changed"] == 0:
        return Rejected(
            f"the calibration split is too small to route anything on {span_text}: with "
            f"{n} inputs a {UPPER_CONFIDENCE:.0%} bound on the change rate of routed "
            f"inputs is at least {wilson_upper(0, n, UPPER_Z):.1%}, above the "
            f"{budget:.1%} fidelity budget, even though the small model's most confident "
            f"answers matched; use a workload of at least "
            f"{math.ceil(UPPER_Z**2 / max(budget, 1e-9))} inputs for the tuning split"
        )
    return Rejected(
        f"the smaller model is not reliable enough to route anything on {span_text}: even "
        f"its most confident {top['share']:.1%} of inputs change {top['changed']} "
        f"output(s) ({metric} {top['fidelity']:.3f}) on the calibration split "
        f"({n} inputs), beyond the {budget:.1%} fidelity budget"
    )


def wilson_upper(changes: int, n: int, z: float = UPPER_Z) -> float:
    """One-sided Wilson upper bound on a proportion (``changes`` of ``n``)."""
    if n <= 0:
        return 1.0
    p = changes / n
    denominator = 1 + z * z / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return min(1.0, (centre + margin) / denominator)


def _is_proportion(metric: str) -> bool:
    return any(
        hint in metric.lower()
        for hint in ("agreement", "match", "recall", "accuracy", "precision", "iou")
    )


def _same(a: Any, b: Any) -> bool:
    """Exactly the same output (arrays and tensors element for element)."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    if hasattr(b, "detach"):
        b = b.detach().cpu().numpy()
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        try:
            return bool(np.array_equal(np.asarray(a), np.asarray(b)))
        except (TypeError, ValueError):
            return False
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _threshold_candidates(ranked_confidences: np.ndarray) -> list[int]:
    """Numbers of routed inputs to try: each distinct confidence (ties go together), at
    most :data:`MAX_THRESHOLDS` of them, increasing."""
    n = len(ranked_confidences)
    # k such that the k-th most confident differs from the (k+1)-th: a real threshold
    ranked = ranked_confidences
    cuts = [k for k in range(1, n + 1) if k == n or ranked[k] < ranked[k - 1]]
    if len(cuts) > MAX_THRESHOLDS:
        picks = np.unique(np.linspace(0, len(cuts) - 1, MAX_THRESHOLDS).round().astype(int))
        cuts = [cuts[i] for i in picks]
    return cuts


def _after_span(pipeline: Pipeline, span: Span, values: list[Any]) -> list[Any]:
    """Run the stages after the span (shared by both paths) on span outputs."""
    position = pipeline.index(span.last)
    for stage in pipeline.stages[position + 1 :]:
        values = [stage(v) for v in values]
    return values


def _large(
    pipeline: Pipeline,
    span: Span,
    context: TuneContext,
    items: list[Any],
    inputs: list[Any],
) -> tuple[list[Any], float]:
    """The large path's outputs on the calibration split and its time per input (ms).

    On the original pipeline the cached original outputs are exactly the large path's and
    the profile has the span's time; otherwise the pipeline runs (its outputs may already
    differ from the original's after earlier lossy changes)."""
    large_ms = _span_ms(context.profile, span) if context.profile is not None else None
    if pipeline is context.original and len(items) == len(context.workload.items):
        outputs = context.baseline_outputs()
        if large_ms is not None:
            return outputs, large_ms
    else:
        outputs = context.outputs(pipeline, items)
    if large_ms is None:
        sample = inputs[: min(len(inputs), 16)]
        stages = [pipeline.stage(name) for name in span.names]
        started = time.perf_counter()
        for value in sample:
            for stage in stages:
                value = stage(value)
        large_ms = (time.perf_counter() - started) * 1000.0 / len(sample)
    return outputs, large_ms


def _e2e(profile: Profile | None, span: Span, span_speedup: float) -> float | None:
    if profile is None:
        return None
    share = sum(profile.share(name) for name in span.names)
    if share <= 0:
        return None
    return 1.0 / ((1.0 - share) + share / span_speedup)


def materialize(change: Change, pipeline: Pipeline) -> Pipeline:
    params = dict(change.params)
    if "threshold" not in params:
        raise ConfigError(f"{PROPOSAL}: the change has no 'threshold' parameter")
    span = find_span(pipeline)
    if span is None:
        raise PipelineError(
            f"{PROPOSAL}: pipeline {pipeline.name!r} declares no smaller model (or is already "
            "routed)"
        )
    expected = params.get("span")
    if expected and list(expected) != list(span.names):
        raise PipelineError(
            f"{PROPOSAL}: the change routes {' -> '.join(expected)}, but the pipeline declares "
            f"{' -> '.join(span.names)}"
        )
    return route(pipeline, float(params["threshold"]), span)
