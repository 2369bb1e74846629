"""Fidelity dispatch: choose the metric by output kind through ``compare_outputs``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pipetune.core.kernel.errors import PluginError
from pipetune.core.kernel.results import Fidelity

if TYPE_CHECKING:
    import pluggy


def compare(
    pm: pluggy.PluginManager,
    kind: str,
    baseline: Sequence[Any],
    candidate: Sequence[Any],
    labels: Sequence[Any] | None = None,
) -> Fidelity:
    """Fidelity of ``candidate`` against ``baseline`` for output kind ``kind``."""
    if len(baseline) != len(candidate):
        raise PluginError(
            f"cannot compare outputs: {len(baseline)} baseline outputs, "
            f"{len(candidate)} candidate outputs"
        )
    result = pm.hook.compare_outputs(
        output_kind=kind,
        baseline=list(baseline),
        candidate=list(candidate),
        labels=None if labels is None else list(labels),
    )
    if result is None:
        raise PluginError(
            f"no plugin compares outputs of kind {kind!r}; set the pipeline's output_kind "
            "to one a plugin knows (labels, ranked_ids, tokens, token_ids, tensor, any)"
        )
    return result


def reference_part(reference: Sequence[Any], part: str) -> list[Any]:
    """One half of a plugin's built-in reference data (held-out text for a perplexity
    gate), so that what calibrates a lossy change never scores it: ``evaluation`` takes
    the even positions, ``calibration`` the odd ones."""
    if part not in ("evaluation", "calibration"):
        raise ValueError(f"part must be 'evaluation' or 'calibration', not {part!r}")
    return list(reference[0 if part == "evaluation" else 1 :: 2])
