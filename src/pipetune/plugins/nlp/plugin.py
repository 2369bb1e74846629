"""Hook implementations of the nlp plugin.

Recognizes tokenizers and text models in stage slots, measures the domain's facts from the
shared profiling run, proposes the Rust tokenizer swap, truncation search, dynamic padding,
length bucketing, SDPA attention, inference mode and (as advice) distillation, tunes and
materializes them, and supplies exact-id fidelity and calibration inputs. Heavy libraries
are imported inside the functions that use them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipetune.core.kernel.hookspecs import hookimpl
from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
from pipetune.core.kernel.results import Change, Fidelity, Profile, Proposal, Tuned
from pipetune.plugins.nlp.scan_rules import scan_rules  # noqa: F401

PIPETUNE_API = 1


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
    from pipetune.plugins.nlp.hints import hints_for

    return hints_for(stage) or None


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

    return propose(pipeline, profile) or None


@hookimpl
def tune_proposal(
    proposal: Proposal, pipeline: Pipeline, workload: Workload, context: Any
) -> Tuned | None:
    if proposal.plugin != "nlp":
        return None
    from pipetune.plugins.nlp.tuning import tune

    return tune(proposal, pipeline, workload, context)


@hookimpl
def materialize_change(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline | None:
    if change.plugin != "nlp":
        return None
    from pipetune.plugins.nlp.transforms import materialize

    return materialize(change, pipeline, artifacts_dir)


@hookimpl
def compare_outputs(
    output_kind: str, baseline: Sequence[Any], candidate: Sequence[Any]
) -> Fidelity | None:
    if output_kind != "token_ids":
        return None
    from pipetune.plugins.nlp.fidelity import exact_ids

    return exact_ids(baseline, candidate)


@hookimpl
def calibration_inputs(pipeline: Pipeline, stage: str, workload: Workload) -> Sequence[Any] | None:
    from pipetune.plugins.nlp.calibration import calibration_inputs as build

    return build(pipeline, stage, workload)
