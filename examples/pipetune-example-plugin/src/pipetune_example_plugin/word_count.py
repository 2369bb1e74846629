"""The output kind ``example.word_count``: outputs that are integer counts (the content
words of a document, the stop words it holds).

A count is right or wrong: one word more is a different answer, so the metric is the share
of outputs that match the baseline's exactly (``exact_match_rate``, higher is better). The
name holds "match", so pipetune gates it as a proportion: the Wilson interval's lower
bound must clear the user's threshold too. With labels (the true counts), the drop in the
share of counts that match them is reported as ``accuracy_drop``.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from typing import Any

from pipetune import Fidelity, OutputKind, PipelineError

NAME = "example.word_count"
METRIC = "exact_match_rate"


def counts(outputs: Sequence[Any], side: str) -> list[int]:
    """``outputs`` as ints, or a :class:`pipetune.PipelineError` naming the first that is
    not an integer count (a bool is not a count)."""
    for index, value in enumerate(outputs):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
            raise PipelineError(
                f"output kind {NAME}: the {side} output #{index} is {value!r}, not a "
                "non-negative integer count"
            )
    return [int(value) for value in outputs]


def match_rate(left: Sequence[int], right: Sequence[int]) -> float:
    """The share of positions where two equally long lists of counts agree (1.0 if empty)."""
    pairs = list(zip(left, right, strict=True))
    return sum(a == b for a, b in pairs) / len(pairs) if pairs else 1.0


def compare(
    baseline: Sequence[Any], candidate: Sequence[Any], labels: Sequence[Any] | None
) -> Fidelity:
    """The share of the candidate's counts equal to the baseline's; the mean absolute
    difference and the first differing output in details, and the accuracy drop against
    ``labels`` when given."""
    base, cand = counts(baseline, "baseline"), counts(candidate, "candidate")
    value = match_rate(base, cand)
    differences = [abs(b - c) for b, c in zip(base, cand, strict=True)]
    first = next((i for i, d in enumerate(differences) if d), None)
    details: dict[str, Any] = {
        "exact": sum(d == 0 for d in differences),
        "mean_abs_difference": sum(differences) / len(differences) if differences else 0.0,
        "first_difference": first,
    }
    summary = f"{details['exact']}/{len(base)} counts equal to the baseline's"
    if labels is not None:
        truth = counts(labels, "label")
        base_accuracy, cand_accuracy = match_rate(base, truth), match_rate(cand, truth)
        details["baseline_accuracy"] = base_accuracy
        details["candidate_accuracy"] = cand_accuracy
        details["accuracy_drop"] = base_accuracy - cand_accuracy
        summary += (
            f"; {cand_accuracy:.1%} exactly right against the labels ({base_accuracy:.1%} before)"
        )
    details["summary"] = summary
    return Fidelity(metric=METRIC, value=value, n=len(base), details=details)


KIND = OutputKind(NAME, METRIC, compare, "share of integer counts equal to the baseline's")
