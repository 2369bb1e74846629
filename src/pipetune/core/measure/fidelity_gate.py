"""The fidelity gate: a change's fidelity against the user's budget is *met*, *missed*, or
*unproven* (a proportion such as label agreement whose Wilson interval's lower bound is
still below the threshold), with how many more held-out items would prove it. The
validator gates every trial here; the loop uses the same sentences and item counts when
it reports a gate left unproven.
"""

from __future__ import annotations

from pipetune.core.kernel.results import Fidelity
from pipetune.core.measure.stats import wilson_interval, wilson_items_to_prove

#: Fidelity metrics that are proportions (a Wilson interval applies; the item-count rule
#: below is meaningful). Domain metrics such as recall@k are proportions too.
_PROPORTION_HINTS = ("agreement", "match", "recall", "accuracy", "precision", "iou")


def items_needed(threshold: float) -> int:
    """Items a proportion gate at ``threshold`` needs before it can be proven: with none of
    them failing, the Wilson interval's lower bound is ``n / (n + z^2)``, so a 99 % gate
    needs 381 items before even a perfect score shows that it holds."""
    if threshold >= 1.0 or threshold <= 0.0:
        return 0
    return wilson_items_to_prove(1.0, 0, threshold) or 0


def decide_gate(fidelity: Fidelity, threshold: float) -> Fidelity:
    """``fidelity`` with its gate decided: missed (below the threshold), unproven (a
    proportion whose interval's lower bound is below it) or met."""
    if fidelity.value < threshold - 1e-12:
        return fidelity.evolve(gate="missed", items_to_prove=None)
    if not _is_proportion(fidelity.metric) or fidelity.n <= 0 or threshold >= 1.0:
        return fidelity.evolve(gate="met", items_to_prove=None)
    low = (
        fidelity.ci[0]
        if fidelity.ci
        else wilson_interval(round(fidelity.value * fidelity.n), fidelity.n)[0]
    )
    if low >= threshold - 1e-12:
        return fidelity.evolve(gate="met", items_to_prove=None)
    more = wilson_items_to_prove(fidelity.value, fidelity.n, threshold)
    return fidelity.evolve(gate="unproven", items_to_prove=more)


def unproven_sentence(fidelity: Fidelity, threshold: float | None = None) -> str:
    """Why a gate is unproven, and how many more items would prove it."""
    threshold = threshold if threshold is not None else float(fidelity.threshold or 0.0)
    ci = f" [{fidelity.ci[0]:.3f}, {fidelity.ci[1]:.3f}]" if fidelity.ci else ""
    more = fidelity.items_to_prove
    how = (
        f"{more} more held-out items, agreeing as these did, would prove it"
        if more
        else "no number of items agreeing at this rate can prove it"
    )
    return (
        f"the {threshold:.1%} {fidelity.metric} gate is unproven: {fidelity.value:.3f}{ci} on "
        f"{fidelity.n} held-out items, and the interval's lower bound is below "
        f"{threshold:.3f}; {how} (the gate needs at least {items_needed(threshold)} items, "
        "with none disagreeing)"
    )


def _is_proportion(metric: str) -> bool:
    return any(hint in metric.lower() for hint in _PROPORTION_HINTS)
