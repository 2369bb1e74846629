"""What a pipeline costs to run, before and after: per 1,000 predictions and per month.

Two views, both from the measured throughput of one instance:

* **utilized** (the report contract's ``per_1000_*`` and ``monthly_*``): the compute time
  the predictions take, priced at ``cost_per_hour``: ``1000 / throughput`` seconds per
  1,000 predictions, and ``monthly_volume / 1000`` times that per month. This is the cost
  when instances are kept busy (a batch job, an autoscaled fleet).
* **provisioned** (``instances_*``): whole instances kept up all month (730 hours) to
  serve the average rate ``monthly_volume / (730 h)`` — at least one. This is what an
  always-on service pays; it moves in steps.
"""

from __future__ import annotations

import math
from typing import Any

from pipetune.core.kernel.model import Requirements

HOURS_PER_MONTH = 730.0


def per_1000(cost_per_hour: float, throughput_rps: float) -> float | None:
    if throughput_rps <= 0:
        return None
    return cost_per_hour * (1000.0 / throughput_rps) / 3600.0


def estimate(
    requirements: Requirements, throughput_before: float, throughput_after: float
) -> dict[str, Any] | None:
    """The report's ``cost`` object, or ``None`` without a cost per instance-hour."""
    rate = requirements.cost_per_hour
    if rate is None:
        return None
    before = per_1000(rate, throughput_before)
    after = per_1000(rate, throughput_after)
    volume = requirements.monthly_volume
    cost: dict[str, Any] = {
        "cost_per_hour": rate,
        "per_1000_before": before,
        "per_1000_after": after,
        "monthly_volume": volume,
        "monthly_before": None,
        "monthly_after": None,
        "basis": "one instance at the measured throughput",
    }
    if volume is not None and before is not None and after is not None:
        cost["monthly_before"] = before * volume / 1000.0
        cost["monthly_after"] = after * volume / 1000.0
        average_rps = volume / (HOURS_PER_MONTH * 3600.0)
        for side, throughput in (("before", throughput_before), ("after", throughput_after)):
            instances = max(1, math.ceil(average_rps / throughput)) if throughput > 0 else None
            cost[f"instances_{side}"] = instances
            cost[f"provisioned_monthly_{side}"] = (
                None if instances is None else instances * rate * HOURS_PER_MONTH
            )
    return cost
