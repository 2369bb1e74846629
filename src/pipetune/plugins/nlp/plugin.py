"""Hook implementations of the nlp plugin.

Recognizes tokenizers and text models in stage slots, measures the domain's facts from the
shared profiling run, proposes the Rust tokenizer swap, truncation search, dynamic padding,
length bucketing, SDPA attention, inference mode and (as advice) distillation, tunes and
materializes them, and supplies exact-id fidelity and calibration inputs. Heavy libraries
are imported inside the functions that use them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipetune.core.kernel.hookspecs import hookimpl
from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
from pipetune.core.kernel.registry import ChangeType, OutputKind
from pipetune.core.kernel.results import Profile, Proposal
from pipetune.scan.rules import Rule

PIPETUNE_API = 2


@hookimpl
def register_dependencies() -> Sequence[Any]:
    from pipetune.plugins.nlp.proposals import DEPENDENCIES

    return DEPENDENCIES


@hookimpl
def register_demos() -> Sequence[Any]:
    from pipetune.demos.nlp.demo import demo

    return [demo()]


@hookimpl
def inspect_pipeline(pipeline: Pipeline) -> Mapping[str, Any] | None:
    from pipetune.plugins.nlp.facts import inspect

    return inspect(pipeline)


@hookimpl
def stage_hints(stage: Stage, pipeline: Pipeline) -> Sequence[str] | None:
    from pipetune.plugins.nlp.recognize import hints_for

    return hints_for(stage, pipeline) or None


@hookimpl
def profile_pipeline(
    pipeline: Pipeline, workload: Workload, profile: Profile, observed: Any
) -> Mapping[str, Any] | None:
    from pipetune.plugins.nlp.facts import measure

    return measure(pipeline, profile, observed)


@hookimpl
def propose_changes(
    pipeline: Pipeline, profile: Profile, requirements: Requirements
) -> Sequence[Proposal] | None:
    from pipetune.plugins.nlp.proposals import propose

    return propose(pipeline, profile, requirements) or None


@hookimpl
def register_changes() -> Sequence[ChangeType]:
    from pipetune.plugins.nlp.changes import change_types

    return change_types()


@hookimpl
def register_output_kinds() -> Sequence[OutputKind]:
    from pipetune.plugins.nlp.fidelity import output_kinds

    return output_kinds()


@hookimpl
def calibration_inputs(pipeline: Pipeline, stage: str, workload: Workload) -> Sequence[Any] | None:
    from pipetune.plugins.nlp.calibration import calibration_inputs as build

    return build(pipeline, stage, workload)


@hookimpl
def scan_rules() -> Sequence[Rule]:
    from pipetune.plugins.nlp.scan_rules import RULES

    return RULES
