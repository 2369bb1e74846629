"""Hook implementations that several built-in plugins write the same way: each imports, when
called, the function or table of the plugin's own module that does the work (so a plugin's
``plugin.py`` stays importable with none of its heavy libraries installed).

A plugin module binds them under the hook's name, for instance
``register_changes = hooks.register_changes(__package__)``; pluggy registers them like any
other ``@hookimpl`` function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from importlib import import_module
from typing import Any

from pipetune.core.kernel.context import Observations
from pipetune.core.kernel.hookspecs import hookimpl
from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
from pipetune.core.kernel.registry import ChangeType, OutputKind
from pipetune.core.kernel.results import Profile, Proposal
from pipetune.scan.rules import Rule


def _attr(package: str, module: str, name: str) -> Any:
    return getattr(import_module(f"{package}.{module}"), name)


def register_changes(package: str) -> Callable[[], Sequence[ChangeType]]:
    """``register_changes``: ``<package>.changes.change_types()``."""

    @hookimpl
    def register_changes() -> Sequence[ChangeType]:
        return _attr(package, "changes", "change_types")()

    return register_changes


def register_output_kinds(package: str) -> Callable[[], Sequence[OutputKind]]:
    """``register_output_kinds``: ``<package>.fidelity.output_kinds()``."""

    @hookimpl
    def register_output_kinds() -> Sequence[OutputKind]:
        return _attr(package, "fidelity", "output_kinds")()

    return register_output_kinds


def scan_rules(package: str) -> Callable[[], Sequence[Rule]]:
    """``scan_rules``: the ``RULES`` table of ``<package>.scan_rules``."""

    @hookimpl
    def scan_rules() -> Sequence[Rule]:
        return _attr(package, "scan_rules", "RULES")

    return scan_rules


def inspect_pipeline(package: str, name: str) -> Callable[[Pipeline], Mapping[str, Any] | None]:
    """``inspect_pipeline``: ``<package>.facts.<name>(pipeline)``."""

    @hookimpl
    def inspect_pipeline(pipeline: Pipeline) -> Mapping[str, Any] | None:
        return _attr(package, "facts", name)(pipeline)

    return inspect_pipeline


def profile_pipeline(
    package: str, name: str, *, with_workload: bool = True
) -> Callable[[Pipeline, Workload, Profile, Observations], Mapping[str, Any] | None]:
    """``profile_pipeline``: ``<package>.facts.<name>(pipeline, workload, profile,
    observed)`` (without ``workload`` unless ``with_workload``)."""

    @hookimpl
    def profile_pipeline(
        pipeline: Pipeline, workload: Workload, profile: Profile, observed: Observations
    ) -> Mapping[str, Any] | None:
        facts = _attr(package, "facts", name)
        if with_workload:
            return facts(pipeline, workload, profile, observed)
        return facts(pipeline, profile, observed)

    return profile_pipeline


def propose_changes(
    package: str, *, empty_is_none: bool = True
) -> Callable[[Pipeline, Profile, Requirements], Sequence[Proposal] | None]:
    """``propose_changes``: ``<package>.proposals.propose(...)``; no proposals is ``None``
    unless ``empty_is_none`` is false (then the empty list itself)."""

    @hookimpl
    def propose_changes(
        pipeline: Pipeline, profile: Profile, requirements: Requirements
    ) -> Sequence[Proposal] | None:
        proposals = _attr(package, "proposals", "propose")(pipeline, profile, requirements)
        return (proposals or None) if empty_is_none else proposals

    return propose_changes


def stage_hints(
    package: str, *, with_pipeline: bool = True
) -> Callable[[Stage, Pipeline], Sequence[str] | None]:
    """``stage_hints``: ``<package>.recognize.hints_for(stage, pipeline)`` (or
    ``hints_for(stage)`` without ``with_pipeline``); no hints is ``None``."""

    @hookimpl
    def stage_hints(stage: Stage, pipeline: Pipeline) -> Sequence[str] | None:
        hints_for = _attr(package, "recognize", "hints_for")
        return (hints_for(stage, pipeline) if with_pipeline else hints_for(stage)) or None

    return stage_hints
