"""The host side of the change and output-kind contract: dispatch by id, never by order.

Plugins register :class:`~pipetune.core.kernel.registry.ChangeType` records
(``register_changes``) and :class:`~pipetune.core.kernel.registry.OutputKind` records
(``register_output_kinds``). This module merges them (a second registration of an id or a
kind is a :class:`~pipetune.core.kernel.errors.DuplicateError` naming both plugins) and
dispatches:

* :func:`tune` and :func:`materialize` to the change type registered for the proposal's
  id, checking its owner and its typed params (migrating a recipe's older params);
* :func:`compare_outputs` to the one plugin that registered the output kind, recording who
  judged in the :class:`~pipetune.core.kernel.results.Fidelity`;
* :func:`gate`: a plugin's own threshold may tighten the user's fidelity budget, never
  loosen it.

Plugins written before this contract implement ``tune_proposal``, ``materialize_change``
and ``compare_outputs`` instead; they are still called, owner only, for ids and kinds that
no plugin registers, with a :class:`DeprecationWarning`.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pipetune.core.kernel.errors import PluginError
from pipetune.core.kernel.params import check_params, migrate_params, schema_fields
from pipetune.core.kernel.registry import ChangeType, OutputKind
from pipetune.core.kernel.results import Change, Fidelity, Proposal, Tuned

if TYPE_CHECKING:
    from pipetune.core.kernel.context import TuneContext
    from pipetune.core.kernel.manager import PipetunePluginManager
    from pipetune.core.kernel.model import Pipeline, Workload

T = TypeVar("T")

_LEGACY_HOOKS = ("tune_proposal", "materialize_change", "compare_outputs")
_warned: set[tuple[str, str]] = set()


# -- registries ------------------------------------------------------------------------------


def change_types(pm: PipetunePluginManager) -> dict[str, ChangeType]:
    """Every registered change type by id, each with its ``owner`` set."""
    return _cached(pm, "register_changes", _check_change_type, lambda c: c.id, "change type")


def output_kinds(pm: PipetunePluginManager) -> dict[str, OutputKind]:
    """Every registered output kind by name, each with its ``owner`` set."""
    return _cached(pm, "register_output_kinds", _check_output_kind, lambda k: k.name, "output kind")


def change_type(pm: PipetunePluginManager, change_id: str) -> ChangeType | None:
    return change_types(pm).get(change_id)


def _cached(
    pm: PipetunePluginManager,
    hook: str,
    check: Callable[[str, Any], Any],
    key: Callable[[Any], str],
    what: str,
) -> dict[str, Any]:
    """Merge a ``register_*`` hook's records once per set of loaded plugins."""
    plugins = tuple(sorted((name, id(plugin)) for name, plugin in pm.list_name_plugin()))
    cache: dict[str, tuple[Any, dict[str, Any]]] = pm.__dict__.setdefault("_contract_cache", {})
    if hook in cache and cache[hook][0] == plugins:
        return cache[hook][1]
    from pipetune.core.kernel.manager import merge_unique

    merged: dict[str, tuple[str, Any]] = {}
    for plugin_name, records in pm.call_each(hook):
        for record in records:
            if not isinstance(record, ChangeType | OutputKind):
                raise PluginError(
                    f"plugin {plugin_name!r}: {hook} returned {type(record).__name__}, "
                    f"not a {what} record"
                )
            merge_unique(merged, key(record), plugin_name, record, what)
    # duplicates first (naming both plugins), then each record's own checks
    result = {name: check(plugin, record) for name, (plugin, record) in merged.items()}
    cache[hook] = (plugins, result)
    return result


def _check_registered(
    plugin: str,
    record: Any,
    kind: type[ChangeType] | type[OutputKind],
    hook: str,
    what: str,
    key: str,
) -> None:
    """``record``, returned by ``plugin``'s ``hook``, is a ``kind`` that names no other
    plugin as its owner (``what`` and its ``key`` attribute name it in the error)."""
    if not isinstance(record, kind):
        article = "an" if kind.__name__[0] in "AEIOU" else "a"
        raise PluginError(
            f"plugin {plugin!r}: {hook} returned {type(record).__name__}, "
            f"not {article} {kind.__name__}"
        )
    if record.owner and record.owner != plugin:
        raise PluginError(
            f"plugin {plugin!r} registers {what} {getattr(record, key)!r} owned by {record.owner!r}"
        )


def _check_change_type(plugin: str, record: Any) -> ChangeType:
    _check_registered(plugin, record, ChangeType, "register_changes", "change type", "id")
    if record.id.partition(".")[0] != plugin or "." not in record.id:
        raise PluginError(
            f"plugin {plugin!r}: change type id {record.id!r} must read '{plugin}.<change>'"
        )
    try:
        schema_fields(record.params)
    except TypeError as exc:
        raise PluginError(f"plugin {plugin!r}, change type {record.id!r}: {exc}") from None
    if not callable(record.materialize) or (record.tune is not None and not callable(record.tune)):
        raise PluginError(
            f"plugin {plugin!r}, change type {record.id!r}: tune and materialize must be callables"
        )
    if not isinstance(record.version, int) or record.version < 1:
        raise PluginError(
            f"plugin {plugin!r}, change type {record.id!r}: version must be an integer >= 1"
        )
    return dataclasses.replace(record, owner=plugin)


def _check_output_kind(plugin: str, record: Any) -> OutputKind:
    _check_registered(plugin, record, OutputKind, "register_output_kinds", "output kind", "name")
    if not callable(record.compare) or not record.metric:
        raise PluginError(
            f"plugin {plugin!r}, output kind {record.name!r}: needs a compare callable and "
            "a metric name"
        )
    return dataclasses.replace(record, owner=plugin)


# -- changes ---------------------------------------------------------------------------------


def tune(
    pm: PipetunePluginManager, proposal: Proposal, pipeline: Pipeline, context: TuneContext
) -> Tuned | None:
    """Tune ``proposal`` through the change type registered for its id (or, for a plugin
    that registers none, its owner's ``tune_proposal``)."""
    registered = change_type(pm, proposal.id)
    if registered is None:
        _warn_legacy(pm, proposal.plugin, "tune_proposal")
        return pm.call_owner(
            "tune_proposal",
            proposal.plugin,
            proposal=proposal,
            pipeline=pipeline,
            workload=context.workload,
            requirements=context.requirements,
            context=context,
        )
    _check_owner(registered, proposal.plugin, f"proposal {proposal.id}")
    if registered.tune is None:
        return None
    return registered.tune(proposal, pipeline, context)


def make_change(pm: PipetunePluginManager, proposal: Proposal, tuned: Tuned | None) -> Change:
    """The change a recipe stores for ``proposal`` tuned as ``tuned``: its params checked
    against the change type's schema and stamped with the schema version."""
    change = Change.from_proposal(proposal, tuned)
    registered = change_type(pm, proposal.id)
    if registered is None:
        return change
    check_params(registered.params, change.params, what=f"change {proposal.id}")
    return change.evolve(params_version=registered.version)


def materialize(
    pm: PipetunePluginManager,
    change: Change,
    pipeline: Pipeline,
    artifacts_dir: str | Path,
    *,
    where: str = "",
) -> Pipeline | None:
    """Build ``change`` on ``pipeline`` through the change type registered for its id:
    params migrated to the current schema version and checked first. ``where`` names the
    recipe in error messages."""
    registered = change_type(pm, change.proposal)
    if registered is None:
        return _legacy_materialize(pm, change, pipeline, Path(artifacts_dir))
    _check_owner(registered, change.plugin, f"change {change.proposal}")
    change = upgrade(registered, change, where=where)
    return registered.materialize(change, pipeline, Path(artifacts_dir))


def upgrade(registered: ChangeType, change: Change, *, where: str) -> Change:
    """``change`` with its params migrated to ``registered``'s schema version and checked
    (a change without a recorded version was written under version 1)."""
    version = 1 if change.params_version is None else int(change.params_version)
    params = migrate_params(registered, change.params, version, where=where)
    prefix = f"{where}: " if where else ""
    check_params(registered.params, params, what=f"{prefix}change {change.proposal}")
    if version == registered.version:
        return change
    return change.evolve(params=params, params_version=registered.version)


def _legacy_materialize(
    pm: PipetunePluginManager, change: Change, pipeline: Pipeline, artifacts_dir: Path
) -> Pipeline | None:
    owner = pm.get_plugin(change.plugin)
    if owner is not None and not _implements(pm, change.plugin, "materialize_change"):
        known = sorted(c.id for c in change_types(pm).values() if c.owner == change.plugin)
        raise PluginError(
            f"plugin {change.plugin!r} has no change type {change.proposal!r} "
            f"(it registers: {', '.join(known) or 'none'})"
        )
    _warn_legacy(pm, change.plugin, "materialize_change")
    return pm.call_owner(
        "materialize_change",
        change.plugin,
        change=change,
        pipeline=pipeline,
        artifacts_dir=artifacts_dir,
    )


def _check_owner(registered: ChangeType, plugin: str, what: str) -> None:
    if plugin != registered.owner:
        raise PluginError(
            f"{what} names plugin {plugin!r}, but change type {registered.id!r} is "
            f"registered by {registered.owner!r}"
        )


# -- fidelity --------------------------------------------------------------------------------


def compare_outputs(
    pm: PipetunePluginManager,
    kind: str,
    baseline: Sequence[Any],
    candidate: Sequence[Any],
    labels: Sequence[Any] | None = None,
) -> Fidelity:
    """Fidelity of ``candidate`` against ``baseline`` by the one plugin that owns ``kind``.
    The result records the judging plugin (``judged_by``) and the kind."""
    if len(baseline) != len(candidate):
        raise PluginError(
            f"cannot compare outputs: {len(baseline)} baseline outputs, "
            f"{len(candidate)} candidate outputs"
        )
    baseline, candidate = list(baseline), list(candidate)
    labels = None if labels is None else list(labels)
    registered = output_kinds(pm).get(kind)
    if registered is not None:
        result: Any = registered.compare(baseline, candidate, labels)
        judge = registered.owner
    else:
        answered = first_result(
            pm,
            "compare_outputs",
            output_kind=kind,
            baseline=baseline,
            candidate=candidate,
            labels=labels,
        )
        if answered is None:
            known = ", ".join(sorted(output_kinds(pm))) or "none"
            raise PluginError(
                f"no plugin compares outputs of kind {kind!r}; set the pipeline's output_kind "
                f"to one a plugin knows ({known})"
            )
        judge, result = answered
        _warn_legacy(pm, judge, "compare_outputs")
    if not isinstance(result, Fidelity):
        raise PluginError(
            f"plugin {judge!r} compared outputs of kind {kind!r} and returned "
            f"{type(result).__name__}, not a Fidelity"
        )
    return result.evolve(judged_by=judge, output_kind=kind)


def assess_change(
    pm: PipetunePluginManager,
    change: Change,
    baseline: Pipeline,
    candidate: Pipeline,
    workload: Workload,
) -> Fidelity | None:
    """A domain plugin's own fidelity for ``change`` (``assess_change``, first result),
    recording which plugin judged; ``None`` when no plugin assesses it."""
    answered = first_result(
        pm,
        "assess_change",
        change=change,
        baseline=baseline,
        candidate=candidate,
        workload=workload,
    )
    if answered is None:
        return None
    judge, result = answered
    if not isinstance(result, Fidelity):
        raise PluginError(
            f"plugin {judge!r}: assess_change returned {type(result).__name__}, not a Fidelity"
        )
    return result.evolve(judged_by=judge)


def gate(fidelity: Fidelity, floor: float) -> Fidelity:
    """``fidelity`` with the threshold the validator applies: the user's ``floor``
    (``1 - max_accuracy_drop``, cumulative), raised to the plugin's own threshold when the
    plugin asks for more. A plugin can tighten the budget, never loosen it."""
    own = fidelity.threshold
    threshold = floor if own is None else max(float(floor), float(own))
    return fidelity.evolve(threshold=threshold)


# -- hook helpers ----------------------------------------------------------------------------


def first_result(pm: PipetunePluginManager, hook: str, **kwargs: Any) -> tuple[str, Any] | None:
    """``(plugin, result)`` of the first implementation of ``hook`` (pluggy's order) that
    returns non-``None``. Through pipetune's manager each call is bounded and isolated: an
    implementation that raises or overruns is a recorded failure and the next is asked
    (an error in strict mode); elsewhere errors propagate."""
    call_impl = getattr(pm, "_call_impl", None)
    for impl in reversed(getattr(pm.hook, hook).get_hookimpls()):
        if impl.hookwrapper or impl.wrapper:
            continue
        if call_impl is not None:
            ok, value = call_impl(hook, impl, kwargs)
            if not ok:
                continue
        else:
            value = impl.function(*[kwargs[name] for name in impl.argnames])
        if value is not None:
            return impl.plugin_name, value
    return None


def _implements(pm: PipetunePluginManager, plugin: str, hook: str) -> bool:
    return any(impl.plugin_name == plugin for impl in getattr(pm.hook, hook).get_hookimpls())


def _warn_legacy(pm: PipetunePluginManager, plugin: str, hook: str) -> None:
    if hook not in _LEGACY_HOOKS or (plugin, hook) in _warned:
        return
    if not _implements(pm, plugin, hook):
        return
    _warned.add((plugin, hook))
    replacement = "register_output_kinds" if hook == "compare_outputs" else "register_changes"
    warnings.warn(
        f"plugin {plugin!r} implements {hook}, deprecated since plugin API 2: register "
        f"its {'output kinds' if hook == 'compare_outputs' else 'change types'} with "
        f"{replacement}() instead",
        DeprecationWarning,
        stacklevel=3,
    )
