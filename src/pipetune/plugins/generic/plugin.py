"""Hook implementations of the generic plugin: the single owner of batching, result
caching, parallel preprocessing and adaptive computation, and of the generic output kinds
(labels, tensors, exact equality). Each hook calls into the module that does the work."""

from __future__ import annotations

from collections.abc import Sequence

from pipetune.core.kernel.hookspecs import hookimpl
from pipetune.core.kernel.registry import Demo
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


profile_pipeline = hooks.profile_pipeline("pipetune.plugins.generic", "profile_facts")
stage_hints = hooks.stage_hints("pipetune.plugins.generic", with_pipeline=False)
propose_changes = hooks.propose_changes("pipetune.plugins.generic", empty_is_none=False)
scan_rules = hooks.scan_rules("pipetune.plugins.generic")
