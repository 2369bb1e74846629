"""The accuracy of a profiled run against the workload's labels, judged by the plugin that
owns the pipeline's output kind: the profile reports it beside the speed, so a later
change's accuracy drop has a baseline. The timing pass may run a sample of the workload,
so each output is matched to its label through the sample's indices."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetune.core.kernel import dispatch
from pipetune.core.kernel.errors import PluginError
from pipetune.core.kernel.model import Pipeline, Workload
from pipetune.core.runtime.result import RunResult

if TYPE_CHECKING:
    from pipetune.core.kernel.manager import PipetunePluginManager


def label_accuracy(
    pm: PipetunePluginManager, pipeline: Pipeline, workload: Workload, run: RunResult
) -> dict[str, Any]:
    """Accuracy of ``run``'s outputs against the workload's labels, by the plugin that
    owns the pipeline's output kind (its comparison, given the labels)."""
    labels = workload.labels
    assert labels is not None
    timed = _timed_indices(workload)
    rows = run.item_index if run.item_index is not None else range(len(run.outputs))
    outputs, truth = [], []
    for row, item in enumerate(rows):
        if row < len(run.ok) and run.ok[row]:
            outputs.append(run.outputs[row])
            truth.append(labels[timed[int(item)]])
    if not outputs:
        return {"reason": "no input finished, so nothing could be judged against its label"}
    try:
        found = dispatch.compare_outputs(pm, pipeline.output_kind, outputs, outputs, truth)
    except PluginError:
        found = None
    details = dict(found.details) if found is not None and found.details else {}
    value = details.get("baseline_accuracy")
    if not isinstance(value, int | float):
        return {
            "reason": f"labels were given, but no plugin measures accuracy for output kind "
            f"{pipeline.output_kind!r}"
        }
    return {"metric": "accuracy", "value": float(value), "n": len(outputs)}


def _timed_indices(workload: Workload) -> list[int]:
    """The workload index of each input the timing pass ran (see ``timing_sample``)."""
    n = len(workload.items)
    if workload.timing_items is None or workload.timing_items >= n:
        return list(range(n))
    step = n / workload.timing_items
    return [int(i * step) for i in range(workload.timing_items)]
