"""One optimize run, start to end: screen, split, profile the baseline, search, finish.

The loop is pictured in :mod:`.optimize`, its public entry, which checks the arguments and
starts one run. :class:`OptimizeRun` holds what a run accumulates (the trials, the kept
changes, the pipeline kept so far and its profile, the warnings) and drives the greedy
search; the pieces it leans on live beside it: the workload's splits (:mod:`.splits`), the
proposals seen (:mod:`.ledger`), the run store record (:mod:`.recording`), and the final
measurement and the report (:mod:`.final`).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pipetune.core.kernel import control
from pipetune.core.kernel.artifacts import ArtifactStore
from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import StageError
from pipetune.core.kernel.model import Pipeline, Requirements, Workload
from pipetune.core.kernel.results import ExecutionContext, Profile, Proposal, Recipe, Trial
from pipetune.core.kernel.state import reset_state
from pipetune.core.loop import planner
from pipetune.core.loop.final import (
    FreshPlan,
    assemble_report,
    describe_workload,
    final_comparison,
    latencies_ms,
    throughput_ratio,
)
from pipetune.core.loop.ledger import ProposalLedger
from pipetune.core.loop.paths import store_dir
from pipetune.core.loop.recipes import make_recipe
from pipetune.core.loop.recording import RunRecorder
from pipetune.core.loop.remeasure import confirm_beyond_ceiling
from pipetune.core.loop.settings import LoopSettings
from pipetune.core.loop.splits import cached_outputs, check_splits, holdout_ids, split_workload
from pipetune.core.loop.store import RunStore
from pipetune.core.measure import execution
from pipetune.core.measure.comparison_result import Comparison
from pipetune.core.measure.load import HostLoadMeter, noisy_warning
from pipetune.core.measure.timed_pass import RuntimeSpec
from pipetune.core.measure.validator import Outcome, Validator
from pipetune.core.report.model import Report
from pipetune.core.runtime.machine import detect_machine
from pipetune.core.runtime.offline import run_offline
from pipetune.core.runtime.threads import pin_threads, use_plugin_pools

if TYPE_CHECKING:
    from pipetune.core.kernel.manager import PipetunePluginManager


class OptimizeRun:
    """One optimize run: its state from the first profile to the report.

    :meth:`run` returns the kept pipeline and the report; the run store (when there is
    one) is written as the run goes (:class:`~pipetune.core.loop.recording.RunRecorder`).
    """

    def __init__(
        self,
        *,
        pm: PipetunePluginManager,
        original: Pipeline,
        workload: Workload,
        requirements: Requirements,
        settings: LoopSettings,
        store: RunStore | None,
        target: str | None,
        runtime: RuntimeSpec,
        log: Callable[[str], None],
        baseline_outputs: Sequence[Any] | None = None,
        factory: str | None = None,
    ):
        self.pm = pm
        self.baseline_outputs = None if baseline_outputs is None else list(baseline_outputs)
        self.original = original
        self.workload = workload
        self.requirements = requirements
        self.settings = settings
        self.target = target
        self.factory = factory
        # the process as the user started it (before the run pins threads): the final
        # re-measurement's fresh process gets this environment
        self.environ = dict(os.environ)
        self.sys_path = tuple(sys.path)
        self.runtime = runtime
        self.log = log
        self.artifacts = (
            store.artifacts if store is not None else ArtifactStore(store_dir() / "artifacts")
        )
        self.warnings: list[str] = []
        self.recorder = RunRecorder(store, warnings=self.warnings, log=log)
        self.trials: list[Trial] = []
        self.accepted: list[tuple[Proposal, Trial]] = []
        self.ledger = ProposalLedger()
        self.started = time.monotonic()
        self._report: Report | None = None
        self._final_pipeline: Pipeline = original
        self._current: Pipeline = original
        self._current_profile: Profile | None = None
        self._baseline_throughput: float | None = None
        #: the product of the accepted trials' side-by-side throughput ratios
        self._measured_ratio: float | None = 1.0
        self.overlap: dict[str, Any] | None = None
        self.execution: ExecutionContext = execution.capture(mode=runtime.mode)
        # the workload index of each input measured (on_error="skip" sets some aside)
        self.item_ids: list[int] = list(range(len(workload)))
        self.skipped: tuple[Mapping[str, Any], ...] = ()

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> tuple[Pipeline, Report]:
        machine = detect_machine()
        self.recorder.start(
            self.original.name,
            machine_fingerprint=machine.fingerprint,
            target=self.target,
            requirements=self.requirements.to_dict(),
        )
        status = "failed"
        try:
            # One thread setting for the whole run: baseline and every candidate are
            # measured under the same counts, and a library a candidate loads mid-run
            # (faiss, onnxruntime) starts with them too.
            use_plugin_pools(self.pm)
            with pin_threads(self.runtime.threads):
                self._screen()
                tune, calibration, holdout = split_workload(
                    self.workload, self.settings.tune_fraction, self.warnings
                )
                report = self._run(tune, calibration, holdout)
            status = "interrupted" if report.stopped == "interrupted" else "finished"
            return self._final_pipeline, report
        except KeyboardInterrupt:
            status = "interrupted"  # before anything was measured: nothing to report
            raise
        finally:
            self.recorder.finish(
                status,
                report=self._report,
                trials=len(self.trials),
                accepted=len(self.accepted),
                metric=self.requirements.metric,
            )

    def _run(self, tune: Workload, calibration: Workload, holdout: Workload) -> Report:
        meter = HostLoadMeter().start()
        baseline = self._measure_baseline(tune, holdout)
        stopped = self._search(baseline, tune, calibration, holdout)
        self.ledger.note_untried(
            tried=self._tried(),
            accepted=[proposal.id for proposal, _ in self.accepted],
            stopped=stopped,
        )
        fidelity = self.accepted[-1][1].fidelity if self.accepted else None
        # the thread plan in force on the kept pipeline: load_recipe puts it back per stage
        self.execution = self.execution.evolve(stages=execution.stage_plans(self._current))
        recipe = make_recipe(
            self.original,
            [t.change for _, t in self.accepted if t.change],
            fidelity,
            execution=self.execution,
        )
        final, comparison, stopped = self._measure_final(holdout, stopped, recipe)
        host_load = meter.stop().to_dict()
        noisy = noisy_warning(host_load, "figures of this run")
        if noisy:
            self.warnings.append(noisy)
        self._note_hook_failures()  # the ones since the last profile too
        self.recorder.recipe(recipe)
        self._final_pipeline = self._current
        self._report = assemble_report(
            original=self.original,
            requirements=self.requirements,
            baseline=baseline,
            final=final,
            comparison=comparison,
            stopped=stopped,
            trials=self.trials,
            fidelity=fidelity,
            proposals=list(self.ledger.entries.values()),
            recipe=recipe,
            run_id=self.recorder.run_id,
            runtime=self.runtime,
            workload=describe_workload(self.workload, tune, calibration, holdout, self.overlap),
            host_load=host_load,
            execution=self.execution.to_dict(),
            warnings=self.warnings,
            skipped=self.skipped,
            started=self.started,
        )
        return self._report

    def _measure_baseline(self, tune: Workload, holdout: Workload) -> Profile:
        """Profile the original (every pass) and make it the pipeline to improve on."""
        self.execution = execution.capture(
            calling=_calling(self.runtime), mode=self.runtime.mode, requested=self.runtime.threads
        )
        self.overlap = check_splits(
            tune,
            holdout,
            output_kind=self.original.output_kind,
            max_accuracy_drop=self.requirements.max_accuracy_drop,
            tune_fraction=self.settings.tune_fraction,
            warnings=self.warnings,
        )
        self.log(f"profiling {self.original.name} on {len(self.workload)} inputs")
        baseline = self._profile(self.original, full=True)
        self.recorder.profile("baseline", baseline)
        self.warnings.extend(baseline.warnings)
        self._note_hook_failures()

        self._current, self._current_profile = self.original, baseline
        self._baseline_throughput = baseline.throughput_rps
        return baseline

    def _search(
        self, baseline: Profile, tune: Workload, calibration: Workload, holdout: Workload
    ) -> str:
        """The greedy search, validated on ``holdout``; returns why it stopped."""
        cached_tune, cached_holdout = cached_outputs(
            self.workload, self.settings.tune_fraction, self.baseline_outputs, self.warnings
        )
        validator = Validator(
            self.pm,
            self.original,
            holdout,
            self.requirements,
            artifacts=self.artifacts,
            runtime=self.runtime,
            settings=self.settings.validator,
            log=self.log,
            expected_item_s=baseline.latency_ms.mean / 1000.0 or None,
            original_outputs=cached_holdout,
            item_ids=self._holdout_ids(),
        )
        stopped = ""
        try:
            _checkpoint(baseline)  # an interrupted baseline profile: report what it has
            validator.original_outputs()
            tune_outputs = (
                cached_tune if cached_tune is not None else self._outputs(self.original, tune)
            )
            stopped = self._greedy(validator, tune, calibration, tune_outputs)
        except KeyboardInterrupt:
            stopped = "interrupted"
            self.warnings.append("interrupted: the report covers the trials that finished")
        return stopped

    def _measure_final(
        self, holdout: Workload, stopped: str, recipe: Recipe
    ) -> tuple[Profile, dict[str, Any] | None, str]:
        """The kept pipeline's full profile and its side-by-side comparison with the
        original (none when nothing was kept or the run was interrupted; in a fresh
        process that loads ``recipe`` when the run has a factory), and why the loop
        stopped (``interrupted`` when it was during this measurement)."""
        current = self._current
        current_profile = self._current_profile
        assert current_profile is not None, "the baseline is profiled before the search"
        comparison = None
        if current is not self.original and stopped != "interrupted":
            try:
                self.log("profiling the final pipeline")
                current_profile = self._profile(current, full=True)
                self.recorder.profile("final", current_profile)
                _checkpoint(current_profile)
                if self.settings.final_compare:
                    comparison = final_comparison(
                        self.original,
                        current,
                        holdout,
                        accepted=[trial for _, trial in self.accepted],
                        requirements=self.requirements,
                        runtime=self.runtime,
                        validator=self.settings.validator,
                        holdout_ids=self._holdout_ids(),
                        warnings=self.warnings,
                        log=self.log,
                        fresh=self._fresh_plan(recipe),
                    )
            except KeyboardInterrupt:
                stopped = "interrupted"
                self.warnings.append(
                    "interrupted during the final measurement: the figures are the last "
                    "profile's, not a side-by-side re-measurement"
                )
        return current_profile, comparison, stopped

    def _fresh_plan(self, recipe: Recipe) -> FreshPlan | None:
        """How to re-measure in a fresh process, when the run knows the factory."""
        if self.factory is None:
            return None
        return FreshPlan(
            factory=self.factory,
            recipe=recipe,
            artifacts=self.artifacts.root,
            env=self.environ,
            sys_path=self.sys_path,
        )

    def _greedy(
        self, validator: Validator, tune: Workload, calibration: Workload, tune_outputs: list[Any]
    ) -> str:
        """Try proposals best first until a stop condition; returns why it stopped."""
        bounded = _has_bounds(self.requirements)
        while True:
            current_profile = self._current_profile
            assert current_profile is not None, "the baseline is profiled before the search"
            met = bounded and not self.requirements.check(
                current_profile.throughput_rps,
                latencies_ms(current_profile),
                self._speedup_so_far(current_profile),
            )
            if met and not self.accepted:
                return "requirements met"
            plan = planner.plan(
                self.pm,
                self._current,
                current_profile,
                self.requirements,
                accepted=[p for p, _ in self.accepted],
                tried=self._tried(),
            )
            # Planned again even when the requirements are met, so that the proposals left
            # untried are reported with the current profile's estimates, not the first's.
            self._record_plan(plan)
            if met:
                return "requirements met"
            queue = plan.worth_trying
            if not queue:
                return "nothing left worth trying"
            accepted_one = False
            for ranked in queue:
                control.check()
                budget = self._budget_spent()
                if budget:
                    return budget
                validator.time_budget_s = self._time_left()
                outcome = self._try(validator, ranked, tune, calibration, tune_outputs)
                if outcome.trial.status == "accepted" and outcome.candidate is not None:
                    self._note_measured_ratio(outcome.comparison)
                    self._accept(ranked.proposal, outcome.trial, outcome.candidate)
                    # the next trials compare against this pipeline: size them from it
                    accepted_profile = self._current_profile
                    assert accepted_profile is not None
                    validator.expected_item_s = accepted_profile.latency_ms.mean / 1000.0
                    validator.expected_item_s = validator.expected_item_s or None
                    accepted_one = True
                    break
            if not accepted_one:
                return "nothing left worth trying"

    def _try(
        self,
        validator: Validator,
        ranked: planner.Ranked,
        tune: Workload,
        calibration: Workload,
        tune_outputs: list[Any],
    ) -> Outcome:
        proposal = ranked.proposal
        self.log(
            f"trying {proposal.id} on {proposal.stage} "
            f"(estimated {ranked.est_e2e_speedup:.2f}x end to end)"
        )
        context = TuneContext(
            self.pm,
            self.original,
            tune,
            self.requirements,
            self.artifacts,
            fidelity_floor=1.0 - self.requirements.max_accuracy_drop,
            profile=self._current_profile,
            log=self.log,
            baseline_outputs=tune_outputs,
            calibration=calibration,
        )
        outcome = validator.try_proposal(
            proposal, self._current, context, profile=self._current_profile
        )
        outcome = confirm_beyond_ceiling(validator, ranked, self._current, outcome, self.log)
        trial = outcome.trial
        planned = {"estimated_on": self._profile_label()}
        if ranked.note:
            planned["planner"] = ranked.note
        trial = trial.evolve(notes={**trial.notes, **planned})
        self.trials.append(trial)
        self.recorder.trial(len(self.trials), trial)
        self.log(f"{proposal.id}: {trial.status}: {trial.reason}")
        return Outcome(trial, outcome.candidate, outcome.comparison)

    def _profile(self, pipeline: Pipeline, *, full: bool) -> Profile:
        """Profile ``pipeline``. Between trials only what planning needs (stage times, GIL
        check, plugin facts); the baseline and the final pipeline get every pass (the
        concurrency sweep, hot functions, layers, memory) for the report."""
        from pipetune.core.measure.profiler import profile as profile_pipeline

        options: dict[str, Any] = {"timeout_s": self.settings.stage_timeout_s}
        if not (full and self.settings.detailed_profiles):
            options.update(sweep=False, hot_functions=False, layers=False, memory=False)
        options.update(self.settings.profile_options)
        try:
            return profile_pipeline(pipeline, self.workload, pm=self.pm, **options)
        except StageError as exc:  # name the input by its place in the user's workload
            raise exc.renumbered(self.item_ids) from exc.__cause__

    def _note_measured_ratio(self, comparison: Comparison | None) -> None:
        """Chain an accepted trial's side-by-side throughput ratio (or forget the chain
        when a trial measured none)."""
        ratio = None if comparison is None else comparison.speedup.get("throughput")
        if self._measured_ratio is not None and ratio and math.isfinite(ratio):
            self._measured_ratio *= ratio
        else:
            self._measured_ratio = None

    def _speedup_so_far(self, profile: Profile) -> float | None:
        """The throughput against the original's for ``min_speedup``: the product of the
        accepted trials' side-by-side ratios (each measured against the pipeline before it,
        on the same held-out inputs), not the ratio of two profiles taken at different times
        on different samples, which can overstate it and stop the loop short of the bound."""
        if self._measured_ratio is not None:
            return self._measured_ratio
        return throughput_ratio(profile.throughput_rps, self._baseline_throughput)

    def _accept(self, proposal: Proposal, trial: Trial, candidate: Pipeline) -> None:
        self.accepted.append((proposal, trial))
        self._current = candidate
        self.log(f"re-profiling after {proposal.id}")
        self._current_profile = self._profile(candidate, full=False)
        self.recorder.profile(f"after {proposal.id}", self._current_profile)
        self._note_hook_failures()
        _checkpoint(self._current_profile)

    # -- pieces ----------------------------------------------------------------------------
    def _screen(self) -> None:
        """``on_error="skip"``: set aside the inputs the original fails on."""
        if self.settings.on_error != "skip":
            return
        from pipetune.core.loop.screening import screen

        total = len(self.workload)
        self.log(f"screening {total} inputs (--on-error skip)")
        screened = screen(self.original, self.workload, self.baseline_outputs)
        self.workload, self.baseline_outputs = screened.workload, screened.outputs
        self.item_ids, self.skipped = list(screened.kept), screened.skipped
        if screened.warning(total):
            self.warnings.append(screened.warning(total))

    def _holdout_ids(self) -> list[int]:
        """The workload index of each held-out input (as the loop splits the workload)."""
        return holdout_ids(self.workload, self.settings.tune_fraction, self.item_ids, self.warnings)

    def _outputs(self, pipeline: Pipeline, workload: Workload) -> list[Any]:
        reset_state(pipeline)
        return list(control.complete(run_offline(pipeline, workload.items)).outputs)

    def _time_left(self) -> float | None:
        if self.settings.time_budget_s is None:
            return None
        return max(0.0, self.settings.time_budget_s - (time.monotonic() - self.started))

    def _budget_spent(self) -> str:
        if self.settings.max_trials is not None and len(self.trials) >= self.settings.max_trials:
            return f"max trials ({self.settings.max_trials}) reached"
        if self.settings.time_budget_s is not None:
            elapsed = time.monotonic() - self.started
            if elapsed >= self.settings.time_budget_s:
                return f"time budget ({self.settings.time_budget_s:g} s) spent"
        return ""

    def _tried(self) -> set[str]:
        return {f"{t.proposal}@{t.stage}" for t in self.trials}

    def _record_plan(self, plan: planner.Plan) -> None:
        """The plan's proposals into the report (:class:`ProposalLedger`), its plugin
        failures into the warnings."""
        self.ledger.record(
            plan,
            tried=self._tried(),
            estimated_on=self._profile_label(),
            kept_before=len(self.accepted),
        )
        for failure in plan.failures:
            self.warnings.append(failure.message)

    def _profile_label(self) -> str:
        """The profile plans are made on now, named as the run store names it."""
        return f"after {self.accepted[-1][0].id}" if self.accepted else "baseline"

    def _note_hook_failures(self) -> None:
        """Plugin problems (load failures, hook failures) into the report's warnings."""
        problems = getattr(self.pm, "problems", None)
        messages = problems() if problems else [f.message for f in self.pm.hook_failures]
        for message in messages:
            if message not in self.warnings:
                self.warnings.append(message)


def _calling(runtime: RuntimeSpec) -> str:
    """Where the timed passes run: the calling thread offline, the runtime's workers
    online and in stream mode."""
    if runtime.mode == "offline" and runtime.calling_thread == "caller":
        return execution.calling_thread()
    return "worker"


def _checkpoint(profile: Profile) -> None:
    """Stop here (``Cancelled``) when the work was cancelled or ``profile`` was cut short."""
    if profile.stopped:
        control.cancel("interrupted")
        raise control.Cancelled("interrupted")
    control.check()


def _has_bounds(requirements: Requirements) -> bool:
    return any(
        getattr(requirements, name) is not None
        for name in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "min_throughput_rps", "min_speedup")
    )
