"""Hook implementations of the nlp plugin.

Recognizes tokenizers and text models in stage slots, measures the domain's facts from the
shared profiling run, proposes the Rust tokenizer swap, truncation search, dynamic padding,
length bucketing, SDPA attention, inference mode and (as advice) distillation, tunes and
materializes them, and supplies exact-id fidelity and calibration inputs. Heavy libraries
are imported inside the functions that use them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipetune.core.kernel.hookspecs import hookimpl
from pipetune.core.kernel.model import Pipeline, Workload
from pipetune.plugins import _shared as hooks

PIPETUNE_API = 2


@hookimpl
def register_dependencies() -> Sequence[Any]:
    from pipetune.plugins.nlp.proposals import DEPENDENCIES

    return DEPENDENCIES


@hookimpl
def register_demos() -> Sequence[Any]:
    from pipetune.demos.nlp.demo import demo

    return [demo()]


inspect_pipeline = hooks.inspect_pipeline("pipetune.plugins.nlp", "inspect")
stage_hints = hooks.stage_hints("pipetune.plugins.nlp")
profile_pipeline = hooks.profile_pipeline("pipetune.plugins.nlp", "measure", with_workload=False)


propose_changes = hooks.propose_changes("pipetune.plugins.nlp")
register_changes = hooks.register_changes("pipetune.plugins.nlp")
register_output_kinds = hooks.register_output_kinds("pipetune.plugins.nlp")


@hookimpl
def calibration_inputs(pipeline: Pipeline, stage: str, workload: Workload) -> Sequence[Any] | None:
    from pipetune.plugins.nlp.calibration import calibration_inputs as build

    return build(pipeline, stage, workload)


scan_rules = hooks.scan_rules("pipetune.plugins.nlp")
