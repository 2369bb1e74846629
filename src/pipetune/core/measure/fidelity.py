"""Fidelity dispatch: the metric is chosen by output kind, by the plugin that owns it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipetune.core.kernel import dispatch
from pipetune.core.kernel.results import Fidelity
from pipetune.core.measure.stats import wilson_interval

#: ``compare(pm, kind, baseline, candidate, labels=None)``: the fidelity of ``candidate``
#: against ``baseline`` for output kind ``kind``, judged by the plugin that registered the
#: kind (the measuring layer's name for :func:`pipetune.core.kernel.dispatch.compare_outputs`).
compare = dispatch.compare_outputs


def share_agreeing(metric: str, agree: int, n: int, details: dict[str, Any]) -> Fidelity:
    """``metric`` as the share of ``n`` outputs that agree with the baseline's (1.0 when
    there are none), with its Wilson interval and ``details``."""
    return Fidelity(
        metric=metric,
        value=agree / n if n else 1.0,
        n=n,
        ci=wilson_interval(agree, n),
        details=details,
    )


def reference_part(reference: Sequence[Any], part: str) -> list[Any]:
    """One half of a plugin's built-in reference data (held-out text for a perplexity
    gate), so that what calibrates a lossy change never scores it: ``evaluation`` takes
    the even positions, ``calibration`` the odd ones."""
    if part not in ("evaluation", "calibration"):
        raise ValueError(f"part must be 'evaluation' or 'calibration', not {part!r}")
    return list(reference[0 if part == "evaluation" else 1 :: 2])
