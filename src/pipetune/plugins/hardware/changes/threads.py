"""``hardware.threads``: pin the model's intra-op threads to what the machine and the
concurrency call for. Exact."""

from __future__ import annotations

from pipetune.core.kernel.registry import ChangeType
from pipetune.plugins.hardware.changes.common import HardwareParams, materialize
from pipetune.plugins.hardware.tune import tune_model

ID = "hardware.threads"

CHANGE = ChangeType(ID, HardwareParams, materialize, tune_model)
