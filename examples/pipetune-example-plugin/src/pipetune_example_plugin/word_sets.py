"""The output kind ``word_sets``: outputs that are collections of words whose order does
not matter (the kept tokens of a filter, the tags of a document).

An output kind is a name, a metric name and a ``compare(baseline, candidate, labels)``
returning a :class:`pipetune.Fidelity` whose ``value`` is higher-is-better. The host calls
it for every pipeline declaring ``output_kind="word_sets"``, records this plugin as the
judge, and gates the value at ``1 - max_accuracy_drop``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipetune import Fidelity, OutputKind

NAME = "word_sets"
METRIC = "mean_jaccard"


def jaccard(a: Any, b: Any) -> float:
    """Intersection over union of two collections of words (1.0 for two empty ones)."""
    left, right = set(a), set(b)
    union = left | right
    return len(left & right) / len(union) if union else 1.0


def compare(
    baseline: Sequence[Any], candidate: Sequence[Any], labels: Sequence[Any] | None
) -> Fidelity:
    """Mean Jaccard similarity of the candidate's word sets to the baseline's; how many
    outputs are identical as sets, and the first that is not, in details."""
    scores = [jaccard(b, c) for b, c in zip(baseline, candidate, strict=True)]
    identical = sum(score == 1.0 for score in scores)
    first = next((i for i, score in enumerate(scores) if score < 1.0), None)
    return Fidelity(
        metric=METRIC,
        value=sum(scores) / len(scores) if scores else 1.0,
        n=len(scores),
        details={"identical": identical, "first_difference": first},
    )


KIND = OutputKind(NAME, METRIC, compare, "mean Jaccard similarity of word collections")
