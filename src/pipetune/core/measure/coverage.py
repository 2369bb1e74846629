"""How many inputs a side-by-side comparison times, and which ones.

Rules (every comparison: a trial, the loop's final re-measurement, ``pipetune check``):

* the inputs are spread over the whole split, not its first few: rounds walk an order in
  which every prefix is spread evenly over the split (:func:`spread_order`), so a
  workload sorted by length or by time is timed across its whole range (a change whose
  inputs must stay in order, ``InFlight.in_order``, gets contiguous runs instead);
* together the rounds cover at least ``min(all, 100)`` distinct inputs, however slow the
  pipelines, unless the time budget forbids it — then the plan says so, with the figures;
* a pass is sized from the two pipelines being compared *now* (a probe of both), not from
  a profile taken before earlier changes were accepted;
* a change that needs several inputs in flight (:class:`~pipetune.core.kernel.results.InFlight`:
  a batch) gets passes of at least that many inputs, whatever the budget: a pass of one
  input cannot show what batching does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipetune.core.kernel.results import InFlight

#: Distinct inputs a comparison covers at least (or every input of a smaller split).
MIN_INPUTS = 100


@dataclass(frozen=True)
class RoundPlan:
    """Inputs per pass, the order rounds take them in, and why coverage falls short."""

    size: int
    order: tuple[int, ...]
    note: str = ""

    def chunk(self, round_index: int) -> list[int]:
        """Round ``round_index``'s input indices: the next ``size`` of :attr:`order`,
        wrapping, so rounds cover the split before any input repeats."""
        n = len(self.order)
        if self.size >= n:
            return list(self.order)
        start = (round_index * self.size) % n
        window = list(self.order[start : start + self.size])
        if len(window) < self.size:
            window += list(self.order[: self.size - len(window)])
        return window

    def covered(self, rounds: int) -> int:
        """Distinct inputs ``rounds`` rounds time."""
        return min(len(self.order), rounds * self.size)


def spread_order(n: int) -> tuple[int, ...]:
    """``0 .. n-1`` in an order whose every prefix is spread evenly over the range (the
    golden-ratio sequence, first visits kept)."""
    if n <= 2:
        return tuple(range(n))
    step = (math.sqrt(5.0) - 1.0) / 2.0
    points = np.floor(((np.arange(4 * n) * step) % 1.0) * n).astype(int)
    _, first = np.unique(points, return_index=True)
    order = points[np.sort(first)].tolist()
    if len(order) < n:  # never in practice: 4n golden-ratio points fill every slot
        seen = set(order)
        order += [i for i in range(n) if i not in seen]
    return tuple(order)


def plan_rounds(
    n: int,
    rounds: int,
    per_item_s: tuple[float, float],
    *,
    round_target_s: float,
    min_items_per_round: int = 1,
    items_per_round: int | None = None,
    min_inputs: int = MIN_INPUTS,
    time_budget_s: float | None = None,
    in_flight: InFlight | None = None,
    min_samples: int = 0,
) -> RoundPlan:
    """Size the passes of ``rounds`` rounds over ``n`` inputs.

    ``per_item_s``: seconds per input of each side, measured now. A pass aims at
    ``round_target_s`` on the slower side, and at least enough inputs that the rounds
    cover ``min(n, min_inputs)``; ``items_per_round`` fixes the size instead (tests,
    explicit settings). ``time_budget_s`` caps the estimated time of the ``rounds`` rounds
    (four passes each), never below what ``in_flight`` needs. ``min_samples``: latency
    samples each side needs (the metric's quantile); each round gives a side two passes.
    A change that needs its inputs ``in_order`` gets contiguous runs of the split instead
    of the spread order."""
    order = tuple(range(n)) if in_flight is not None and in_flight.in_order else spread_order(n)
    slowest = max(max(per_item_s), 1e-9)
    floor = max(1, min_items_per_round, in_flight.pass_inputs if in_flight else 1)
    wanted = min(n, min_inputs)
    if items_per_round:
        size = max(items_per_round, in_flight.pass_inputs if in_flight else 1)
    else:
        size = max(
            floor,
            int(round_target_s / slowest),
            math.ceil(wanted / rounds),
            math.ceil(min_samples / (2 * rounds)),
        )
    size = min(n, size)
    notes = []
    if time_budget_s is not None and not items_per_round:
        per_round_item = 2.0 * sum(max(p, 1e-9) for p in per_item_s)  # ABBA: 2 passes a side
        affordable = int(time_budget_s / (rounds * per_round_item))
        if affordable < size:
            size = min(n, max(floor, affordable))
            if min(n, rounds * size) < wanted:
                notes.append(
                    f"the time budget ({time_budget_s:.0f} s left) allows {size} input(s) a "
                    f"pass at {slowest * 1000:.3g} ms an input: {min(n, rounds * size)} of "
                    f"the {wanted} distinct inputs the coverage rule asks for"
                )
    if in_flight is not None and n < in_flight.pass_inputs:
        notes.append(
            f"the split has {n} inputs, fewer than the {in_flight.pass_inputs} a pass needs to "
            f"show this change's gain ({in_flight.describe()})"
        )
    return RoundPlan(size=size, order=order, note="; ".join(notes))


def coverage_text(inputs_timed: int, inputs_total: int, samples_per_side: int) -> str:
    """``timed on 100 of 180 inputs, 1600 latency samples per side``."""
    return (
        f"timed on {inputs_timed} of {inputs_total} inputs, "
        f"{samples_per_side} latency samples per side"
    )


def merge_in_flight(*needs: InFlight | None) -> InFlight | None:
    """The most demanding of several needs: the largest pass, and a backlog if any asks
    for one (the sentences of those that set the pass size are kept)."""
    given = [need for need in needs if need is not None]
    if not given:
        return None
    from dataclasses import replace

    largest = max(given, key=lambda need: need.pass_inputs)
    if any(need.arrival == "backlog" for need in given) and largest.arrival != "backlog":
        largest = replace(largest, arrival="backlog")
    if any(need.in_order for need in given) and not largest.in_order:
        largest = replace(largest, in_order=True)
    return largest


def serving_in_flight(*batch_sizes: int) -> InFlight | None:
    """What pipelines served in batches need in flight: a pass of one input cannot form a
    batch of eight (``None`` when none is batched)."""
    batch = max(batch_sizes, default=1)
    if batch <= 1:
        return None
    return InFlight(
        inputs=batch,
        arrival="workload",
        assumes=f"batches of {batch} inputs (the pipeline's serving batch size)",
    )
