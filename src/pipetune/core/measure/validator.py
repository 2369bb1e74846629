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
from pipetune.core.measure.fidelity_gate import decide_gate, unproven_sentence
from pipetune.core.measure.speed_verdict import broken_requirements, cache_leak, speed_verdict
from pipetune.core.measure.timed_pass import RuntimeSpec, run_pass
from pipetune.core.runtime.offline import RunResult, run_offline

if TYPE_CHECKING:
    from pipetune.core.kernel.artifacts import ArtifactStore
    from pipetune.core.kernel.manager import PipetunePluginManager

#: Builds the trial's outcome from a status, a reason and the trial's other fields.
_Finish = Callable[..., "Outcome"]


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
        tuned = self._tune(proposal, current, context, finish)
        if isinstance(tuned, Outcome):
            return tuned
        try:
            change = self.pm.make_change(proposal, tuned)
        except PipetuneError as exc:
            return finish("rejected", f"{proposal.plugin}: {exc}")
        notes = self._tune_notes(proposal, tuned, profile)

        # 2. materialize (owner only): a new pipeline, never a mutated one
        candidate = self._materialize_candidate(change, current, notes, finish)
        if isinstance(candidate, Outcome):
            return candidate

        outcome = self.validate(change, current, candidate, est_speedup=est, notes=notes)
        trial = outcome.trial.evolve(duration_s=time.perf_counter() - started)
        return Outcome(trial, outcome.candidate, outcome.comparison)

    def _tune(
        self, proposal: Proposal, current: Pipeline, context: TuneContext, finish: _Finish
    ) -> Tuned | Outcome | None:
        """The owner's tune step under its timeout; the trial's outcome when it rejects,
        defers, raises or returns something other than :class:`Tuned`."""
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
        return tuned

    def _tune_notes(
        self, proposal: Proposal, tuned: Tuned | None, profile: Profile | None
    ) -> dict[str, Any]:
        """The trial's notes from tuning: the tune step's own, and the estimate it gives."""
        notes: dict[str, Any] = {}
        if tuned is not None and tuned.notes:
            notes["tune"] = dict(tuned.notes)
        # the planner's estimate stays the trial's; what tuning found is shown beside it
        after_tune = tuned_estimate(
            profile, proposal, tuned.est_stage_speedup if tuned else None, self.metric
        )
        if after_tune is not None:
            notes["tuned_estimate"] = after_tune
        return notes

    def _materialize_candidate(
        self, change: Change, current: Pipeline, notes: dict[str, Any], finish: _Finish
    ) -> Pipeline | Outcome:
        """The candidate pipeline; the trial's outcome when materializing defers or fails."""
        try:
            return self.materialize(change, current)
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
        result = self._fidelity_pass(change, candidate)
        if isinstance(result, str):
            return finish("rejected", result)
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
        comparison = self._compare_speed(change, current, candidate, gate)
        if isinstance(comparison, str):
            return finish("rejected", comparison, fidelity)
        notes["comparison"] = comparison.to_dict()
        notes["speedups"] = dict(comparison.speedup)
        if comparison.coverage_note:
            warnings.append(f"{change.proposal}: {comparison.coverage_note}")

        verdict, accepted = self._judge(current, comparison, hit_rates, gate)
        return finish(
            "accepted" if accepted else "rejected",
            verdict,
            fidelity,
            comparison,
            candidate if accepted else None,
        )

    def _judge(
        self,
        current: Pipeline,
        comparison: Comparison,
        hit_rates: Mapping[str, Mapping[str, float]],
        gate: float,
    ) -> tuple[str, bool]:
        """The verdict in words, and whether the change is kept: no warm state leaked
        between passes, proven faster than ``gate`` on the metric, and no requirement that
        held is broken."""
        tolerance = self.settings.cache_tolerance
        verdict = cache_leak(current, comparison, hit_rates, tolerance) or speed_verdict(
            comparison, self.metric, gate
        )
        accepted = verdict.startswith("faster: ")
        broken = broken_requirements(self.requirements, comparison) if accepted else []
        if broken:  # proven faster on the metric, but a requirement that held no longer does
            verdict = f"{verdict.removeprefix('faster: ')}, but it breaks {'; '.join(broken)}"
            accepted = False
        return verdict, accepted

    def _fidelity_pass(self, change: Change, candidate: Pipeline) -> RunResult | str:
        """One cold pass of the candidate over the held-out split (its outputs give the
        fidelity); why it is rejected when it hangs or raises."""
        self._log(f"validating {change.proposal}: fidelity pass")
        reset_state(candidate)
        try:
            return run_pass(
                candidate,
                self.holdout.items,
                RuntimeSpec(mode="offline", threads=self.runtime.threads),
                timeout_s=self._pass_timeout(len(self.holdout)),
            )
        except StageTimeout as exc:
            return (
                f"hangs: stage {exc.stage!r} gave no result within {exc.timeout_s:.0f} s "
                f"on input #{exc.renumbered(self.item_ids).index} of the workload (its "
                "worker thread is abandoned)"
            )
        except StageError as exc:
            return f"raises: {exc.renumbered(self.item_ids)}"
        except Exception as exc:
            return f"raises: {_describe(exc)}"

    def _compare_speed(
        self, change: Change, current: Pipeline, candidate: Pipeline, gate: float
    ) -> Comparison | str:
        """The candidate against ``current`` in paired rounds, with a second look when the
        first leaves ``gate`` inside the interval; why it is rejected when it hangs or
        raises during timing."""
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
            return compare(
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
            return f"hangs during timing: {exc.renumbered(self.item_ids)}"
        except StageError as exc:
            return f"raises during timing: {exc.renumbered(self.item_ids)}"

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
        fidelity = decide_gate(fidelity, threshold)
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
