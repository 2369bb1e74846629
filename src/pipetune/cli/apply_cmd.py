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
    artifacts_option,
    json_file_option,
    recipe_option,
    runs_target,
    timeout_option,
)
from pipetune.cli.render import escape
from pipetune.cli.state import get_state, plugin_problems, stdout_console

EXIT_DOES_NOT_HOLD = 1


def register(cli: click.Group) -> None:
    cli.add_command(apply)


@click.command()
@runs_target
@recipe_option("The recipe JSON written by `pipetune optimize`.", required=True, exists=False)
@artifacts_option
@click.option("--no-validate", is_flag=True, help="Only check that the recipe applies.")
@click.option("--rounds", type=click.IntRange(min=2), metavar="N", help="ABBA rounds (default 8).")
@json_file_option("Write the validation as JSON.")
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
        f"[{style}]{'holds' if holds else 'does not hold'}[/{style}]: {escape(trial.reason)}; "
        f"fidelity {escape(fmt.fidelity(trial.fidelity.to_dict() if trial.fidelity else None))}"
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
