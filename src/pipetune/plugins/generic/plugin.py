"""Hook implementations of the generic plugin: the single owner of batching, result
caching, parallel preprocessing and adaptive computation, and of the generic output kinds
(labels, tensors, exact equality). Each hook calls into the module that does the work."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipetune.core.kernel.context import Observations
from pipetune.core.kernel.hookspecs import hookimpl
from pipetune.core.kernel.model import Pipeline, Workload
from pipetune.core.kernel.registry import Demo
from pipetune.core.kernel.results import Profile
from pipetune.plugins import _shared as hooks

PIPETUNE_API = 2


register_changes = hooks.register_changes("pipetune.plugins.generic")
register_output_kinds = hooks.register_output_kinds("pipetune.plugins.generic")


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


stage_hints = hooks.stage_hints("pipetune.plugins.generic", with_pipeline=False)
propose_changes = hooks.propose_changes("pipetune.plugins.generic", empty_is_none=False)
scan_rules = hooks.scan_rules("pipetune.plugins.generic")
