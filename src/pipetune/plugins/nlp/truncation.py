"""Truncation search: the shortest max length that keeps the pipeline's answers.

Searched, never guessed: every length on a ladder (32, 64, 128, 256, 512 by default) below
the stage's current max length is tried in ascending order on a *calibration* split of the
tuning workload, and the pipeline's outputs are compared with the original pipeline's
full-length outputs. The first length whose agreement meets the fidelity floor is
confirmed on a *held-out* split; if confirmation fails the search moves up the ladder.
The agreement curve (every length tried, with its Wilson interval) is returned for the
report.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pipetune.core.kernel.errors import Rejected
from pipetune.core.kernel.results import Fidelity

LADDER: tuple[int, ...] = (32, 64, 128, 256, 512)


@dataclass(frozen=True)
class LadderPoint:
    max_length: int
    split: str  # "calibration" or "holdout"
    agreement: float
    n: int
    ci: tuple[float, float] | None
    passed: bool
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TruncationResult:
    chosen: int
    current: int
    floor: float
    curve: tuple[LadderPoint, ...]
    calibration_n: int
    holdout_n: int

    def notes(self) -> dict[str, Any]:
        return {
            "chosen_max_length": self.chosen,
            "previous_max_length": self.current,
            "fidelity_floor": self.floor,
            "calibration_items": self.calibration_n,
            "holdout_items": self.holdout_n,
            "curve": [asdict(point) for point in self.curve],
        }


def split_indices(n: int, calibration: float, seed: int) -> tuple[list[int], list[int]]:
    """A shuffled, disjoint (calibration, holdout) split of ``range(n)``."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    cut = max(1, min(n - 1, round(n * calibration))) if n > 1 else n
    return sorted(order[:cut]), sorted(order[cut:])


def search(
    *,
    current: int,
    items: Sequence[Any],
    baseline: Sequence[Any],
    outputs_at: Callable[[int, Sequence[Any]], list[Any]],
    fidelity: Callable[[Sequence[Any], Sequence[Any], Sequence[Any] | None], Fidelity],
    floor: float,
    labels: Sequence[Any] | None = None,
    ladder: Sequence[int] = LADDER,
    calibration: float = 0.6,
    seed: int = 0,
    log: Callable[[str], None] = lambda message: None,
) -> TruncationResult:
    """Find the shortest ladder length whose agreement meets ``floor`` on the calibration
    split and is confirmed on the holdout split.

    Args:
        current: the stage's max length now (only shorter lengths are tried).
        items: the tuning inputs; ``baseline``: the original pipeline's outputs for them.
        outputs_at: ``outputs_at(max_length, items) -> outputs`` of the candidate pipeline.
        fidelity: ``fidelity(candidate, baseline, labels) -> Fidelity``.
    Raises:
        Rejected: when no shorter length meets the floor, with the curve in the message.
    """
    candidates = sorted({int(length) for length in ladder if int(length) < current})
    if not candidates:
        raise Rejected(
            f"max length is already {current}: no shorter length on the ladder "
            f"{list(ladder)} to try"
        )
    if len(items) < 2:
        raise Rejected("truncation search needs at least two tuning inputs")
    cal, hold = split_indices(len(items), calibration, seed)

    def subset(values: Sequence[Any] | None, indices: list[int]) -> list[Any] | None:
        return None if values is None else [values[i] for i in indices]

    curve: list[LadderPoint] = []

    def evaluate(length: int, indices: list[int], split: str) -> LadderPoint:
        outputs = outputs_at(length, [items[i] for i in indices])
        result = fidelity(outputs, subset(baseline, indices) or [], subset(labels, indices))
        point = LadderPoint(
            max_length=length,
            split=split,
            agreement=result.value,
            n=result.n,
            ci=result.ci,
            passed=result.value >= floor,
            details={k: v for k, v in result.details.items() if isinstance(v, int | float)},
        )
        curve.append(point)
        log(
            f"truncation {length:>4} on {split} ({point.n} items): agreement "
            f"{point.agreement:.2%} ({'meets' if point.passed else 'below'} {floor:.2%})"
        )
        return point

    for length in candidates:
        if not evaluate(length, cal, "calibration").passed:
            continue
        if not hold or evaluate(length, hold, "holdout").passed:
            return TruncationResult(length, current, floor, tuple(curve), len(cal), len(hold))
    summary = ", ".join(f"{p.max_length}: {p.agreement:.1%} ({p.split})" for p in curve)
    raise Rejected(
        f"no max length below {current} keeps agreement at or above {floor:.1%} (curve: {summary})"
    )
