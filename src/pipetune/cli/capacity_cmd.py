"""``pipetune capacity [TARGET_OR_RUN]``: instances and monthly cost for the growth ahead,
before and after optimization (:mod:`pipetune.core.measure.capacity`).

The source is one of:

* a **run** of the run store (an id, a unique prefix, ``latest``): *before* is its baseline
  profile, *after* its final profile (when a change was kept); the run's requirements
  (growth, latency bounds, cost) are used, options override them;
* a **profile JSON** (``pipetune profile --json``): *before*; ``--after`` gives *after*;
* a **TARGET** (``module:attr`` or ``file.py:attr``): profiled now, offline with a
  concurrency sweep, and its capacity checked with online runs (``--no-measure`` skips
  that); ``--recipe FILE`` applies a recipe for *after*, measured the same way.

Exit codes: 0 the plan; 2 bad input (negative or inconsistent growth figures, no growth, an
unknown run); 3 the latency requirement cannot be met at any rate (one instance is too
slow even when idle).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import replace
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
from pipetune.cli.state import get_state, plugin_problems, stdout_console

EXIT_INFEASIBLE = 3
_RUN_ID = re.compile(r"^\d{8}(-\d{0,6}(-[0-9a-f]{0,6})?)?$")


def register(cli: click.Group) -> None:
    cli.add_command(capacity)


def _growth_option(flag: str, key: str, help_text: str) -> Any:
    return click.option(flag, key, type=float, metavar="RPS", help=help_text)


@click.command()
@runs_target
@_growth_option("--now-rps", "now_rps", "Requests per second now (typical).")
@_growth_option("--peak-rps", "peak_rps", "Requests per second at today's peak.")
@_growth_option("--in-12-months-rps", "in_12_months_rps", "Requests per second in 12 months.")
@_growth_option("--in-24-months-rps", "in_24_months_rps", "Requests per second in 24 months.")
@click.option(
    "--after",
    "after_source",
    metavar="RUN_OR_PROFILE",
    help="The optimized side: a run id (its final profile) or a profile JSON.",
)
@recipe_option("With a TARGET: apply this recipe for the optimized side and measure it too.")
@click.option(
    "--max-utilization",
    type=click.FloatRange(0.05, 0.95),
    default=0.8,
    show_default=True,
    help="Without a latency bound: plan each instance at this share of its best throughput.",
)
@click.option(
    "--spare",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Extra instances per horizon (redundancy, N+1).",
)
@click.option(
    "--measure/--no-measure",
    default=True,
    show_default=True,
    help="With a TARGET: confirm each capacity with online runs at the planned rate.",
)
@json_file_option("Write the plan as JSON.")
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="ray: also plan per-stage workers and nodes of a Ray cluster.",
)
@click.option(
    "--node-cpus",
    type=click.FloatRange(min=0, min_open=True),
    metavar="N",
    help="--engine ray: CPUs per node (default: this machine's).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress messages.")
@timeout_option
@click.pass_context
def capacity(
    ctx: click.Context,
    target: str | None,
    target_opts: TargetOptions,
    now_rps: float | None,
    peak_rps: float | None,
    in_12_months_rps: float | None,
    in_24_months_rps: float | None,
    after_source: str | None,
    recipe_path: Path | None,
    max_utilization: float,
    spare: int,
    measure: bool,
    json_path: Path | None,
    engine: str,
    node_cpus: float | None,
    quiet: bool,
) -> int:
    """Plan instances and monthly cost for TARGET_OR_RUN's growth figures (now, at peak, in
    12 and 24 months), before and after optimization, from the measured throughput per
    instance at the latency requirement; says how throughput scales with concurrency and
    prints every assumption.

    TARGET_OR_RUN is a run id (or `latest`), a profile JSON file, or a TARGET to profile
    now. Exit 0: the plan; 2: bad input (negative or inconsistent growth figures); 3: the
    latency requirement cannot be met at any rate.
    """
    from pipetune.cli.render import progress_messages
    from pipetune.core.measure import capacity as cap

    state = get_state(ctx)
    say = progress_messages(quiet)
    flags = {
        "now_rps": now_rps,
        "peak_rps": peak_rps,
        "in_12_months_rps": in_12_months_rps,
        "in_24_months_rps": in_24_months_rps,
    }
    sides, requirements = _source_sides(target, target_opts, recipe_path, state)
    _add_after(sides, after_source, recipe_path)
    growth = _checked_growth(requirements, flags)  # exit 2 before any measuring
    capacities, profiles = _side_capacities(
        sides, requirements, state, say, max_utilization=max_utilization, measure=measure
    )
    result = cap.plan(growth, capacities, cost_per_hour=requirements.cost_per_hour, spare=spare)
    clusters = _clusters(profiles, growth, node_cpus) if engine == "ray" else {}
    if json_path is not None:
        _write_plan_json(json_path, result, clusters, state)
    render(result)
    for name, plan in clusters.items():
        click.echo(f"{name}: " + "\n".join(plan.lines()))
    return 0 if result.feasible else EXIT_INFEASIBLE


def _source_sides(
    target: str | None, target_opts: TargetOptions, recipe_path: Path | None, state: Any
) -> tuple[dict[str, Any], Any]:
    """TARGET_OR_RUN's sides (a profile, a run's profiles, a TARGET) and its requirements."""
    sides: dict[str, Any] = {}
    if target and _looks_like_profile(target):
        requirements = _requirements(None, target_opts)
        sides["before"] = _profile_file(Path(target))
    elif target and _looks_like_run(target):
        run, profiles = _run(target)
        requirements = _requirements(run.requirements, target_opts)
        sides["before"] = _pick(profiles, "baseline", run.id)
        if "final" in profiles:
            sides["after"] = profiles["final"]
    else:
        from pipetune.cli.target import load_target

        resolved = load_target(target, target_opts)
        requirements = resolved.requirements
        sides["before"] = _TargetSide(resolved.pipeline, resolved.workload, "as built")
        if recipe_path is not None:
            from pipetune.core.loop.recipes import load_recipe

            applied = load_recipe(resolved.pipeline, recipe_path, pm=state.plugin_manager())
            sides["after"] = _TargetSide(applied, resolved.workload, f"recipe {recipe_path}")
    return sides, requirements


def _add_after(sides: dict[str, Any], after_source: str | None, recipe_path: Path | None) -> None:
    """Add ``--after``'s side, refusing it or ``--recipe`` where they clash with the source."""
    if after_source is not None:
        if "after" in sides:
            raise click.UsageError("--after and the source's own optimized side: give one")
        sides["after"] = _after(after_source)
    if recipe_path is not None and not isinstance(sides["before"], _TargetSide):
        raise click.UsageError("--recipe applies to a TARGET; with a run or profile use --after")


def _checked_growth(requirements: Any, flags: Mapping[str, float | None]) -> Any:
    """The growth figures, the options over the requirements', checked (bad ones: exit 2)."""
    from pipetune.core.kernel.model import Requirements
    from pipetune.core.measure.growth import check_growth

    growth_values = dict(vars(requirements.growth)) if requirements.growth else {}
    growth_values.update({k: v for k, v in flags.items() if v is not None})
    growth = check_growth(growth_values or None)
    assert isinstance(requirements, Requirements)
    return growth


def _side_capacities(
    sides: Mapping[str, Any],
    requirements: Any,
    state: Any,
    say: Any,
    *,
    max_utilization: float,
    measure: bool,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each side's capacity per instance, and the profile it is planned from."""
    from pipetune.core.measure import capacity as cap
    from pipetune.core.measure.capacity_online import measure_online

    capacities, profiles = {}, {}
    for name, side in sides.items():
        if isinstance(side, _TargetSide):
            profile = _measure_profile(side, state, say, name)
        else:
            profile = side
        profiles[name] = profile
        say(f"{name}: planning capacity of {profile.pipeline} ({len(profile.stage_ms)} samples)")
        found = cap.instance_capacity(
            profile, requirements, label=name, max_utilization=max_utilization
        )
        if isinstance(side, _TargetSide) and measure and found.feasible:
            say(f"{name}: confirming {found.rps:.1f} req/s with online runs")
            found = measure_online(side.pipeline, side.workload.items, found)
        capacities[name] = found
    return capacities, profiles


def _write_plan_json(json_path: Path, result: Any, clusters: Mapping[str, Any], state: Any) -> None:
    """``--json``: the plan, the Ray cluster plans and the warnings, written atomically."""
    from pipetune.monitor.export import write_json_atomic

    data = result.to_dict()
    if clusters:
        data["ray_cluster"] = {name: plan.to_dict() for name, plan in clusters.items()}
    data["warnings"] = [*plugin_problems(state), *data.get("warnings", ())]
    write_json_atomic(json_path, data)
    state.written.append(str(json_path))


def _clusters(profiles: Mapping[str, Any], growth: Any, node_cpus: float | None) -> dict[str, Any]:
    """Per-stage workers and nodes of a Ray cluster for each side (pipetune.scale.cluster)."""
    from pipetune.scale.cluster import plan_cluster

    cpus = node_cpus or float(os.cpu_count() or 1)
    return {name: plan_cluster(p, growth, node_cpus=cpus) for name, p in profiles.items()}


class _TargetSide:
    def __init__(self, pipeline: Any, workload: Any, what: str):
        self.pipeline, self.workload, self.what = pipeline, workload, what


def _looks_like_profile(ref: str) -> bool:
    return ref.endswith(".json") and Path(ref).is_file()


def _looks_like_run(ref: str) -> bool:
    return ref in ("latest", "last") or bool(_RUN_ID.match(ref))


def _run(ref: str) -> tuple[Any, dict[str, Any]]:
    from pipetune.core.loop.store import RunStore

    with RunStore() as store:
        run = store.run(ref)
        profiles = dict(store.profiles(run.id))
    return run, profiles


def _pick(profiles: Mapping[str, Any], label: str, run_id: str) -> Any:
    from pipetune.core.kernel.errors import ConfigError

    if label not in profiles:
        raise ConfigError(
            f"run {run_id} has no {label!r} profile (stored: {', '.join(profiles) or 'none'})"
        )
    return profiles[label]


def _after(ref: str) -> Any:
    if _looks_like_profile(ref):
        return _profile_file(Path(ref))
    run, profiles = _run(ref)
    return profiles.get("final") or _pick(profiles, "baseline", run.id)


def _profile_file(path: Path) -> Any:
    from pipetune.core.kernel.errors import ConfigError
    from pipetune.core.kernel.results import Profile
    from pipetune.monitor.export import read_json

    data = read_json(path, "profile")
    if not isinstance(data, Mapping) or "stage_ms" not in data or "pipeline" not in data:
        raise ConfigError(f"{path} is not a pipetune profile (from `pipetune profile --json`)")
    try:
        return Profile.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _requirements(stored: Mapping[str, Any] | None, options: TargetOptions) -> Any:
    """Requirements from a run (or the project's config), then the command line's."""
    from pipetune.core.kernel.config import load_config
    from pipetune.core.kernel.errors import ConfigError
    from pipetune.core.kernel.model import Requirements

    if stored:
        base = Requirements.from_dict(stored)
    else:
        config = load_config(options.config) if options.config else load_config()
        try:
            base = Requirements.from_dict(config.requirements)
        except ConfigError as exc:
            raise ConfigError(f"{config.where('requirements')}: {exc}") from None
    given = options.requirements.given()
    return replace(base, **given) if given else base


def _measure_profile(side: _TargetSide, state: Any, say: Any, name: str) -> Any:
    from pipetune.scale.runner import service_profile

    cores = max(1, int(os.cpu_count() or 1))
    levels = tuple(side.workload.concurrency)
    if len(levels) < 2:
        levels = tuple(c for c in (1, 2, 4, 8, 16) if c <= max(2, 2 * cores))
    from pipetune.core.kernel import control

    say(f"{name}: profiling {side.pipeline.name} ({side.what}) offline, sweep {levels}")
    measured = service_profile(side.pipeline, side.workload, state.plugin_manager(), sweep=levels)
    return control.complete(measured)  # a plan from a partial profile would mislead


# -- rendering -----------------------------------------------------------------------------


def render(result: Any) -> None:
    from rich import box
    from rich.table import Table

    console = stdout_console()
    sides = list(result.sides)
    for name, side in result.sides.items():
        predicted = ", ".join(
            f"{_label(k)} {v:.1f} ms" for k, v in side.predicted_ms.items() if k != "max"
        )
        per = f"{side.rps:.1f} req/s" if side.feasible else "[red]none[/]"
        console.print(
            f"[bold]{name}[/] ({side.pipeline}): {per} per instance with {side.workers} "
            f"worker(s), {side.utilization:.0%} of the swept throughput; predicted {predicted}"
        )
        console.print(f"  [dim]method: {side.method}[/]")
        if side.measured:
            m = side.measured
            lat = ", ".join(f"{_label(k)} {v:.1f} ms" for k, v in m["latency_ms"].items())
            console.print(
                f"  measured online at {m['rate_rps']:.1f} req/s: {lat} — "
                + ("held" if m["held"] else "[red]did not hold[/]")
            )
        console.print(f"  scaling: {side.scaling.sentence}")
    table = Table(box=box.SIMPLE_HEAD, title="instances and monthly cost", title_justify="left")
    table.add_column("horizon")
    table.add_column("req/s", justify="right")
    for name in sides:
        table.add_column(f"instances {name}", justify="right")
    for name in sides:
        table.add_column(f"monthly {name}", justify="right")
    if "before" in sides and "after" in sides:
        table.add_column("saving", justify="right")
    for horizon in result.horizons:
        row = [horizon.name + (" *" if horizon.derived else ""), f"{horizon.rps:,.1f}"]
        row += [_count(horizon.instances[name]) for name in sides]
        row += [_money(horizon.monthly_cost[name]) for name in sides]
        if "before" in sides and "after" in sides:
            before, after = horizon.monthly_cost["before"], horizon.monthly_cost["after"]
            row.append(_money(before - after) if before is not None and after is not None else "-")
        table.add_row(*row)
    console.print(table)
    console.print("[bold]assumptions[/]")
    for assumption in result.assumptions:
        console.print(f"  - {assumption}")
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")


def _label(key: str) -> str:
    return "P99.9" if key == "max" else key.upper()


def _count(value: int | None) -> str:
    return "[red]n/a[/]" if value is None else f"{value:,}"


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"
