"""Fidelity dispatch: the metric is chosen by output kind, by the plugin that owns it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipetune.core.kernel import dispatch

#: ``compare(pm, kind, baseline, candidate, labels=None)``: the fidelity of ``candidate``
#: against ``baseline`` for output kind ``kind``, judged by the plugin that registered the
#: kind (the measuring layer's name for :func:`pipetune.core.kernel.dispatch.compare_outputs`).
compare = dispatch.compare_outputs


def reference_part(reference: Sequence[Any], part: str) -> list[Any]:
    """One half of a plugin's built-in reference data (held-out text for a perplexity
    gate), so that what calibrates a lossy change never scores it: ``evaluation`` takes
    the even positions, ``calibration`` the odd ones."""
    if part not in ("evaluation", "calibration"):
        raise ValueError(f"part must be 'evaluation' or 'calibration', not {part!r}")
    return list(reference[0 if part == "evaluation" else 1 :: 2])
