"""What plugins get from the host while profiling and tuning.

* :class:`Observations`: a bounded sample of each stage's inputs and outputs from the one
  shared profiling run (plugins observe what flowed; they do not each re-run the workload).
* :class:`TuneContext`: passed to a change type's ``tune``. It runs candidate pipelines, compares
  their outputs with the *original* pipeline's (cumulative fidelity), times them, and
  stores artifacts.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipetune.core.kernel.artifacts import ArtifactStore
from pipetune.core.kernel.results import Fidelity

if TYPE_CHECKING:
    import pluggy

    from pipetune.core.kernel.model import Pipeline, Requirements, Workload
    from pipetune.core.kernel.results import Profile


@dataclass
class Observations:
    """Sampled stage inputs and outputs, aligned: ``inputs[stage][j]`` produced
    ``outputs[stage][j]``, for workload item ``indices[j]``."""

    indices: list[int] = field(default_factory=list)
    inputs: dict[str, list[Any]] = field(default_factory=dict)
    outputs: dict[str, list[Any]] = field(default_factory=dict)

    def inputs_of(self, stage: str) -> list[Any]:
        return self.inputs.get(stage, [])

    def outputs_of(self, stage: str) -> list[Any]:
        return self.outputs.get(stage, [])


class TuneContext:
    """The host's services for a plugin's tune step.

    Args:
        pm: the plugin manager (it compares outputs by their kind's owner).
        original: the user's pipeline: fidelity is always measured against its outputs.
        workload: the tuning split.
        requirements: the user's requirements.
        artifacts: where built artifacts go.
        fidelity_floor: the lowest fidelity value a change may leave, cumulative across
            the changes already accepted (1 - max_accuracy_drop at the start).
        profile: the latest profile of the pipeline being changed.
        log: progress messages.
        calibration: inputs of their own for calibrating a lossy change (static int8
            scales, a quantized model's activation ranges): disjoint from the held-out
            split the validator evaluates on and from :attr:`workload`, so calibration
            data is never evaluation data. Defaults to the tuning split when the loop
            could not spare a split of its own (a tiny workload).
    """

    def __init__(
        self,
        pm: pluggy.PluginManager,
        original: Pipeline,
        workload: Workload,
        requirements: Requirements,
        artifacts: ArtifactStore,
        *,
        fidelity_floor: float | None = None,
        profile: Profile | None = None,
        log: Callable[[str], None] | None = None,
        baseline_outputs: Sequence[Any] | None = None,
        calibration: Workload | None = None,
    ):
        self.pm = pm
        self.original = original
        self.workload = workload
        self.calibration = calibration if calibration is not None else workload
        self.requirements = requirements
        self.artifacts = artifacts
        self.profile = profile
        self.fidelity_floor = (
            1.0 - requirements.max_accuracy_drop if fidelity_floor is None else fidelity_floor
        )
        self._log = log or (lambda message: None)
        self._baseline_outputs = list(baseline_outputs) if baseline_outputs is not None else None

    def log(self, message: str) -> None:
        self._log(message)

    def check_cancelled(self) -> None:
        """Raise :class:`~pipetune.core.kernel.control.Cancelled` once the run was
        interrupted (Ctrl-C, SIGTERM): a long tune step calls it between steps, and every
        helper below calls it per input, so an abandoned tune step stops working too."""
        from pipetune.core.kernel import control

        control.check()

    # -- outputs and fidelity ----------------------------------------------------------
    def outputs(self, pipeline: Pipeline, items: Sequence[Any] | None = None) -> list[Any]:
        """``pipeline``'s outputs for ``items`` (default: the tuning split), one at a
        time, so outputs do not depend on batching."""
        items = self.workload.items if items is None else items
        outputs = []
        for item in items:
            self.check_cancelled()
            outputs.append(pipeline.run(item))
        return outputs

    def baseline_outputs(self) -> list[Any]:
        """The original pipeline's outputs on the tuning split (computed once)."""
        if self._baseline_outputs is None:
            self._baseline_outputs = self.outputs(self.original)
        return list(self._baseline_outputs)

    def fidelity(
        self,
        candidate: Sequence[Any],
        kind: str | None = None,
        baseline: Sequence[Any] | None = None,
        labels: Sequence[Any] | None = None,
    ) -> Fidelity:
        """Fidelity of ``candidate`` outputs against the original's (or ``baseline``), with
        the output kind's metric, and ``threshold`` set to :attr:`fidelity_floor` (or the
        judging plugin's own threshold, when that is stricter)."""
        from pipetune.core.kernel import dispatch

        reference = self.baseline_outputs() if baseline is None else list(baseline)
        if labels is None and baseline is None:
            labels = self.workload.labels
        kind = kind or self.original.output_kind
        result = dispatch.compare_outputs(self.pm, kind, reference, candidate, labels)  # type: ignore[arg-type]
        return dispatch.gate(result, self.fidelity_floor)

    # -- timing ------------------------------------------------------------------------
    def time_per_item(
        self,
        pipeline: Pipeline,
        items: Sequence[Any] | None = None,
        *,
        repeats: int = 3,
        batch_size: int = 1,
    ) -> float:
        """Median seconds per item over ``repeats`` passes (after one warm-up pass)."""
        items = list(self.workload.items if items is None else items)
        if not items:
            return 0.0

        def one_pass() -> float:
            self.check_cancelled()
            start = time.perf_counter()
            pipeline.run_in_calls(items, batch_size)
            return (time.perf_counter() - start) / len(items)

        one_pass()
        return statistics.median(one_pass() for _ in range(max(1, repeats)))

    def stage_inputs(
        self, pipeline: Pipeline, stage: str, items: Sequence[Any] | None = None
    ) -> list[Any]:
        """What ``stage`` receives for ``items``: the outputs of the stages before it."""
        items = list(self.workload.items if items is None else items)
        if pipeline.index(stage) == 0:
            return items
        prefix = pipeline.prefix(stage)
        inputs = []
        for item in items:
            self.check_cancelled()
            inputs.append(prefix.run(item))
        return inputs

    def describe(self) -> Mapping[str, Any]:
        return {
            "workload": self.workload.describe(),
            "calibration": self.calibration.describe(),
            "fidelity_floor": self.fidelity_floor,
        }
