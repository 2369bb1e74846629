"""Fidelity dispatch: the metric is chosen by output kind, by the plugin that owns it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pipetune.core.kernel import dispatch
from pipetune.core.kernel.results import Fidelity

if TYPE_CHECKING:
    from pipetune.core.kernel.manager import PipetunePluginManager


def compare(
    pm: PipetunePluginManager,
    kind: str,
    baseline: Sequence[Any],
    candidate: Sequence[Any],
    labels: Sequence[Any] | None = None,
) -> Fidelity:
    """Fidelity of ``candidate`` against ``baseline`` for output kind ``kind``, judged by
    the plugin that registered the kind (:func:`pipetune.core.kernel.dispatch.compare_outputs`)."""
    return dispatch.compare_outputs(pm, kind, baseline, candidate, labels)


def reference_part(reference: Sequence[Any], part: str) -> list[Any]:
    """One half of a plugin's built-in reference data (held-out text for a perplexity
    gate), so that what calibrates a lossy change never scores it: ``evaluation`` takes
    the even positions, ``calibration`` the odd ones."""
    if part not in ("evaluation", "calibration"):
        raise ValueError(f"part must be 'evaluation' or 'calibration', not {part!r}")
    return list(reference[0 if part == "evaluation" else 1 :: 2])
