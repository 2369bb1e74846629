"""The validator: a change is kept only when it is proven faster and no less accurate.

For each proposal the validator

1. **tunes** it on the tuning split (the change type registered for the proposal's id,
   :mod:`pipetune.core.kernel.dispatch`; a plugin's
   :class:`~pipetune.core.kernel.errors.Rejected` becomes a rejected trial with its message,
   :class:`~pipetune.core.kernel.errors.Deferred` a deferred one with the artifact and command);
2. **materializes** it (the change type's ``materialize``) into a new candidate pipeline;
   an apply that raises is a rejected trial, never a crash;
3. runs the candidate once over the **held-out** split from cold state: the outputs give
   the fidelity, always against the *original* pipeline's outputs (and labels), so the
   figure is cumulative across accepted changes, judged by the output kind's owner (or a
   domain plugin's ``assess_change``) and gated at the user's budget, which a plugin may
   tighten but never loosen; a lossy change is never kept without that gate. The same
   pass measures each cache's hit
   rate at the workload's own repeat rate. A candidate that raises or hangs is rejected
   with the stage, the input and the error;
4. measures the speed in paired ABBA rounds against the current pipeline under the same
   runtime mode and thread settings, with every cache reset before every pass
   (:mod:`pipetune.core.measure.comparison`, :mod:`pipetune.core.kernel.state`), and accepts
   only when the lower bound of the speedup's interval on the requirement's metric beats
   ``1 + min_gain``, no requirement that held is broken, and no cached stage got faster
   than its hit rate allows (that would be warm state leaking between passes: an error,
   not a win).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipetune.core.kernel import control, dispatch, workers
from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import (
    ConfigError,
    Deferred,
    PipelineError,
    PipetuneError,
    PluginError,
    Rejected,
    StageError,
    StageTimeout,
)
from pipetune.core.kernel.model import Pipeline, Requirements, Workload
from pipetune.core.kernel.results import (
    ALL_STAGES,
    Change,
    Fidelity,
    Profile,
    Proposal,
    Trial,
    Tuned,
)
from pipetune.core.kernel.state import cache_stats, component_stats, reset_state
from pipetune.core.measure.comparison import CompareSettings, compare
from pipetune.core.measure.comparison_result import Comparison
from pipetune.core.measure.estimate import tuned_estimate
from pipetune.core.measure.fidelity import compare as compare_outputs
from pipetune.core.measure.stats import (
    min_samples_for_quantile,
    wilson_interval,
    wilson_items_to_prove,
)
from pipetune.core.measure.timed_pass import RuntimeSpec, run_pass
from pipetune.core.runtime.offline import run_offline

if TYPE_CHECKING:
    from pipetune.core.kernel.artifacts import ArtifactStore
    from pipetune.core.kernel.manager import PipetunePluginManager

#: Fidelity metrics that are proportions (a Wilson interval applies; the item-count rule
#: below is meaningful). Domain metrics such as recall@k are proportions too.
_PROPORTION_HINTS = ("agreement", "match", "recall", "accuracy", "precision", "iou")


@dataclass(frozen=True)
class ValidatorSettings:
    """Knobs of the validator.

    Args:
        compare: rounds, round size, confidence and timeouts of the speed comparison.
            With ``max_rounds`` above ``rounds`` (the default: 8, then up to 16) a trial the
            first ``rounds`` leave undecided gets a second look on all ``max_rounds``; each
            look then uses confidence ``1 - (1 - confidence) / 2`` (Bonferroni over the two
            looks), so the chance of accepting a change that is not faster stays within
            the one-sided ``(1 - confidence) / 2``.
        cache_tolerance: a cached stage may measure up to this factor above its
            ``1 / (1 - hit rate)`` bound (timing noise) before it is called an error.
        tune_timeout_s: a tune step still running after this long is rejected, named, and
            abandoned (generous: index builds can be long; ``None``: no bound).
        materialize_timeout_s: the same for materialize.
    """

    compare: CompareSettings = field(default_factory=lambda: CompareSettings(max_rounds=16))
    cache_tolerance: float = 1.25
    tune_timeout_s: float | None = 3600.0
    materialize_timeout_s: float | None = 600.0


@dataclass(frozen=True)
class Outcome:
    """A trial, and the candidate pipeline when it was accepted."""

    trial: Trial
    candidate: Pipeline | None = None
    comparison: Comparison | None = None


class Validator:
    """Validates changes against the held-out split (see the module docstring).

    Args:
        pm: the plugin manager (owner dispatch, fidelity metrics).
        original: the user's pipeline. Fidelity is always measured against its outputs.
        holdout: the held-out split the changes are validated on (never tuned on).
        requirements: the metric to optimize, the minimum gain, the fidelity budget.
        artifacts: where tune steps store artifacts and materialize reloads them.
        runtime: the serving model both sides are measured under.
    """

    def __init__(
        self,
        pm: PipetunePluginManager,
        original: Pipeline,
        holdout: Workload,
        requirements: Requirements,
        *,
        artifacts: ArtifactStore,
        runtime: RuntimeSpec | None = None,
        settings: ValidatorSettings | None = None,
        log: Callable[[str], None] | None = None,
        expected_item_s: float | None = None,
        original_outputs: Sequence[Any] | None = None,
        item_ids: Sequence[int] | None = None,
    ):
        holdout.require_items()
        if original_outputs is not None and len(original_outputs) != len(holdout.items):
            raise ConfigError(
                f"{len(original_outputs)} cached original outputs for a held-out split of "
                f"{len(holdout.items)} inputs"
            )
        self.pm = pm
        self.original = original
        self.holdout = holdout
        self.requirements = requirements
        self.artifacts = artifacts
        self.runtime = runtime or RuntimeSpec.from_workload(holdout)
        self.settings = settings or ValidatorSettings()
        #: Seconds per input of the pipeline changes are measured against: sizes the probe
        #: and the deadlines. The loop refreshes it after every accepted change.
        self.expected_item_s = expected_item_s
        #: Seconds a trial's comparison may take (the loop's remaining budget); ``None``:
        #: no limit. Coverage falls short of the rule only when this forbids it.
        self.time_budget_s: float | None = None
        # each held-out input's index in the whole workload: errors name that one
        self.item_ids = None if item_ids is None else list(item_ids)
        self._log = log or (lambda message: None)
        # The original's outputs on the held-out split: given (cached by a demo's set-up,
        # computed by the original pipeline), or computed once on first use.
        self._original_outputs: list[Any] | None = (
            list(original_outputs) if original_outputs is not None else None
        )

    @property
    def metric(self) -> str:
        return self.requirements.metric

    @property
    def fidelity_floor(self) -> float:
        return 1.0 - self.requirements.max_accuracy_drop

    def original_outputs(self) -> list[Any]:
        """The original pipeline's outputs on the held-out split, one input at a time."""
        if self._original_outputs is None:
            reset_state(self.original)
            try:
                result = run_offline(
                    self.original,
                    self.holdout.items,
                    timeout_s=self._pass_timeout(len(self.holdout)),
                )
            except StageError as exc:
                raise exc.renumbered(self.item_ids) from exc.__cause__
            self._original_outputs = list(control.complete(result).outputs)
        return list(self._original_outputs)

    # -- one proposal, end to end ------------------------------------------------------
    def try_proposal(
        self,
        proposal: Proposal,
        current: Pipeline,
        context: TuneContext,
        *,
        profile: Profile | None = None,
    ) -> Outcome:
        """Tune, materialize and validate ``proposal`` against ``current``."""
        started = time.perf_counter()
        est = proposal.est_e2e_speedup
        base: dict[str, Any] = {
            "proposal": proposal.id,
            "stage": proposal.stage,
            "plugin": proposal.plugin,
        }

        def finish(status: str, reason: str, **extra: Any) -> Outcome:
            trial = Trial(
                **base,
                status=status,  # type: ignore[arg-type]
                reason=reason,
                est_speedup=est,
                metric=self.metric,
                duration_s=time.perf_counter() - started,
                **extra,
            )
            return Outcome(trial)

        if proposal.status != "proposed" or not proposal.applicable:
            return finish("rejected", f"not applicable here: {proposal.reason or 'advice only'}")
        try:
            current.stage(proposal.stage) if proposal.stage != ALL_STAGES else None
        except PipelineError as exc:
            return finish("rejected", str(exc))

        # 1. tune (owner only) on the tuning split
        self._log(f"tuning {proposal.key}")
        try:
            tuned = _call_with_timeout(
                lambda: self.pm.tune(proposal, current, context),
                self.settings.tune_timeout_s,
                f"tuning {proposal.id}",
            )
        except Rejected as exc:
            return finish("rejected", f"{proposal.plugin}: {exc}")
        except Deferred as exc:
            return finish(
                "deferred",
                exc.reason,
                artifact=exc.artifact,
                command=exc.command,
                notes={"deferred": dict(getattr(exc, "details", {}) or {})},
            )
        except Exception as exc:
            if _strict(self.pm, exc):
                raise
            return finish("rejected", f"tuning raised {_describe(exc)}")
        if tuned is not None and not isinstance(tuned, Tuned):
            return finish(
                "rejected",
                f"plugin {proposal.plugin!r}: tuning {proposal.id} returned "
                f"{type(tuned).__name__}, not Tuned",
            )
        try:
            change = self.pm.make_change(proposal, tuned)
        except PipetuneError as exc:
            return finish("rejected", f"{proposal.plugin}: {exc}")
        notes: dict[str, Any] = {}
        if tuned is not None and tuned.notes:
            notes["tune"] = dict(tuned.notes)
        # the planner's estimate stays the trial's; what tuning found is shown beside it
        after_tune = tuned_estimate(
            profile, proposal, tuned.est_stage_speedup if tuned else None, self.metric
        )
        if after_tune is not None:
            notes["tuned_estimate"] = after_tune

        # 2. materialize (owner only): a new pipeline, never a mutated one
        try:
            candidate = self.materialize(change, current)
        except Deferred as exc:
            notes["deferred"] = dict(getattr(exc, "details", {}) or {})
            return finish(
                "deferred",
                exc.reason,
                change=change,
                artifact=exc.artifact,
                command=exc.command,
                notes=notes,
            )
        except Exception as exc:
            if _strict(self.pm, exc):
                raise
            return finish("rejected", f"apply failed: {_describe(exc)}", change=change, notes=notes)

        outcome = self.validate(change, current, candidate, est_speedup=est, notes=notes)
        trial = outcome.trial.evolve(duration_s=time.perf_counter() - started)
        return Outcome(trial, outcome.candidate, outcome.comparison)

    def materialize(self, change: Change, pipeline: Pipeline) -> Pipeline:
        """Build ``change`` on ``pipeline`` through the change type registered for its id."""
        result = _call_with_timeout(
            lambda: self.pm.materialize(change, pipeline, Path(self.artifacts.root)),
            self.settings.materialize_timeout_s,
            f"materializing {change.proposal}",
        )
        problem = ""
        if result is None:
            problem = f"does not materialize {change.proposal!r} (it returned None)"
        elif not isinstance(result, Pipeline):
            problem = f"returned {type(result).__name__}, not a Pipeline"
        elif result is pipeline:
            problem = "returned the pipeline it was given; it must return a new one"
        if problem:  # a broken contract: a plugin failure (an error in strict mode)
            _record_failure(self.pm, change.plugin, "materialize_change", problem)
            raise PluginError(f"plugin {change.plugin!r}: materialize_change {problem}")
        return result

    # -- validation proper -------------------------------------------------------------
    def validate(
        self,
        change: Change,
        current: Pipeline,
        candidate: Pipeline,
        *,
        est_speedup: float | None = None,
        notes: Mapping[str, Any] | None = None,
    ) -> Outcome:
        """Validate an already materialized ``candidate`` against ``current``."""
        started = time.perf_counter()
        notes = dict(notes or {})
        warnings: list[str] = []

        def finish(
            status: str,
            reason: str,
            fidelity: Fidelity | None = None,
            comparison: Comparison | None = None,
            accepted: Pipeline | None = None,
        ) -> Outcome:
            if warnings:
                notes["warnings"] = list(warnings)
            trial = Trial(
                proposal=change.proposal,
                status=status,  # type: ignore[arg-type]
                reason=reason,
                stage=change.stage,
                plugin=change.plugin,
                speedup=None if comparison is None else comparison.primary,
                speedup_ci=None if comparison is None else comparison.primary_ci,
                est_speedup=est_speedup,
                metric=self.metric,
                fidelity=fidelity,
                change=change,
                notes=notes,
                duration_s=time.perf_counter() - started,
            )
            return Outcome(trial, accepted, comparison)

        # 3. one cold pass over the held-out split: outputs, hit rates, raise/hang
        self._log(f"validating {change.proposal}: fidelity pass")
        reset_state(candidate)
        try:
            result = run_pass(
                candidate,
                self.holdout.items,
                RuntimeSpec(mode="offline", threads=self.runtime.threads),
                timeout_s=self._pass_timeout(len(self.holdout)),
            )
        except StageTimeout as exc:
            return finish(
                "rejected",
                f"hangs: stage {exc.stage!r} gave no result within {exc.timeout_s:.0f} s "
                f"on input #{exc.renumbered(self.item_ids).index} of the workload (its "
                "worker thread is abandoned)",
            )
        except StageError as exc:
            return finish("rejected", f"raises: {exc.renumbered(self.item_ids)}")
        except Exception as exc:
            return finish("rejected", f"raises: {_describe(exc)}")
        hit_rates = cache_stats(candidate)
        if hit_rates:
            notes["cache"] = hit_rates
        stats = component_stats(candidate)  # e.g. the share an adaptive router sent each way
        if stats:
            notes["stats"] = stats

        fidelity, problem = self.fidelity(change, candidate, result.outputs, warnings)
        if problem:
            return finish("rejected", problem, fidelity)

        # 4. speed, paired ABBA against the current pipeline
        self._log(f"validating {change.proposal}: speed")
        gate = 1.0 + self.requirements.min_gain
        settings = replace(
            self.settings.compare,
            in_flight=change.in_flight or self.settings.compare.in_flight,
            time_budget_s=self.time_budget_s,
        )
        if settings.max_rounds and settings.max_rounds > settings.rounds:
            settings = replace(settings, confidence=1.0 - (1.0 - settings.confidence) / 2)

        def decided(result: Comparison) -> bool:
            low, high = result.primary_ci
            return low > gate or high < gate

        try:
            comparison = compare(
                current,
                candidate,
                self.holdout.items,
                metric=self.metric,
                runtime=self.runtime,
                settings=settings,
                expected_item_s=self.expected_item_s,
                decided=decided,
            )
        except StageTimeout as exc:
            return finish(
                "rejected", f"hangs during timing: {exc.renumbered(self.item_ids)}", fidelity
            )
        except StageError as exc:
            return finish(
                "rejected", f"raises during timing: {exc.renumbered(self.item_ids)}", fidelity
            )
        notes["comparison"] = comparison.to_dict()
        notes["speedups"] = dict(comparison.speedup)
        if comparison.coverage_note:
            warnings.append(f"{change.proposal}: {comparison.coverage_note}")

        verdict = self._cache_leak(current, comparison, hit_rates) or self._verdict(
            comparison, gate
        )
        accepted = verdict.startswith("faster: ")
        broken = self._broken_requirements(comparison) if accepted else []
        if broken:  # proven faster on the metric, but a requirement that held no longer does
            verdict = f"{verdict.removeprefix('faster: ')}, but it breaks {'; '.join(broken)}"
            accepted = False
        return finish(
            "accepted" if accepted else "rejected",
            verdict,
            fidelity,
            comparison,
            candidate if accepted else None,
        )

    def _verdict(self, comparison: Comparison, gate: float) -> str:
        """The speed verdict in words: ``faster: ...`` when accepted, the reason otherwise.
        Every figure says what it rests on."""
        low, high = comparison.primary_ci
        label = _label(self.metric)
        if not comparison.shown(self.metric):
            note = f"; {comparison.coverage_note}" if comparison.coverage_note else ""
            return (
                f"{label} cannot be judged on {comparison.samples_per_side} latency samples "
                f"per side (it needs {min_samples_for_quantile(self.metric)}): "
                f"{comparison.coverage}{note}"
            )
        figure = (
            f"{comparison.primary:.2f}x [{low:.2f}, {high:.2f}] on {label} ({comparison.coverage})"
        )
        if comparison.primary < 1.0 and high < 1.0:
            return f"slower: {figure}"
        if not low > gate:
            return f"gain not proven: {figure}; the lower bound must beat {gate:.2f}x"
        return f"faster: {figure}"

    def fidelity(
        self,
        change: Change,
        candidate: Pipeline,
        outputs: Sequence[Any],
        warnings: list[str],
    ) -> tuple[Fidelity, str]:
        """The candidate's fidelity against the original pipeline, and the reason it fails
        the gate ('' when it passes). The threshold is the user's budget, raised (never
        lowered) where the judging plugin asks for more."""
        assessed = dispatch.assess_change(self.pm, change, self.original, candidate, self.holdout)
        floor = self.fidelity_floor
        if assessed is None:
            kind = change.fidelity_kind or self.original.output_kind
            assessed = compare_outputs(
                self.pm, kind, self.original_outputs(), list(outputs), self.holdout.labels
            )
        fidelity = dispatch.gate(assessed, floor)
        threshold = float(fidelity.threshold if fidelity.threshold is not None else floor)
        registered = dispatch.change_type(self.pm, change.proposal)
        if registered is not None and registered.lossy and fidelity.n <= 0:
            return fidelity, (
                f"{change.proposal} is lossy and its fidelity was measured on no outputs: "
                "a lossy change is kept only behind a fidelity gate"
            )
        fidelity = _gate(fidelity, threshold)
        if fidelity.unproven:
            warnings.append(unproven_sentence(fidelity, threshold))
        ci = f" [{fidelity.ci[0]:.3f}, {fidelity.ci[1]:.3f}]" if fidelity.ci else ""
        if fidelity.value < threshold - 1e-12:
            # a plugin may put the raw figures behind the value in details["summary"]
            summary = fidelity.details.get("summary") if fidelity.details else None
            said = f"{summary}; " if isinstance(summary, str) and summary else ""
            return fidelity, (
                f"fidelity: {fidelity.metric} {fidelity.value:.3f}{ci} < {threshold:.3f} "
                f"({said}cumulative, against the original pipeline)"
            )
        drop = fidelity.details.get("accuracy_drop") if fidelity.details else None
        if isinstance(drop, int | float) and drop > self.requirements.max_accuracy_drop + 1e-12:
            return fidelity, (
                f"accuracy on the labels drops by {drop:.1%} "
                f"(allowed {self.requirements.max_accuracy_drop:.1%})"
            )
        return fidelity, ""

    def _cache_leak(
        self,
        current: Pipeline,
        comparison: Comparison,
        hit_rates: Mapping[str, Mapping[str, float]],
    ) -> str:
        """Warm state leaking between passes, seen two ways: the timed passes missed the
        cache far less often than the cold held-out pass did (each pass starts from a
        reset, so they cannot beat a cold pass by much), or a cached stage measured faster
        than ``1 / (1 - hit rate)`` of its timed passes allows. Both allow
        ``cache_tolerance`` for noise: a timed pass covers a part of the split."""
        before = cache_stats(current)
        tolerance = self.settings.cache_tolerance
        for stage, figures in hit_rates.items():
            if stage in before:  # the cache was there already: not this change's cache
                continue
            rate = float(figures.get("hit_rate", 0.0))
            timed = comparison.b_cache.get(stage, {})
            if timed.get("hits", 0) + timed.get("misses", 0):
                timed_rate = float(timed["hit_rate"])
                if (1.0 - timed_rate) * tolerance < 1.0 - rate:
                    return (
                        f"error: stage {stage!r} hit its cache on {timed_rate:.0%} of the "
                        f"timed passes' lookups, but on {rate:.0%} in a cold pass over the "
                        "held-out inputs: warm state must have leaked between passes (a "
                        "cache that does not implement pipetune_reset?)"
                    )
                rate = timed_rate
            measured = comparison.stage_speedup(stage)
            if measured is None:
                continue
            bound = math.inf if rate >= 1.0 else 1.0 / (1.0 - rate)
            if measured > bound * tolerance:
                return (
                    f"error: stage {stage!r} measured {measured:.2f}x faster, but a "
                    f"{rate:.0%} hit rate allows at most {bound:.2f}x: warm state must have "
                    "leaked between passes (a cache that does not implement pipetune_reset?)"
                )
        return ""

    def _broken_requirements(self, comparison: Comparison) -> list[str]:
        """Requirements the current pipeline met in this comparison and the candidate
        does not."""
        broken = []
        a, b = comparison.a, comparison.b
        misses_a = set(_miss_keys(self.requirements, a.throughput_rps, a.latency_ms))
        for key, text in _misses(self.requirements, b.throughput_rps, b.latency_ms):
            if key not in misses_a:
                broken.append(text)
        return broken

    def _pass_timeout(self, n: int) -> float:
        """The per-input deadline of a pass over ``n`` inputs (per input: a deadline over
        the whole pass blamed whichever input it had reached), within the control
        scope's."""
        del n
        settings = self.settings.compare
        if self.expected_item_s is None:
            return control.capped(max(settings.min_timeout_s, 300.0))
        return control.capped(
            max(settings.min_timeout_s, settings.timeout_factor * self.expected_item_s)
        )


# -- helpers ------------------------------------------------------------------------------------


def items_needed(threshold: float) -> int:
    """Items a proportion gate at ``threshold`` needs before it can be proven: with none of
    them failing, the Wilson interval's lower bound is ``n / (n + z^2)``, so a 99 % gate
    needs 381 items before even a perfect score shows that it holds."""
    if threshold >= 1.0 or threshold <= 0.0:
        return 0
    return wilson_items_to_prove(1.0, 0, threshold) or 0


def _gate(fidelity: Fidelity, threshold: float) -> Fidelity:
    """``fidelity`` with its gate decided: missed (below the threshold), unproven (a
    proportion whose interval's lower bound is below it) or met."""
    if fidelity.value < threshold - 1e-12:
        return fidelity.evolve(gate="missed", items_to_prove=None)
    if not _is_proportion(fidelity.metric) or fidelity.n <= 0 or threshold >= 1.0:
        return fidelity.evolve(gate="met", items_to_prove=None)
    low = (
        fidelity.ci[0]
        if fidelity.ci
        else wilson_interval(round(fidelity.value * fidelity.n), fidelity.n)[0]
    )
    if low >= threshold - 1e-12:
        return fidelity.evolve(gate="met", items_to_prove=None)
    more = wilson_items_to_prove(fidelity.value, fidelity.n, threshold)
    return fidelity.evolve(gate="unproven", items_to_prove=more)


def unproven_sentence(fidelity: Fidelity, threshold: float | None = None) -> str:
    """Why a gate is unproven, and how many more items would prove it."""
    threshold = threshold if threshold is not None else float(fidelity.threshold or 0.0)
    ci = f" [{fidelity.ci[0]:.3f}, {fidelity.ci[1]:.3f}]" if fidelity.ci else ""
    more = fidelity.items_to_prove
    how = (
        f"{more} more held-out items, agreeing as these did, would prove it"
        if more
        else "no number of items agreeing at this rate can prove it"
    )
    return (
        f"the {threshold:.1%} {fidelity.metric} gate is unproven: {fidelity.value:.3f}{ci} on "
        f"{fidelity.n} held-out items, and the interval's lower bound is below "
        f"{threshold:.3f}; {how} (the gate needs at least {items_needed(threshold)} items, "
        "with none disagreeing)"
    )


def _is_proportion(metric: str) -> bool:
    return any(hint in metric.lower() for hint in _PROPORTION_HINTS)


def _misses(
    requirements: Requirements, throughput: float, latency_ms: Mapping[str, float]
) -> list[tuple[str, str]]:
    out = []
    for metric in ("p50", "p95", "p99", "max"):
        bound = getattr(requirements, f"{metric}_ms")
        value = latency_ms.get(metric)
        if bound is not None and value is not None and value > bound:
            out.append((metric, f"{metric.upper()} <= {bound:g} ms ({value:.1f} ms)"))
    if requirements.min_throughput_rps is not None and throughput < requirements.min_throughput_rps:
        out.append(
            (
                "throughput",
                f"throughput >= {requirements.min_throughput_rps:g}/s ({throughput:.1f}/s)",
            )
        )
    return out


def _miss_keys(
    requirements: Requirements, throughput: float, latency_ms: Mapping[str, float]
) -> list[str]:
    return [key for key, _ in _misses(requirements, throughput, latency_ms)]


def _label(metric: str) -> str:
    return "throughput" if metric == "throughput" else f"{metric.upper()} latency"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, PipetuneError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _call_with_timeout(fn: Callable[[], Any], timeout_s: float | None, what: str) -> Any:
    """Run ``fn`` on a worker thread that is abandoned when it outlasts ``timeout_s`` or
    the work is cancelled (Ctrl-C must not wait for an index build to finish)."""
    return workers.call(fn, timeout_s=timeout_s, what=what)


def _strict(pm: Any, exc: BaseException) -> bool:
    """A plugin failure that strict mode turns into an error (never a rejected trial)."""
    return bool(getattr(pm, "strict", False)) and isinstance(exc, PluginError)


def _record_failure(pm: Any, plugin: str, hook: str, problem: str) -> None:
    record = getattr(pm, "record_failure", None)
    if record is not None:
        record(plugin, hook, problem)
