"""``on_error="skip"`` for the optimize loop: set aside the inputs the original fails on.

One corrupt image must not block a whole folder. Before anything is measured, the original
pipeline runs once over the workload from cold state with failures counted instead of
raised; the inputs it fails on are left out of the workload the loop measures, so they are
excluded from both sides of every comparison, and listed (workload index, stage, error) in
the report. The same pass gives the original's outputs on the inputs kept, which the loop
then uses for fidelity instead of running the original again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipetune.core.kernel import control
from pipetune.core.kernel.errors import PipelineError
from pipetune.core.kernel.model import Pipeline, Workload
from pipetune.core.kernel.state import reset_state
from pipetune.core.runtime.offline import run_offline

#: How many skipped inputs a warning names before it says "and N more".
NAMED = 5


@dataclass(frozen=True)
class Screened:
    """The workload to measure, which input of the original each of its inputs is, the
    inputs set aside, and the original's outputs on the inputs kept."""

    workload: Workload
    kept: tuple[int, ...]
    skipped: tuple[Mapping[str, Any], ...]
    outputs: list[Any] | None

    def warning(self, total: int) -> str:
        """One sentence for the report's warnings ('' when nothing was skipped)."""
        if not self.skipped:
            return ""
        named = ", ".join(
            f"#{entry['index']} (stage {entry['stage']!r}: {entry['error']})"
            for entry in self.skipped[:NAMED]
        )
        more = f" and {len(self.skipped) - NAMED} more" if len(self.skipped) > NAMED else ""
        return (
            f"{len(self.skipped)} of {total} inputs skipped (--on-error skip): the original "
            f"pipeline raised on them, so they are left out of both sides of every "
            f"measurement: {named}{more}"
        )


def screen(
    pipeline: Pipeline, workload: Workload, outputs: Sequence[Any] | None = None
) -> Screened:
    """Run ``pipeline`` once over ``workload`` with failures counted; returns the inputs
    it does not fail on. ``outputs``: the original's outputs when already known."""
    reset_state(pipeline)
    result = control.complete(run_offline(pipeline, workload.items, on_error="skip"))
    failed = {error.index: error for error in result.errors}
    n = len(workload.items)
    if not failed:
        known = list(result.outputs if outputs is None else outputs)
        return Screened(workload, tuple(range(n)), (), known)
    kept = tuple(i for i in range(n) if i not in failed)
    if not kept:
        first = failed[min(failed)]
        raise PipelineError(
            f"the original pipeline fails on every one of the {n} inputs, so nothing is left "
            f"to measure with --on-error skip; the first: stage {first.stage!r} on input "
            f"#{first.index}: {first.error}"
        )
    known = result.outputs if outputs is None else list(outputs)
    skipped = tuple(
        {"index": error.index, "stage": error.stage, "error": error.error}
        for _, error in sorted(failed.items())
    )
    return Screened(workload.subset(kept), kept, skipped, [known[i] for i in kept])
