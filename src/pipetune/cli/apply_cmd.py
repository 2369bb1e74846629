"""``pipetune apply TARGET --recipe FILE``: re-apply a recipe and re-validate it here.

The recipe's changes are materialized from their parameters and artifacts (no tuning, no
rebuilding), then the result is measured side by side against TARGET as it is and its
outputs compared with TARGET's. Exit 0 when it is still faster and within the fidelity
budget, 1 when it no longer holds (the reason is printed), 2 on a usage error (a recipe
made for another pipeline names the stage it misses).
"""

from __future__ import annotations

from pathlib import Path

import click

from pipetune.cli.options import (
    TargetOptions,
    target_argument,
    target_options,
    threads_option,
    timeout_option,
)
from pipetune.cli.state import get_state, plugin_problems, stdout_console

EXIT_DOES_NOT_HOLD = 1


def register(cli: click.Group) -> None:
    cli.add_command(apply)


@click.command()
@target_argument
@target_options
@threads_option
@click.option(
    "--recipe",
    "recipe_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The recipe JSON written by `pipetune optimize`.",
)
@click.option(
    "--artifacts",
    "artifacts_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the recipe's artifacts are (default: .pipetune/artifacts).",
)
@click.option("--no-validate", is_flag=True, help="Only check that the recipe applies.")
@click.option("--rounds", type=click.IntRange(min=2), metavar="N", help="ABBA rounds (default 8).")
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the validation as JSON.",
)
@timeout_option
@click.pass_context
def apply(
    ctx: click.Context,
    target: str | None,
    target_opts: TargetOptions,
    recipe_path: Path,
    artifacts_dir: Path | None,
    no_validate: bool,
    rounds: int | None,
    json_path: Path | None,
) -> int:
    """Apply a saved recipe to TARGET and re-validate it on TARGET's workload."""
    from pipetune.cli.render import write_json_atomic
    from pipetune.cli.target import load_target
    from pipetune.core.kernel.results import Recipe
    from pipetune.core.loop.paths import store_dir
    from pipetune.core.loop.recipes import load_recipe, revalidate
    from pipetune.core.measure.comparison import CompareSettings
    from pipetune.core.report import format as fmt

    state = get_state(ctx)
    recipe = Recipe.load(recipe_path)
    resolved = load_target(target, target_opts, need_workload=not no_validate)
    pm = state.plugin_manager()
    folder = artifacts_dir or store_dir() / "artifacts"
    applied = load_recipe(resolved.pipeline, recipe, pm=pm, artifacts_dir=folder)
    console = stdout_console()
    console.print(
        f"applied {len(recipe.changes)} change(s) from {recipe_path} to "
        f"{resolved.pipeline.name}: " + ", ".join(c.proposal for c in recipe.changes),
        markup=False,
    )
    if no_validate:
        console.print("applies (not validated: --no-validate)")
        return 0
    assert resolved.workload is not None
    settings = CompareSettings(rounds=rounds) if rounds else CompareSettings()
    outcome = revalidate(
        pm, resolved.pipeline, applied, resolved.workload, resolved.requirements, settings
    )
    trial = outcome.trial
    holds = trial.status == "accepted"
    style = "green" if holds else "red"
    console.print(
        f"[{style}]{'holds' if holds else 'does not hold'}[/{style}]: {_escape(trial.reason)}; "
        f"fidelity {_escape(fmt.fidelity(trial.fidelity.to_dict() if trial.fidelity else None))}"
    )
    if json_path is not None:
        data = {
            "pipeline": resolved.pipeline.name,
            "recipe": str(recipe_path),
            "holds": holds,
            "reason": trial.reason,
            "speedup": trial.speedup,
            "speedup_ci": trial.speedup_ci,
            "fidelity": trial.fidelity.to_dict() if trial.fidelity else None,
            "comparison": outcome.comparison.to_dict() if outcome.comparison else None,
            "warnings": plugin_problems(state),
        }
        write_json_atomic(json_path, data)
        state.written.append(str(json_path))
    return 0 if holds else EXIT_DOES_NOT_HOLD


def _escape(text: str) -> str:
    """Text shown through rich, taken literally (``pipetune[vision]`` is not markup).
    rich is imported here, not at module level: ``pipetune --help`` must stay light."""
    from rich.markup import escape

    return escape(text)
