"""The optimize loop's splits of the workload: tune, calibration and held out.

Changes are tuned on one share of the inputs and validated on another, never seen by the
tune step; a calibration split (static int8 scales, a quantized model's ranges) is carved
out of the tuning share so that nothing is evaluated on the inputs it was calibrated on.
This module owns those splits (group-aware when the workload has groups), the given
baseline outputs cut the same way, the workload index of each held-out input, and the
warnings a split earns: duplicates across it, too few inputs to split at all or to prove
the fidelity gate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipetune.core.kernel.model import Workload
from pipetune.core.loop.overlap import find_overlap
from pipetune.core.measure.fidelity_gate import items_needed

#: Below this many inputs the workload is not split: tuned and validated on the same items.
MIN_SPLIT_ITEMS = 20
#: The calibration split (static int8 scales, a quantized model's ranges) is this share of
#: the tuning split, at most :data:`CALIBRATION_MAX_ITEMS` inputs.
CALIBRATION_FRACTION = 0.2
CALIBRATION_MAX_ITEMS = 32
#: Output kinds whose fidelity is a proportion (a gate needs enough items to be proven).
PROPORTION_KINDS = ("labels", "ranked_ids", "tokens", "token_ids", "frame_labels")


def split_workload(
    workload: Workload, tune_fraction: float, warnings: list[str]
) -> tuple[Workload, Workload, Workload]:
    """(tune, calibration, held-out) workloads; see :func:`split_indices`."""
    n = len(workload)
    if n < MIN_SPLIT_ITEMS:
        warnings.append(
            f"the workload has {n} inputs, too few to hold out a validation split: "
            "changes are tuned, calibrated and validated on the same inputs"
        )
        return workload, workload, workload
    tune, calibration, holdout = split_indices(workload, tune_fraction, warnings)
    name = workload.name
    return (
        workload.subset(tune, name=f"{name}[tune]"),
        workload.subset(calibration, name=f"{name}[calibration]"),
        workload.subset(holdout, name=f"{name}[holdout]"),
    )


def split_indices(
    workload: Workload, tune_fraction: float, warnings: list[str]
) -> tuple[list[int], list[int], list[int]]:
    """Tune, calibration and held-out item indices (group-aware when the workload has
    groups). The calibration split is carved out of the tuning share: it is never
    evaluated on, by the tune steps or by the validator."""
    tune, holdout = workload.split_indices(tune_fraction)
    share = min(CALIBRATION_FRACTION, CALIBRATION_MAX_ITEMS / max(len(tune), 1))
    part = workload.subset(tune)
    if len(tune) < 4 or (part.group_count is not None and part.group_count < 2):
        said = (
            "the tuning split is too small to spare a calibration split: calibration "
            "draws from the tuning split"
        )
        if said not in warnings:  # the split is computed more than once
            warnings.append(said)
        return tune, tune, holdout
    calibration, rest = part.split_indices(share, seed=workload.seed + 1)
    return [tune[i] for i in rest], [tune[i] for i in calibration], holdout


def holdout_ids(
    workload: Workload, tune_fraction: float, item_ids: Sequence[int], warnings: list[str]
) -> list[int]:
    """The index in the user's workload of each held-out input (as :func:`split_workload`
    splits ``workload``, whose input ``i`` is the user's ``item_ids[i]``)."""
    if len(workload) < MIN_SPLIT_ITEMS:
        return list(item_ids)
    _, _, holdout = split_indices(workload, tune_fraction, warnings)
    return [item_ids[i] for i in holdout]


def cached_outputs(
    workload: Workload,
    tune_fraction: float,
    outputs: Sequence[Any] | None,
    warnings: list[str],
) -> tuple[list[Any] | None, list[Any] | None]:
    """The given baseline outputs for the (tune, held-out) split, as :func:`split_workload`
    splits the workload."""
    if outputs is None:
        return None, None
    if len(workload) < MIN_SPLIT_ITEMS:
        return list(outputs), list(outputs)
    tune, _, holdout = split_indices(workload, tune_fraction, warnings)
    return [outputs[i] for i in tune], [outputs[i] for i in holdout]


def check_splits(
    tune: Workload,
    holdout: Workload,
    *,
    output_kind: str,
    max_accuracy_drop: float,
    tune_fraction: float,
    warnings: list[str],
) -> dict[str, Any] | None:
    """Exact duplicates across the split (returned for the report: ``None`` when the
    workload is not split), and whether the held-out split can prove the fidelity gate at
    all (a workload too small says so, with the number needed)."""
    found = None
    if tune is not holdout:
        overlap = find_overlap(tune.items, holdout.items)
        found = overlap.to_dict()
        if overlap.warning():
            warnings.append(overlap.warning())
    floor = 1.0 - max_accuracy_drop
    needed = items_needed(floor)
    if output_kind in PROPORTION_KINDS and needed > len(holdout):
        share = 1.0 - tune_fraction
        warnings.append(
            f"the held-out split has {len(holdout)} inputs; the {floor:.1%} fidelity gate "
            f"needs at least {needed} (with none disagreeing) to be proven, so any kept "
            f"change's gate will be reported unproven: give the workload at least "
            f"{int(needed / share) + 1} inputs ({share:.0%} are held out)"
        )
    return found
