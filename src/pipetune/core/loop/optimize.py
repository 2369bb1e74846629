"""The optimize loop: profile, propose, try the best first, keep what is proven, repeat.

::

    profile ─► plan (ranked proposals) ─► try the best: tune ─► materialize ─► validate
       ▲                                        │ rejected: try the next one
       └──────── accepted: re-profile ◄─────────┘ (the bottleneck moves)

Greedy by design: after each accepted change the pipeline is profiled again and the
plugins propose again, because the best next change depends on where the time goes *now*.
The loop stops when the requirements hold, when nothing is left worth trying, or when the
budget (``max_trials``, ``time_budget_s``) is spent; it keeps the best pipeline found
either way (every accepted change was proven faster, so the last one is the best), and
re-measures it side by side against the original. Every finished trial is written to the
run store the moment it completes; a run interrupted with Ctrl-C keeps them and still
produces its report.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pipetune.core.kernel import control
from pipetune.core.kernel.artifacts import ArtifactStore
from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import ConfigError, PipetuneError, StageError, StoreError
from pipetune.core.kernel.model import Pipeline, Requirements, Workload
from pipetune.core.kernel.results import ExecutionContext, Profile, Proposal, Trial
from pipetune.core.kernel.state import reset_state
from pipetune.core.loop import planner, untried
from pipetune.core.loop.overlap import find_overlap
from pipetune.core.loop.paths import store_dir
from pipetune.core.loop.recipes import make_recipe
from pipetune.core.loop.remeasure import confirm_beyond_ceiling
from pipetune.core.loop.store import RunStore
from pipetune.core.measure import execution
from pipetune.core.measure.comparison import compare
from pipetune.core.measure.comparison_result import Comparison
from pipetune.core.measure.coverage import merge_in_flight
from pipetune.core.measure.fidelity_gate import items_needed, unproven_sentence
from pipetune.core.measure.load import HostLoadMeter, noisy_warning
from pipetune.core.measure.timed_pass import RuntimeSpec
from pipetune.core.measure.validator import Outcome, Validator, ValidatorSettings
from pipetune.core.report.model import Report, quantiles
from pipetune.core.runtime.machine import detect_machine
from pipetune.core.runtime.offline import run_offline
from pipetune.core.runtime.threads import pin_threads, use_plugin_pools

if TYPE_CHECKING:
    from pipetune.core.kernel.manager import PipetunePluginManager

#: CLI exit code when the loop finished but the requirements still do not hold.
EXIT_REQUIREMENTS_UNMET = 3
#: Below this many inputs the workload is not split: tuned and validated on the same items.
MIN_SPLIT_ITEMS = 20
#: The calibration split (static int8 scales, a quantized model's ranges) is this share of
#: the tuning split, at most :data:`CALIBRATION_MAX_ITEMS` inputs.
CALIBRATION_FRACTION = 0.2
CALIBRATION_MAX_ITEMS = 32
#: Output kinds whose fidelity is a proportion (a gate needs enough items to be proven).
PROPORTION_KINDS = ("labels", "ranked_ids", "tokens", "token_ids", "frame_labels")


class Optimized(NamedTuple):
    """What :func:`optimize` returns: unpack as ``pipeline, report = optimize(...)``."""

    pipeline: Pipeline
    report: Report


@dataclass(frozen=True)
class LoopSettings:
    """Budgets and knobs of the loop.

    Args:
        max_trials: stop after this many trials (accepted or not).
        time_budget_s: start no new trial after this many seconds.
        tune_fraction: the share of the workload used for tuning (a calibration split of
            its own is carved out of it); the rest is held out for validation.
        validator: rounds, confidence, timeouts.
        final_compare: re-measure the final pipeline against the original side by side.
        detailed_profiles: give the baseline and the final pipeline every profiler pass
            (concurrency sweep, hot functions, layers, memory: for the report); profiles
            between trials always take only what planning needs.
        profile_options: extra keyword arguments for every
            :func:`~pipetune.core.measure.profiler.profile` call (``sweep_budget_s``,
            ``threads``...).
        stage_timeout_s: the longest one input may take through a pipeline in any run of
            the loop (per input, never a budget for a whole pass): an input over it is
            stopped with an error naming the stage and the input (a hung stage). The
            validator bounds candidates more tightly, from the measured time per input.
        on_error: ``stop`` (an input the original fails on is an error) or ``skip`` (such
            inputs are set aside before anything is measured, left out of both sides, and
            listed in the report: :mod:`pipetune.core.loop.screening`).
    """

    max_trials: int | None = None
    time_budget_s: float | None = None
    tune_fraction: float = 0.4
    validator: ValidatorSettings = field(default_factory=ValidatorSettings)
    final_compare: bool = True
    detailed_profiles: bool = True
    profile_options: Mapping[str, Any] = field(default_factory=dict)
    stage_timeout_s: float | None = 600.0
    on_error: str = "stop"

    def __post_init__(self) -> None:
        if self.on_error not in ("stop", "skip"):
            raise ConfigError(f"on_error must be 'stop' or 'skip', not {self.on_error!r}")
        if self.max_trials is not None and self.max_trials < 0:
            raise ConfigError("max_trials must be >= 0")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ConfigError("time_budget_s must be positive")


def optimize(
    pipeline: Pipeline,
    workload: Workload,
    requirements: Requirements | None = None,
    *,
    pm: PipetunePluginManager | None = None,
    settings: LoopSettings | None = None,
    max_trials: int | None = None,
    time_budget_s: float | None = None,
    store: RunStore | str | Path | bool | None = None,
    target: str | None = None,
    runtime: RuntimeSpec | None = None,
    log: Callable[[str], None] | None = None,
    baseline_outputs: Sequence[Any] | None = None,
) -> Optimized:
    """Optimize ``pipeline`` on ``workload`` for ``requirements``.

    Returns ``(optimized pipeline, report)``. ``pipeline`` itself is never modified.

    Args:
        pm: the plugin manager (default: every installed plugin).
        settings: budgets and validator settings; ``max_trials``/``time_budget_s``
            override the ones in it.
        store: where to record the run: a :class:`RunStore`, a folder, ``None`` for the
            default (``.pipetune`` or ``$PIPETUNE_HOME``), or ``False`` not to record it
            (artifacts then go to a ``.pipetune/artifacts`` folder all the same).
        target: how the pipeline was named on the command line, stored with the run.
        runtime: the serving model to measure under (default: the workload's mode).
        log: progress messages.
        baseline_outputs: the original pipeline's outputs, one per workload input, when
            they are already known (a demo caches its slow baseline's outputs at set-up);
            fidelity is then measured against them instead of re-running the original.
    """
    from pipetune.core.kernel.manager import get_plugin_manager

    if not isinstance(pipeline, Pipeline):
        raise ConfigError(f"optimize needs a pipetune Pipeline, not {type(pipeline).__name__}")
    if not isinstance(workload, Workload):
        raise ConfigError(f"optimize needs a pipetune Workload, not {type(workload).__name__}")
    requirements = requirements or Requirements()
    settings = settings or LoopSettings()
    if max_trials is not None or time_budget_s is not None:
        settings = dataclasses.replace(
            settings,
            max_trials=settings.max_trials if max_trials is None else max_trials,
            time_budget_s=settings.time_budget_s if time_budget_s is None else time_budget_s,
        )
    workload.require_items()
    if baseline_outputs is not None and len(baseline_outputs) != len(workload.items):
        raise ConfigError(
            f"{len(baseline_outputs)} baseline outputs for a workload of {len(workload.items)} "
            "inputs: give one output per input"
        )
    pm = pm or get_plugin_manager()
    run_store, owns_store = _open_store(store)
    try:
        loop = _Loop(
            pm=pm,
            original=pipeline,
            workload=workload,
            requirements=requirements,
            settings=settings,
            store=run_store,
            target=target,
            runtime=runtime or RuntimeSpec.from_workload(workload),
            log=log or (lambda message: None),
            baseline_outputs=baseline_outputs,
        )
        # the caller's token (or a new one); one per-input deadline for every run
        with control.scope(item_timeout_s=settings.stage_timeout_s):
            return loop.run()
    finally:
        if owns_store and run_store is not None:
            run_store.close()


def _open_store(store: RunStore | str | Path | bool | None) -> tuple[RunStore | None, bool]:
    if store is False:
        return None, False
    if isinstance(store, RunStore):
        return store, False
    folder = None if store is None or store is True else store
    return RunStore(folder), True


class _Loop:
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
    ):
        self.pm = pm
        self.baseline_outputs = None if baseline_outputs is None else list(baseline_outputs)
        self.original = original
        self.workload = workload
        self.requirements = requirements
        self.settings = settings
        self.store = store
        self.target = target
        self.runtime = runtime
        self.log = log
        self.artifacts = (
            store.artifacts if store is not None else ArtifactStore(store_dir() / "artifacts")
        )
        self.warnings: list[str] = []
        self.trials: list[Trial] = []
        self.accepted: list[tuple[Proposal, Trial]] = []
        self.proposals: dict[str, dict[str, Any]] = {}
        # for the untried proposals' reasons: the keys of the last plan, and the round
        # (changes kept before it) of the last plan that listed each key
        self._last_plan: set[str] = set()
        self._planned_round: dict[str, int] = {}
        self.run_id: str | None = None
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
    def run(self) -> Optimized:
        machine = detect_machine()
        if self.store is not None:
            self.run_id = self.store.start_run(
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
                tune, calibration, holdout = self._split()
                report = self._run(tune, calibration, holdout)
            status = "interrupted" if report.stopped == "interrupted" else "finished"
            return Optimized(self._final_pipeline, report)
        except KeyboardInterrupt:
            status = "interrupted"  # before anything was measured: nothing to report
            raise
        finally:
            if self.store is not None and self.run_id is not None:
                report_data = None  # (the write below is guarded: a store error loses nothing)
                summary: dict[str, Any] = {"trials": len(self.trials)}
                if self._report is not None:
                    report_data = self._report.to_dict()
                    summary.update(
                        accepted=len(self.accepted),
                        requirements_met=self._report.requirements_met,
                        speedup=report_data["speedup"],
                        metric=self.requirements.metric,
                        stopped=self._report.stopped,
                        baseline=report_data["baseline"],
                        final=report_data["final"],
                    )
                self._record("finish_run", self.run_id, status, summary=summary, report=report_data)

    def _run(self, tune: Workload, calibration: Workload, holdout: Workload) -> Report:
        meter = HostLoadMeter().start()
        self.execution = execution.capture(
            calling=_calling(self.runtime), mode=self.runtime.mode, requested=self.runtime.threads
        )
        self._check_splits(tune, holdout)
        self.log(f"profiling {self.original.name} on {len(self.workload)} inputs")
        baseline = self._profile(self.original, full=True)
        self._store_profile("baseline", baseline)
        self.warnings.extend(baseline.warnings)
        self._note_hook_failures()

        self._current, self._current_profile = self.original, baseline
        self._baseline_throughput = baseline.throughput_rps
        cached_tune, cached_holdout = self._cached_outputs()
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
        self._note_untried(stopped)
        current = self._current
        current_profile = self._current_profile
        comparison = None
        if current is not self.original and stopped != "interrupted":
            try:
                self.log("profiling the final pipeline")
                current_profile = self._profile(current, full=True)
                self._store_profile("final", current_profile)
                _checkpoint(current_profile)
                if self.settings.final_compare:
                    comparison = self._final_compare(current, holdout)
            except KeyboardInterrupt:
                stopped = "interrupted"
                self.warnings.append(
                    "interrupted during the final measurement: the figures are the last "
                    "profile's, not a side-by-side re-measurement"
                )
        misses, stopped = self._misses(baseline, current_profile, comparison, stopped)
        fidelity = self.accepted[-1][1].fidelity if self.accepted else None
        host_load = meter.stop().to_dict()
        noisy = noisy_warning(host_load, "figures of this run")
        if noisy:
            self.warnings.append(noisy)
        # the thread plan in force on the kept pipeline: load_recipe puts it back per stage
        self.execution = self.execution.evolve(stages=execution.stage_plans(current))
        self._note_hook_failures()  # the ones since the last profile too
        recipe = make_recipe(
            self.original,
            [t.change for _, t in self.accepted if t.change],
            fidelity,
            execution=self.execution,
        )
        if self.store is not None and self.run_id is not None:
            self._record("add_recipe", self.run_id, recipe)
        self._final_pipeline = current
        self._report = Report(
            pipeline=self.original.name,
            machine=baseline.machine,
            requirements=self.requirements,
            baseline=baseline,
            final=current_profile,
            trials=tuple(self.trials),
            proposals=tuple(self.proposals.values()),
            comparison=comparison,
            requirements_met=not misses,
            misses=tuple(misses),
            stopped=stopped,
            recipe=recipe,
            fidelity=fidelity,
            run_id=self.run_id,
            runtime=self.runtime.describe(),
            workload={
                **self.workload.describe(),
                "tune_items": len(tune),
                "calibration_items": len(calibration),
                "holdout_items": len(holdout),
                "holdout_overlap": self.overlap,
            },
            host_load=host_load,
            execution=self.execution.to_dict(),
            warnings=tuple(dict.fromkeys(self.warnings)),
            skipped=self.skipped,
            duration_s=time.monotonic() - self.started,
            created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        )
        return self._report

    def _misses(
        self,
        baseline: Profile,
        final: Profile,
        comparison: Mapping[str, Any] | None,
        stopped: str,
    ) -> tuple[list[str], str]:
        """The requirements the final pipeline misses, and why the loop stopped, in words
        that do not contradict them (a gate left unproven is not a requirement met)."""
        speedup = _ratio(final.throughput_rps, baseline.throughput_rps)
        if comparison is not None:  # side by side beats two profiles taken apart
            speedup = comparison.get("speedup", {}).get("throughput", speedup)
        misses = self.requirements.check(final.throughput_rps, _latency_dict(final), speedup)
        fidelity = self.accepted[-1][1].fidelity if self.accepted else None
        if fidelity is not None and fidelity.unproven:
            misses.append(f"fidelity gate unproven: {unproven_sentence(fidelity)}")
            if stopped == "requirements met":
                stopped = "speed requirements met; the fidelity gate is unproven"
        return misses, stopped

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
                _latency_dict(current_profile),
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
        if self.store is not None and self.run_id is not None:
            self._record("add_trial", self.run_id, len(self.trials), trial)
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
        return _ratio(profile.throughput_rps, self._baseline_throughput)

    def _accept(self, proposal: Proposal, trial: Trial, candidate: Pipeline) -> None:
        self.accepted.append((proposal, trial))
        self._current = candidate
        self.log(f"re-profiling after {proposal.id}")
        self._current_profile = self._profile(candidate, full=False)
        self._store_profile(f"after {proposal.id}", self._current_profile)
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
        """The workload index of each held-out input (as :meth:`_split` splits)."""
        if len(self.workload) < MIN_SPLIT_ITEMS:
            return list(self.item_ids)
        _, _, holdout = self._split_indices()
        return [self.item_ids[i] for i in holdout]

    def _split(self) -> tuple[Workload, Workload, Workload]:
        """(tune, calibration, held-out) workloads; see :meth:`_split_indices`."""
        n = len(self.workload)
        if n < MIN_SPLIT_ITEMS:
            self.warnings.append(
                f"the workload has {n} inputs, too few to hold out a validation split: "
                "changes are tuned, calibrated and validated on the same inputs"
            )
            return self.workload, self.workload, self.workload
        tune, calibration, holdout = self._split_indices()
        name = self.workload.name
        return (
            self.workload.subset(tune, name=f"{name}[tune]"),
            self.workload.subset(calibration, name=f"{name}[calibration]"),
            self.workload.subset(holdout, name=f"{name}[holdout]"),
        )

    def _split_indices(self) -> tuple[list[int], list[int], list[int]]:
        """Tune, calibration and held-out item indices (group-aware when the workload has
        groups). The calibration split is carved out of the tuning share: it is never
        evaluated on, by the tune steps or by the validator."""
        tune, holdout = self.workload.split_indices(self.settings.tune_fraction)
        share = min(CALIBRATION_FRACTION, CALIBRATION_MAX_ITEMS / max(len(tune), 1))
        part = self.workload.subset(tune)
        if len(tune) < 4 or (part.group_count is not None and part.group_count < 2):
            said = (
                "the tuning split is too small to spare a calibration split: calibration "
                "draws from the tuning split"
            )
            if said not in self.warnings:  # the split is computed more than once
                self.warnings.append(said)
            return tune, tune, holdout
        calibration, rest = part.split_indices(share, seed=self.workload.seed + 1)
        return [tune[i] for i in rest], [tune[i] for i in calibration], holdout

    def _check_splits(self, tune: Workload, holdout: Workload) -> None:
        """Exact duplicates across the split, and whether the held-out split can prove
        the fidelity gate at all (a workload too small says so, with the number needed)."""
        if tune is not holdout:
            overlap = find_overlap(tune.items, holdout.items)
            self.overlap = overlap.to_dict()
            if overlap.warning():
                self.warnings.append(overlap.warning())
        floor = 1.0 - self.requirements.max_accuracy_drop
        needed = items_needed(floor)
        if self.original.output_kind in PROPORTION_KINDS and needed > len(holdout):
            share = 1.0 - self.settings.tune_fraction
            self.warnings.append(
                f"the held-out split has {len(holdout)} inputs; the {floor:.1%} fidelity gate "
                f"needs at least {needed} (with none disagreeing) to be proven, so any kept "
                f"change's gate will be reported unproven: give the workload at least "
                f"{int(needed / share) + 1} inputs ({share:.0%} are held out)"
            )

    def _cached_outputs(self) -> tuple[list[Any] | None, list[Any] | None]:
        """The given baseline outputs for the (tune, held-out) split, as :meth:`_split`
        splits the workload."""
        if self.baseline_outputs is None:
            return None, None
        outputs = self.baseline_outputs
        if len(self.workload) < MIN_SPLIT_ITEMS:
            return list(outputs), list(outputs)
        tune, _, holdout = self._split_indices()
        return [outputs[i] for i in tune], [outputs[i] for i in holdout]

    def _outputs(self, pipeline: Pipeline, workload: Workload) -> list[Any]:
        reset_state(pipeline)
        return list(control.complete(run_offline(pipeline, workload.items)).outputs)

    def _final_compare(self, final: Pipeline, holdout: Workload) -> dict[str, Any] | None:
        self.log("re-measuring the final pipeline against the original, side by side")
        needs = [t.change.in_flight for _, t in self.accepted if t.change is not None]
        settings = replace(
            self.settings.validator.compare,
            in_flight=merge_in_flight(self.settings.validator.compare.in_flight, *needs),
        )
        try:
            result = compare(
                self.original,
                final,
                holdout.items,
                metric=self.requirements.metric,
                runtime=self.runtime,
                settings=settings,
            )
        except PipetuneError as exc:
            if isinstance(exc, StageError):
                exc = exc.renumbered(self._holdout_ids())
            self.warnings.append(f"the final side-by-side measurement failed: {exc}")
            return None
        data = result.to_dict()
        data["cdf_ms"] = {
            "before": quantiles(result.latencies_ms["a"]),
            "after": quantiles(result.latencies_ms["b"]),
        }
        return data

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
        """The plan's proposals into the report, each with the profile its estimate is
        on. A proposal already tried keeps the entry it was tried with, so the report
        shows one estimate per proposal: the one its trial carries."""
        tried = self._tried()
        label = self._profile_label()
        self._last_plan = {ranked.key for ranked in plan.all()}
        for ranked in plan.all():
            if ranked.key in tried:
                continue
            entry = dict(planner.describe(ranked))
            entry["estimated_on"] = label
            self.proposals[ranked.key] = entry
            self._planned_round[ranked.key] = len(self.accepted)
        for ranked, reason in plan.excluded:
            if ranked.key not in tried:
                self.proposals[ranked.key]["excluded"] = reason
        for failure in plan.failures:
            self.warnings.append(failure.message)

    def _profile_label(self) -> str:
        """The profile plans are made on now, named as the run store names it."""
        return f"after {self.accepted[-1][0].id}" if self.accepted else "baseline"

    def _note_untried(self, stopped: str) -> None:
        """Every proposal the loop did not try gets the true reason (``not_tried``)."""
        reasons = untried.reasons(
            self.proposals,
            tried=self._tried(),
            last_plan=self._last_plan,
            planned_round=self._planned_round,
            accepted=[proposal.id for proposal, _ in self.accepted],
            stopped=stopped,
        )
        for key, reason in reasons.items():
            self.proposals[key]["not_tried"] = reason

    def _note_hook_failures(self) -> None:
        """Plugin problems (load failures, hook failures) into the report's warnings."""
        problems = getattr(self.pm, "problems", None)
        messages = problems() if problems else [f.message for f in self.pm.hook_failures]
        for message in messages:
            if message not in self.warnings:
                self.warnings.append(message)

    def _store_profile(self, label: str, profile: Profile) -> None:
        if self.store is not None and self.run_id is not None:
            self._record("add_profile", self.run_id, label, profile)

    def _record(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Write to the run store; if it fails mid-run (locked for longer than its timeout,
        the disk full), say so and go on: the run itself, its report and its recipe are
        not lost because the record could not be written."""
        if self.store is None:
            return
        try:
            getattr(self.store, method)(*args, **kwargs)
        except StoreError as exc:
            self.warnings.append(
                f"the run store could not be written ({exc}); the rest of this run is not "
                "recorded there, but the report and the recipe are produced as usual"
            )
            self.log(f"run store: {exc}")
            self.store = None


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


def _ratio(value: float, base: float | None) -> float | None:
    return value / base if base else None


def _latency_dict(profile: Profile) -> dict[str, float]:
    lat = profile.latency_ms
    return {"p50": lat.p50, "p95": lat.p95, "p99": lat.p99, "max": lat.max}
