"""Hook implementations of the generic plugin: the single owner of batching, result
caching, parallel preprocessing and adaptive computation, and of the generic output kinds
(labels, tensors, exact equality). Each hook calls into the module that does the work."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipetune.core.kernel.context import Observations
from pipetune.core.kernel.hookspecs import hookimpl
from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
from pipetune.core.kernel.registry import ChangeType, Demo, OutputKind
from pipetune.core.kernel.results import Profile, Proposal
from pipetune.scan.rules import Rule

PIPETUNE_API = 2


@hookimpl
def register_changes() -> Sequence[ChangeType]:
    from pipetune.plugins.generic.changes import change_types

    return change_types()


@hookimpl
def register_output_kinds() -> Sequence[OutputKind]:
    from pipetune.plugins.generic.fidelity import output_kinds

    return output_kinds()


@hookimpl
def register_demos() -> Sequence[Demo]:
    from pipetune.demos.generic import demo

    return [
        Demo(
            name="queries",
            title="Query intent classification under repeated traffic (caching, batching)",
            build=demo.build,
        )
    ]


@hookimpl
def profile_pipeline(
    pipeline: Pipeline, workload: Workload, profile: Profile, observed: Observations
) -> Mapping[str, Any]:
    from pipetune.plugins.generic.facts import profile_facts

    return profile_facts(pipeline, workload, profile, observed)


@hookimpl
def stage_hints(stage: Stage, pipeline: Pipeline) -> Sequence[str] | None:
    from pipetune.plugins.generic.recognize import hints_for

    return hints_for(stage) or None


@hookimpl
def propose_changes(
    pipeline: Pipeline, profile: Profile, requirements: Requirements
) -> Sequence[Proposal]:
    from pipetune.plugins.generic.proposals import propose

    return propose(pipeline, profile, requirements)


@hookimpl
def scan_rules() -> Sequence[Rule]:
    from pipetune.plugins.generic.scan_rules import RULES

    return RULES
