"""How throughput scales with concurrency inside one instance, from the profile's
closed-loop sweep: efficiency ``E(c) = X(c) / (c * X(1))`` and a kind (*linear*,
*sub-linear*, *flat*, *retrograde*) in a sentence, with a Universal Scalability Law fit
(contention ``sigma``, coherency ``kappa``) when three or more levels were swept. The
rules are in :mod:`pipetune.core.measure.capacity`'s docstring; a capacity plan reports
this beside each side's capacity.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pipetune.core.kernel.results import ConcurrencyPoint


@dataclass(frozen=True)
class Scaling:
    """How throughput scales with concurrency inside one instance (from the sweep)."""

    kind: str  # linear, sub-linear, flat, retrograde, unknown
    levels: tuple[int, ...]
    throughput_rps: tuple[float, ...]
    efficiency: tuple[float, ...]
    usl: Mapping[str, float] | None
    sentence: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["usl"] = dict(self.usl) if self.usl else None
        return data


def scaling(points: Sequence[ConcurrencyPoint]) -> Scaling:
    """How throughput scales over the swept ``points`` (``unknown`` with fewer than two)."""
    ordered = sorted((p for p in points if p.throughput_rps > 0), key=lambda p: p.concurrency)
    if len(ordered) < 2:
        return Scaling(
            "unknown",
            tuple(p.concurrency for p in ordered),
            tuple(p.throughput_rps for p in ordered),
            (),
            None,
            "only one concurrency level was measured: scaling is unknown (profile with "
            "workload.concurrency = (1, 2, 4, ...))",
        )
    levels = np.array([p.concurrency for p in ordered], dtype=float)
    rates = np.array([p.throughput_rps for p in ordered], dtype=float)
    per_worker = rates[0] / levels[0]  # X(1), or the lowest level's per-worker rate
    efficiency = rates / (levels * per_worker)
    usl = fit_usl(levels, rates) if len(ordered) >= 3 else None
    kind, sentence = _kind(levels, rates, efficiency)
    if usl:
        sentence += (
            f"; USL fit: contention sigma={usl['sigma']:.3f}, coherency kappa={usl['kappa']:.4f}"
            + (
                f", peak near concurrency {usl['peak_concurrency']:.0f}"
                if math.isfinite(usl["peak_concurrency"])
                else ""
            )
        )
    return Scaling(
        kind,
        tuple(int(c) for c in levels),
        tuple(float(r) for r in rates),
        tuple(float(e) for e in efficiency),
        usl,
        sentence,
    )


def _kind(levels: np.ndarray, rates: np.ndarray, efficiency: np.ndarray) -> tuple[str, str]:
    """The kind of scaling (retrograde, linear, sub-linear or flat) and its sentence."""
    best = int(np.argmax(rates))
    top, low = rates[-1], rates[0]
    if best < len(rates) - 1 and top < 0.9 * rates[best]:
        return "retrograde", (
            f"retrograde: throughput peaks at concurrency {int(levels[best])} "
            f"({rates[best]:.1f} req/s) and falls to {top:.1f} req/s at {int(levels[-1])}: "
            "more concurrency makes the instance slower (contention, thrashing)"
        )
    if efficiency[-1] >= 0.9:
        return "linear", (
            f"linear: {int(levels[-1])} workers give {top:.1f} req/s, "
            f"{efficiency[-1]:.0%} of {int(levels[-1] / levels[0])}x the lowest level"
        )
    if rates[best] >= 1.1 * low:
        return "sub-linear", (
            f"sub-linear: from {int(levels[0])} to {int(levels[best])} workers throughput "
            f"goes {low:.1f} -> {rates[best]:.1f} req/s ({rates[best] / low:.2f}x for "
            f"{levels[best] / levels[0]:.0f}x the workers; efficiency "
            f"{efficiency[best]:.0%})"
        )
    return "flat", (
        f"flat: {int(levels[-1])} workers give {top:.1f} req/s against {low:.1f} with "
        f"{int(levels[0])}: the instance is saturated by one worker (the GIL, one busy "
        "core, a lock); scale out with instances or processes, not threads"
    )


def fit_usl(levels: np.ndarray, rates: np.ndarray) -> dict[str, float] | None:
    """Least-squares Universal Scalability Law fit (sigma, kappa >= 0), from the linearized
    form ``c X(1) / X(c) - 1 = sigma (c - 1) + kappa c (c - 1)``, with ``X(1)`` taken from
    the lowest level (per worker)."""
    x1 = rates[0] / levels[0]
    y = levels * x1 / rates - 1.0
    design = np.column_stack([levels - 1.0, levels * (levels - 1.0)])
    try:
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    except np.linalg.LinAlgError:
        return None
    sigma, kappa = (max(0.0, float(v)) for v in coef)
    if sigma == 0.0 and kappa == 0.0 and coef[0] < 0:
        sigma = 0.0  # better than linear (caches warming up): report linear
    peak = math.sqrt((1 - sigma) / kappa) if kappa > 0 and sigma < 1 else math.inf
    return {"sigma": sigma, "kappa": kappa, "peak_concurrency": peak}
