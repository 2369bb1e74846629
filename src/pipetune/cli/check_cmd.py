"""``pipetune check TARGET --baseline RUN_OR_RECIPE``: a regression gate for CI.

The *baseline* is TARGET with a known-good recipe applied: a recipe file, or the recipe of
a recorded run. The *current* pipeline is TARGET as the code builds it now (with
``--recipe FILE`` applied when production loads one). Both are re-run here, side by side in
paired ABBA rounds on TARGET's workload, and the check fails (exit 1) when the current
pipeline's P99 or throughput is worse than the baseline's beyond the measured noise (the
interval of the ratio lies entirely below ``1 - tolerance``) or when its outputs drift from
the baseline's beyond the fidelity budget. The differences are printed.

With a run id, the run's stored figures are compared as well — but only when the run was
recorded on this machine (the same fingerprint); figures from another machine are shown and
not judged.

On a busy host (other processes kept this one waiting for a CPU beyond the threshold of
:mod:`pipetune.core.measure.load`) a regression cannot be told from contention: the check
then refuses to call one and exits 2 with the reason, instead of guessing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from pipetune.cli.options import (
    TargetOptions,
    json_file_option,
    recipe_option,
    runs_target,
    timeout_option,
)
from pipetune.cli.render import escape
from pipetune.cli.state import get_state, plugin_problems, stdout_console

EXIT_REGRESSION = 1
#: A regression measured on a busy host is not called: this exit code says so.
EXIT_BUSY_HOST = 2


def register(cli: click.Group) -> None:
    cli.add_command(check)


@dataclass
class Verdict:
    """What the check found: regressions (fail), notes (informational)."""

    regressions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.regressions


def judge(
    comparison: Mapping[str, Any],
    fidelity: Mapping[str, Any] | None,
    *,
    tolerance: float = 0.0,
    stored: Mapping[str, Any] | None = None,
    stored_note: str = "",
) -> Verdict:
    """Decide from a side-by-side comparison (baseline = A, current = B).

    ``stored``: the baseline run's own figures (``throughput_rps``, ``p99_ms`` and their
    relative noise), compared only when recorded on this machine.
    """
    verdict = Verdict(figures={"comparison": dict(comparison)})
    speed, ci = comparison["speedup"], comparison["ci"]
    shown = comparison.get("quantiles_shown") or {}
    for key, label in (("throughput", "throughput"), ("p99", "P99 latency")):
        if shown.get(key) is False:  # too few latency samples: not a tail figure
            samples = comparison.get("samples_per_side")
            verdict.notes.append(f"{label}: n/a ({samples} samples), not judged")
            continue
        low, high = ci[key]
        text = f"{label}: {speed[key]:.2f}x [{low:.2f}, {high:.2f}] of the baseline"
        if high < 1.0 - tolerance:
            verdict.regressions.append(f"{text} — worse beyond the measured noise")
        else:
            verdict.notes.append(text)
    if fidelity is not None:
        threshold = fidelity.get("threshold")
        text = f"fidelity against the baseline: {fidelity['metric']} {fidelity['value']:.4f}"
        if threshold is not None and fidelity["value"] < threshold:
            verdict.regressions.append(f"{text} < {threshold:.4f}")
        else:
            verdict.notes.append(text)
    if stored is not None:
        current = comparison["b"]
        for key, measured, better in (
            ("throughput_rps", current["throughput_rps"], "higher"),
            ("p99_ms", current["latency_ms"]["p99"], "lower"),
        ):
            recorded = stored.get(key)
            if not recorded:
                continue
            noise = float(stored.get("noise", {}).get(key, 0.1))
            ratio = measured / recorded
            worse = (
                ratio < 1 - noise - tolerance
                if better == "higher"
                else (ratio > 1 + noise + tolerance)
            )
            text = (
                f"{key} now {measured:.4g} against {recorded:.4g} recorded "
                f"({ratio:.2f}x, noise ±{noise:.0%})"
            )
            (verdict.regressions if worse else verdict.notes).append(text)
    elif stored_note:
        verdict.notes.append(stored_note)
    return verdict


@click.command()
@runs_target
@click.option(
    "--baseline",
    "baseline_ref",
    required=True,
    metavar="RUN_OR_RECIPE",
    help="A recipe file, or a run id (or `latest`) from the run store.",
)
@recipe_option("Apply this recipe to the current pipeline too (what production loads).")
@click.option(
    "--tolerance",
    type=click.FloatRange(min=0, max=1),
    default=0.0,
    show_default=True,
    help="Extra slack on top of the measured noise (0.05 = 5 %).",
)
@click.option("--rounds", type=click.IntRange(min=2), metavar="N", help="ABBA rounds (default 8).")
@click.option(
    "--max-run-queue-wait",
    "max_wait",
    type=click.FloatRange(min=0, max=1),
    default=0.10,
    show_default=True,
    metavar="SHARE",
    help="Above this run-queue wait (the share of time this process waited for a CPU) the "
    "host counts as busy and a regression is not called (exit 2).",
)
@json_file_option("Write the verdict and the figures as JSON.")
@timeout_option
@click.pass_context
def check(
    ctx: click.Context,
    target: str | None,
    target_opts: TargetOptions,
    baseline_ref: str,
    recipe_path: Path | None,
    tolerance: float,
    rounds: int | None,
    max_wait: float,
    json_path: Path | None,
) -> int:
    """Fail (exit 1) when TARGET regressed against a baseline recipe or run."""
    from pipetune.cli.render import write_json_atomic
    from pipetune.cli.target import load_target
    from pipetune.core.loop.paths import store_dir
    from pipetune.core.loop.recipes import load_recipe

    state = get_state(ctx)
    pm = state.plugin_manager()
    resolved = load_target(target, target_opts)
    assert resolved.workload is not None
    workload, requirements = resolved.workload, resolved.requirements
    artifacts = store_dir() / "artifacts"

    known = _known_good(baseline_ref)
    baseline = load_recipe(resolved.pipeline, known.recipe, pm=pm, artifacts_dir=artifacts)
    current = resolved.pipeline
    if recipe_path is not None:
        current = load_recipe(current, recipe_path, pm=pm, artifacts_dir=artifacts)

    measured = _side_by_side(baseline, current, workload, requirements, rounds)
    fidelity = _fidelity(pm, baseline, current, workload, requirements)
    verdict = judge(
        measured.to_dict(),
        fidelity,
        tolerance=tolerance,
        stored=known.stored,
        stored_note=known.stored_note,
    )
    host_load = dict(measured.host_load or {})
    busy = busy_reason(host_load, max_wait) if not verdict.passed else ""
    _print_verdict(
        f"{resolved.pipeline.name} with {known.origin}", current.name, measured, verdict, busy
    )
    if json_path is not None:
        write_json_atomic(json_path, _verdict_json(known, measured, fidelity, verdict, busy, state))
        state.written.append(str(json_path))
    if busy:
        return EXIT_BUSY_HOST
    return 0 if verdict.passed else EXIT_REGRESSION


@dataclass(frozen=True)
class _KnownGood:
    """The baseline's recipe, where it came from, and its run's figures when comparable."""

    recipe: Any
    origin: str
    stored: dict[str, Any] | None = None
    stored_note: str = ""


def _known_good(baseline_ref: str) -> _KnownGood:
    """``--baseline``: a recipe file, or a stored run's recipe (and figures, same machine)."""
    from pipetune.core.kernel.results import Recipe
    from pipetune.core.runtime.machine import detect_machine

    if Path(baseline_ref).is_file():
        return _KnownGood(Recipe.load(baseline_ref), f"recipe {baseline_ref}")
    from pipetune.core.loop.store import RunStore

    with RunStore() as store:
        run = store.run(baseline_ref)
        recipe = store.recipe(run.id) or Recipe(pipeline=run.pipeline, changes=())
    origin = f"run {run.id}"
    if run.machine_fingerprint == detect_machine().fingerprint:
        return _KnownGood(recipe, origin, stored=_stored_figures(run.report or {}))
    stored_note = (
        f"the run was recorded on another machine ({run.machine_fingerprint}): its "
        "stored figures are not compared; the side-by-side re-run is the check"
    )
    return _KnownGood(recipe, origin, stored_note=stored_note)


def _side_by_side(
    baseline: Any, current: Any, workload: Any, requirements: Any, rounds: int | None
) -> Any:
    """Baseline and current timed in paired ABBA rounds on the workload (``--rounds``)."""
    from pipetune.core.measure.comparison import CompareSettings, compare
    from pipetune.core.measure.timed_pass import RuntimeSpec

    settings = CompareSettings(rounds=rounds) if rounds else CompareSettings()
    return compare(
        baseline,
        current,
        workload.items,
        metric=requirements.metric,
        runtime=RuntimeSpec.from_workload(workload),
        settings=settings,
    )


def _verdict_json(
    known: _KnownGood,
    measured: Any,
    fidelity: dict[str, Any],
    verdict: Verdict,
    busy: str,
    state: Any,
) -> dict[str, Any]:
    """``--json``: the verdict (undecided on a busy host) and every figure it rests on."""
    return {
        "passed": None if busy else verdict.passed,
        "undecided": busy or None,
        "baseline": known.origin,
        "regressions": verdict.regressions,
        "notes": verdict.notes,
        "comparison": measured.to_dict(),
        "inputs_timed": measured.inputs_timed,
        "inputs_total": measured.inputs_total,
        "samples_per_side": measured.samples_per_side,
        "host_load": dict(measured.host_load or {}),
        "fidelity": fidelity,
        "stored": known.stored,
        "warnings": plugin_problems(state),
    }


def _print_verdict(baseline: str, current: str, measured: Any, verdict: Verdict, busy: str) -> None:
    """The verdict on stdout, with what it rests on (coverage, host load); on a busy host
    the regressions are listed as not judged."""
    console = stdout_console()
    console.print(f"baseline: {baseline}; current: {current}", markup=False)
    console.print(f"  {measured.coverage}", markup=False)
    if measured.coverage_note:
        console.print(f"  {measured.coverage_note}", markup=False)
    console.print(f"  {format_host_load(dict(measured.host_load or {}))}", markup=False)
    for line in verdict.notes:
        console.print(f"  ok: {line}", markup=False)
    for line in verdict.regressions:
        label = "[yellow]NOT JUDGED:[/yellow]" if busy else "[red]REGRESSION:[/red]"
        console.print(f"  {label} {escape(line)}")
    if busy:
        console.print(f"[yellow]check undecided: {escape(busy)}[/yellow]")
    else:
        passed = verdict.passed
        console.print("[green]check passed[/green]" if passed else "[red]check failed[/red]")


def busy_reason(host_load: Mapping[str, Any], threshold: float = 0.10) -> str:
    """Why a regression measured under ``host_load`` is not called ('' on a quiet host)."""
    from pipetune.core.measure.load import describe, judged_busy

    if not judged_busy(host_load, threshold):
        return ""
    return (
        f"the host was busy while measuring ({describe(host_load)}, above the "
        f"{threshold:.0%} run-queue wait threshold): a slowdown cannot be told from "
        "contention, so no regression is called; re-run the check on a quiet machine"
    )


def format_host_load(host_load: Mapping[str, Any]) -> str:
    from pipetune.core.report.format import host_load as describe_host_load

    return describe_host_load(host_load) or "host load: not measured"


def _stored_figures(report: Mapping[str, Any]) -> dict[str, Any] | None:
    """The run's final figures and their relative noise (from its side-by-side CI)."""
    comparison = report.get("comparison")
    if comparison:
        b = comparison["b"]
        noise = {}
        for key, metric in (("throughput_rps", "throughput"), ("p99_ms", "p99")):
            low, high = comparison["ci"][metric]
            point = comparison["speedup"][metric]
            # Figures recorded at another moment drift more than a paired comparison:
            # the band is the interval's full relative width, at least 10 %.
            noise[key] = max(0.1, (high - low) / point) if point else 0.25
        return {
            "throughput_rps": b["throughput_rps"],
            "p99_ms": b["latency_ms"]["p99"],
            "noise": noise,
        }
    final = report.get("final")
    if not final:
        return None
    return {
        "throughput_rps": final["throughput_rps"],
        "p99_ms": final["latency_ms"]["p99"],
        "noise": {"throughput_rps": 0.25, "p99_ms": 0.25},
    }


def _fidelity(pm, baseline, current, workload, requirements) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from pipetune.core.kernel import control
    from pipetune.core.kernel.state import reset_state
    from pipetune.core.measure.fidelity import compare as compare_outputs
    from pipetune.core.runtime.offline import run_offline

    outputs = []
    for pipeline in (baseline, current):
        reset_state(pipeline)
        outputs.append(control.complete(run_offline(pipeline, workload.items)).outputs)
    result = compare_outputs(pm, baseline.output_kind, outputs[0], outputs[1], workload.labels)
    return result.evolve(threshold=1.0 - requirements.max_accuracy_drop).to_dict()
