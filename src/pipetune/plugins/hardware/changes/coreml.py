"""``hardware.coreml``: convert the model to a Core ML package (fp16). Off a Mac it is
converted and its spec checked, and the trial is deferred with the command to finish the
validation on a Mac; on a Mac Core ML is tried by ``hardware.compile``. Lossy."""

from __future__ import annotations

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Proposal, Tuned
from pipetune.plugins.hardware.changes.common import HardwareParams, materialize
from pipetune.plugins.hardware.tune_deferred import defer_coreml

ID = "hardware.coreml"


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    return defer_coreml(proposal, pipeline, context)


CHANGE = ChangeType(ID, HardwareParams, materialize, tune, lossy=True)
