"""Recipes: the accepted changes of a run, re-applied without re-tuning or rebuilding.

A :class:`~pipetune.core.kernel.results.Recipe` lists the accepted changes in order, each with
its tuned parameters and the artifacts its tune step built (paths relative to the
artifact store). :func:`load_recipe` re-applies them through each owner's
change type (``materialize``), which reloads the artifacts (a built index, an exported
model) instead of rebuilding them. Each change records its params schema version: a
recipe saved under an older version is migrated by the plugin's registered migrations,
and one saved under a newer or unknown version is refused naming the change, the recipe
and both versions. This is production start-up::

    pipeline = pipetune.load_recipe(build_pipeline(), "recipe.json")

A recipe made for another pipeline is refused with the stage it needs and does not find.
A recipe also records the thread and runtime settings its figures were measured under
(:class:`~pipetune.core.kernel.results.ExecutionContext`); :func:`load_recipe` applies a
pinned setting to the loading process and warns, naming both settings, when the process
differs (:func:`pipetune.core.measure.execution.reconcile`).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipetune.core.kernel.errors import ConfigError, PipelineError, PipetuneError, PluginError
from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.results import ALL_STAGES, Change, ExecutionContext, Fidelity, Recipe
from pipetune.core.loop.paths import store_dir
from pipetune.core.runtime.machine import detect_machine

if TYPE_CHECKING:
    from pipetune.core.kernel.manager import PipetunePluginManager
    from pipetune.core.measure.execution import Policy


def make_recipe(
    original: Pipeline,
    changes: Sequence[Change],
    fidelity: Fidelity | None = None,
    *,
    execution: ExecutionContext | None = None,
) -> Recipe:
    """The recipe for ``changes`` accepted on ``original``, measured under ``execution``."""
    from pipetune import __version__

    return Recipe(
        pipeline=original.name,
        changes=tuple(changes),
        stages=original.stage_names,
        machine_fingerprint=detect_machine().fingerprint,
        pipetune_version=__version__,
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        fidelity=fidelity,
        execution=execution,
    )


def as_recipe(recipe: Recipe | str | Path | Mapping[str, Any]) -> Recipe:
    """Accept a Recipe, a path to a recipe JSON file, or its parsed JSON."""
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, str | Path):
        return Recipe.load(recipe)
    if isinstance(recipe, Mapping):
        if "changes" not in recipe:
            raise ConfigError("not a pipetune recipe (no 'changes')")
        return Recipe.from_dict(recipe)
    raise ConfigError(f"expected a Recipe, a path or a mapping, not {type(recipe).__name__}")


def check_recipe(pipeline: Pipeline, recipe: Recipe) -> None:
    """Refuse a recipe made for another pipeline, naming the stage that is missing.

    The recipe records the stage names of the pipeline it was made on; every stage a
    change touches must exist in ``pipeline`` by the time that change is applied (a change
    may touch a stage an earlier change inserted).
    """
    names = set(pipeline.stage_names)
    recorded = set(recipe.stages)
    for position, change in enumerate(recipe.changes, start=1):
        if change.stage == ALL_STAGES or change.stage in names:
            continue
        if recorded and change.stage not in recorded:
            continue  # inserted by an earlier change: checked when it is applied
        raise ConfigError(
            f"recipe for pipeline {recipe.pipeline!r} does not fit pipeline "
            f"{pipeline.name!r}: change {position} ({change.proposal}) needs stage "
            f"{change.stage!r}, which is missing (stages: {', '.join(pipeline.stage_names)})"
        )


def apply_changes(
    pm: PipetunePluginManager,
    pipeline: Pipeline,
    changes: Sequence[Change],
    artifacts_dir: str | Path,
    *,
    recipe_name: str = "recipe",
) -> Pipeline:
    """Materialize ``changes`` in order through the change type registered for each id."""
    current = pipeline
    for position, change in enumerate(changes, start=1):
        if change.stage != ALL_STAGES and change.stage not in current.stage_names:
            raise ConfigError(
                f"{recipe_name}: change {position} ({change.proposal}) needs stage "
                f"{change.stage!r}, which is missing from pipeline {current.name!r} "
                f"(stages: {', '.join(current.stage_names)})"
            )
        if pm.get_plugin(change.plugin) is None:
            raise PluginError(
                f"{recipe_name}: change {position} ({change.proposal}) needs plugin "
                f"{change.plugin!r}, which is not loaded"
            )
        try:
            result = pm.materialize(change, current, Path(artifacts_dir), where=recipe_name)
        except (ConfigError, PipelineError, PluginError) as exc:
            if type(exc) not in (ConfigError, PipelineError, PluginError):
                raise  # subclasses with their own constructor (StageError): as they are
            raise type(exc)(f"{recipe_name}: change {position} ({change.proposal}): {exc}") from exc
        except PipetuneError:
            raise  # MissingDependency, Deferred: their message already says what to do
        except Exception as exc:
            raise PluginError(
                f"{recipe_name}: plugin {change.plugin!r} failed to materialize change "
                f"{position} ({change.proposal}): {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(result, Pipeline):
            raise PluginError(
                f"{recipe_name}: plugin {change.plugin!r} did not materialize change "
                f"{position} ({change.proposal}); its materialize returned "
                f"{type(result).__name__}"
            )
        current = result
    return current


def load_recipe(
    pipeline: Pipeline,
    recipe: Recipe | str | Path | Mapping[str, Any],
    *,
    pm: PipetunePluginManager | None = None,
    artifacts_dir: str | Path | None = None,
    execution: Policy = "apply",
) -> Pipeline:
    """Re-apply a saved recipe to ``pipeline`` (production start-up): no tuning, no
    rebuilding of artifacts. ``pipeline`` is not modified; a new pipeline is returned.

    Args:
        recipe: a Recipe, a path to its JSON, or the parsed JSON.
        pm: the plugin manager (default: a fresh one with every installed plugin).
        artifacts_dir: where the recipe's artifacts live (default: the run store's
            ``artifacts`` folder, ``.pipetune/artifacts``).
        execution: what to do with the thread settings the recipe was measured under:
            ``apply`` (default) puts the recorded per-stage thread plan in force on every
            stage it names, sets a pinned count (``--threads N``) on this process and
            warns where the process differs from an unpinned measurement; ``warn`` only
            warns (an :class:`~pipetune.core.measure.execution.ExecutionContextWarning`
            naming both settings); ``ignore`` does neither.
    """
    from pipetune.core.kernel.manager import get_plugin_manager
    from pipetune.core.measure.execution import apply_stages, reconcile
    from pipetune.core.runtime.threads import use_plugin_pools

    loaded = as_recipe(recipe)
    if not isinstance(pipeline, Pipeline):
        raise ConfigError(f"load_recipe needs a pipetune Pipeline, not {type(pipeline).__name__}")
    check_recipe(pipeline, loaded)
    pm = pm or get_plugin_manager()
    folder = Path(artifacts_dir) if artifacts_dir is not None else store_dir() / "artifacts"
    name = recipe if isinstance(recipe, str | Path) else f"recipe for {loaded.pipeline!r}"
    use_plugin_pools(pm)
    applied = apply_changes(pm, pipeline, loaded.changes, folder, recipe_name=str(name))
    if execution == "apply":
        applied = apply_stages(loaded.execution, applied)
    reconcile(loaded.execution, execution, what=str(name), pipeline=applied)
    return applied


def revalidate(
    pm: PipetunePluginManager,
    original: Pipeline,
    applied: Pipeline,
    workload: Any,
    requirements: Any,
    settings: Any = None,
) -> Any:
    """Validate a re-applied recipe as one change against ``original`` on ``workload``:
    fidelity against the original's outputs, speed in paired ABBA rounds. The gate is
    "still faster" (the interval's lower bound above 1) and the fidelity budget.

    Returns the validator's :class:`~pipetune.core.measure.validator.Outcome`.
    """
    from pipetune.core.measure.comparison import CompareSettings
    from pipetune.core.measure.validator import Validator, ValidatorSettings

    validator = Validator(
        pm,
        original,
        workload,
        requirements.evolve(min_gain=0.0),
        artifacts=_artifact_store(),
        settings=ValidatorSettings(compare=settings or CompareSettings()),
    )
    change = Change(proposal="recipe", plugin="recipe", stage=ALL_STAGES)
    return validator.validate(change, original, applied)


def _artifact_store() -> Any:
    from pipetune.core.kernel.artifacts import ArtifactStore

    return ArtifactStore(store_dir() / "artifacts")
