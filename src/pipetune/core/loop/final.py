"""The end of an optimize run: the final measurement, the misses, and the report.

Once the search stops, the kept pipeline is re-measured against the original side by
side on the held-out inputs (two profiles taken apart are not a fair comparison), in a
fresh process built from the pipeline's factory when the loop has one
(:mod:`~pipetune.core.loop.fresh_process`: where the user will run the recipe); the
requirements it still misses are stated in words that do not contradict why the loop
stopped (a fidelity gate left unproven is not a requirement met); and the
:class:`~pipetune.core.report.model.Report` is assembled from what the loop recorded.
"""

from __future__ import annotations

import datetime as _dt
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipetune.core.kernel import control
from pipetune.core.kernel.errors import PipetuneError, StageError
from pipetune.core.kernel.model import Pipeline, Requirements, Workload
from pipetune.core.kernel.results import Fidelity, Profile, Recipe, Trial
from pipetune.core.loop.fresh_process import FreshJob, FreshProcessError, compare_in_fresh_process
from pipetune.core.measure.comparison import CompareSettings, compare
from pipetune.core.measure.comparison_result import Comparison
from pipetune.core.measure.coverage import merge_in_flight
from pipetune.core.measure.fidelity_gate import unproven_sentence
from pipetune.core.measure.timed_pass import RuntimeSpec
from pipetune.core.measure.validator import ValidatorSettings
from pipetune.core.report.model import Report, quantiles

#: Where the final comparison ran when it had no factory to build the pipeline again.
NO_FACTORY = "this process (no factory to build the pipeline in a fresh one)"
#: How ``measured_in`` starts when the final comparison ran in a fresh process.
FRESH = "a fresh process"


@dataclass(frozen=True)
class FreshPlan:
    """How to run the final comparison in a fresh process: the pipeline's ``factory``,
    the run's ``recipe`` and ``artifacts`` folder, the child's environment (the one the
    run started with, before it pinned threads) and its ``sys_path``."""

    factory: str
    recipe: Recipe
    artifacts: Path
    env: Mapping[str, str]
    sys_path: tuple[str, ...] = ()


def final_comparison(
    original: Pipeline,
    final: Pipeline,
    holdout: Workload,
    *,
    accepted: Sequence[Trial],
    requirements: Requirements,
    runtime: RuntimeSpec,
    validator: ValidatorSettings,
    holdout_ids: Sequence[int],
    warnings: list[str],
    log: Callable[[str], None],
    fresh: FreshPlan | None = None,
) -> dict[str, Any] | None:
    """``final`` against ``original`` side by side on the held-out inputs, with every
    in-flight need of the ``accepted`` trials' changes; ``None`` (and a warning) when the
    measurement fails. ``holdout_ids``: the user's index of each held-out input.

    With ``fresh``, the comparison runs in a new process that builds the original from
    its factory and loads the recipe, as a plain script would; when that cannot run, it
    runs here, with a warning saying why."""
    log("re-measuring the final pipeline against the original, side by side")
    needs = [t.change.in_flight for t in accepted if t.change is not None]
    settings = replace(
        validator.compare,
        in_flight=merge_in_flight(validator.compare.in_flight, *needs),
    )
    result, where = None, NO_FACTORY
    if fresh is not None:
        result, where = _in_fresh_process(
            fresh, holdout, requirements, runtime, settings, warnings, log
        )
    try:
        if result is None:
            result = compare(
                original,
                final,
                holdout.items,
                metric=requirements.metric,
                runtime=runtime,
                settings=settings,
            )
    except PipetuneError as exc:
        if isinstance(exc, StageError):
            exc = exc.renumbered(list(holdout_ids))
        warnings.append(f"the final side-by-side measurement failed: {exc}")
        return None
    if not where.startswith(FRESH):
        # a side heavy on fresh memory measures differently in a fresh process: say so
        warnings.extend(result.allocator_notes(("original", "final")))
    data = result.to_dict()
    data["measured_in"] = where
    data["cdf_ms"] = {
        "before": quantiles(result.latencies_ms["a"]),
        "after": quantiles(result.latencies_ms["b"]),
    }
    return data


def _in_fresh_process(
    fresh: FreshPlan,
    holdout: Workload,
    requirements: Requirements,
    runtime: RuntimeSpec,
    settings: CompareSettings,
    warnings: list[str],
    log: Callable[[str], None],
) -> tuple[Comparison | None, str]:
    """The comparison from a fresh process and where it ran, or ``None`` (with a warning
    saying why) and where the comparison will run instead."""
    folder = Path(tempfile.mkdtemp(prefix="pipetune-final-"))
    try:
        recipe = folder / "recipe.json"
        fresh.recipe.save(recipe)
        job = FreshJob(
            factory=fresh.factory,
            recipe=str(recipe),
            artifacts=str(fresh.artifacts.resolve()),
            metric=requirements.metric,
            runtime=runtime,
            settings=settings,
            sys_path=fresh.sys_path,
            item_timeout_s=control.current().item_timeout_s,
        )
        done = compare_in_fresh_process(job, holdout.items, folder=folder, env=fresh.env, log=log)
    except FreshProcessError as exc:
        warnings.append(
            f"the final re-measurement could not run in a fresh process, so it ran in this "
            f"one, whose warm heap and caches can favour either side: {exc}"
        )
        return None, "this process (a fresh one could not run: see the warnings)"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    log(f"fresh process done in {done.seconds:.0f} s")
    return done.comparison, f"{FRESH} that built {fresh.factory} and loaded the recipe"


def requirement_misses(
    requirements: Requirements,
    baseline: Profile,
    final: Profile,
    comparison: Mapping[str, Any] | None,
    fidelity: Fidelity | None,
    stopped: str,
) -> tuple[list[str], str]:
    """The requirements the final pipeline misses, and why the loop stopped, in words
    that do not contradict them (a gate left unproven is not a requirement met).
    ``fidelity``: the last kept change's."""
    speedup = throughput_ratio(final.throughput_rps, baseline.throughput_rps)
    if comparison is not None:  # side by side beats two profiles taken apart
        speedup = comparison.get("speedup", {}).get("throughput", speedup)
    misses = requirements.check(final.throughput_rps, latencies_ms(final), speedup)
    if fidelity is not None and fidelity.unproven:
        misses.append(f"fidelity gate unproven: {unproven_sentence(fidelity)}")
        if stopped == "requirements met":
            stopped = "speed requirements met; the fidelity gate is unproven"
    return misses, stopped


def assemble_report(
    *,
    original: Pipeline,
    requirements: Requirements,
    baseline: Profile,
    final: Profile,
    comparison: dict[str, Any] | None,
    stopped: str,
    trials: Sequence[Trial],
    fidelity: Fidelity | None,
    proposals: Sequence[Mapping[str, Any]],
    recipe: Recipe,
    run_id: str | None,
    runtime: RuntimeSpec,
    workload: Mapping[str, Any],
    host_load: Mapping[str, Any],
    execution: Mapping[str, Any],
    warnings: Sequence[str],
    skipped: tuple[Mapping[str, Any], ...],
    started: float,
) -> Report:
    """The run's report. ``workload``: the workload's description with its splits';
    ``started``: the run's start on the monotonic clock."""
    misses, stopped = requirement_misses(
        requirements, baseline, final, comparison, fidelity, stopped
    )
    return Report(
        pipeline=original.name,
        machine=baseline.machine,
        requirements=requirements,
        baseline=baseline,
        final=final,
        trials=tuple(trials),
        proposals=tuple(proposals),
        comparison=comparison,
        requirements_met=not misses,
        misses=tuple(misses),
        stopped=stopped,
        recipe=recipe,
        fidelity=fidelity,
        run_id=run_id,
        runtime=runtime.describe(),
        workload=workload,
        host_load=host_load,
        execution=execution,
        warnings=tuple(dict.fromkeys(warnings)),
        skipped=skipped,
        duration_s=time.monotonic() - started,
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    )


def describe_workload(
    workload: Workload,
    tune: Workload,
    calibration: Workload,
    holdout: Workload,
    overlap: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The report's ``workload`` entry: the workload's description, with its splits."""
    return {
        **workload.describe(),
        "tune_items": len(tune),
        "calibration_items": len(calibration),
        "holdout_items": len(holdout),
        "holdout_overlap": overlap,
    }


def throughput_ratio(value: float, base: float | None) -> float | None:
    return value / base if base else None


def latencies_ms(profile: Profile) -> dict[str, float]:
    """The profile's latency figures as :meth:`Requirements.check` takes them."""
    lat = profile.latency_ms
    return {"p50": lat.p50, "p95": lat.p95, "p99": lat.p99, "max": lat.max}
