"""The generic output kinds and their metrics: ``labels`` (agreement, and accuracy against
the workload's labels), ``tensor`` (1 - relative error) and ``any`` (exact equality)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipetune.core.kernel.registry import OutputKind
from pipetune.core.kernel.results import Fidelity
from pipetune.core.measure.fidelity import share_agreeing


def output_kinds() -> list[OutputKind]:
    """What ``register_output_kinds`` returns for the generic plugin."""
    return [
        OutputKind(
            "labels",
            "label_agreement",
            label_agreement,
            "agreement with the baseline's labels; accuracy drop against the workload's labels",
        ),
        OutputKind(
            "tensor",
            "1-relative_error",
            lambda baseline, candidate, labels: tensor_closeness(baseline, candidate),
            "1 - mean relative L2 error of numeric outputs",
        ),
        OutputKind(
            "any",
            "exact_match",
            lambda baseline, candidate, labels: exact_match(baseline, candidate),
            "share of outputs equal to the baseline's",
        ),
    ]


def same(a: Any, b: Any) -> bool:
    """Equality that works for numpy arrays, tensors and nested sequences."""
    if a is b:
        return True
    if hasattr(a, "shape") or hasattr(b, "shape"):
        try:
            left, right = np.asarray(_to_numpy(a)), np.asarray(_to_numpy(b))
            return left.shape == right.shape and bool(np.array_equal(left, right))
        except (TypeError, ValueError):
            return False
    return equal_or_false(a, b)


def equal_or_false(a: Any, b: Any) -> bool:
    """``a == b`` as a bool, or False where the comparison raises (incomparable types, an
    array whose truth is ambiguous)."""
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def label_agreement(
    baseline: Sequence[Any], candidate: Sequence[Any], labels: Sequence[Any] | None
) -> Fidelity:
    n = len(baseline)
    agree = sum(same(b, c) for b, c in zip(baseline, candidate, strict=True))
    details: dict[str, Any] = {"agree": agree, "disagree": n - agree}
    if labels is not None:
        base_acc = sum(same(b, y) for b, y in zip(baseline, labels, strict=True)) / max(n, 1)
        cand_acc = sum(same(c, y) for c, y in zip(candidate, labels, strict=True)) / max(n, 1)
        details.update(
            baseline_accuracy=base_acc,
            candidate_accuracy=cand_acc,
            accuracy_drop=base_acc - cand_acc,
        )
    return share_agreeing("label_agreement", agree, n, details)


def exact_match(baseline: Sequence[Any], candidate: Sequence[Any]) -> Fidelity:
    n = len(baseline)
    agree = sum(same(b, c) for b, c in zip(baseline, candidate, strict=True))
    first = next(
        (i for i, (b, c) in enumerate(zip(baseline, candidate, strict=True)) if not same(b, c)),
        None,
    )
    return share_agreeing("exact_match", agree, n, {"agree": agree, "first_mismatch": first})


def tensor_closeness(baseline: Sequence[Any], candidate: Sequence[Any]) -> Fidelity:
    """1 - mean relative L2 error; max-abs-diff and mean cosine similarity in details."""
    errors, cosines, max_abs = [], [], 0.0
    for b, c in zip(baseline, candidate, strict=True):
        left = np.asarray(_to_numpy(b), dtype=np.float64).ravel()
        right = np.asarray(_to_numpy(c), dtype=np.float64).ravel()
        if left.shape != right.shape:
            errors.append(1.0)
            cosines.append(0.0)
            continue
        norm = float(np.linalg.norm(left))
        diff = float(np.linalg.norm(left - right))
        errors.append(diff / norm if norm > 0 else float(diff > 0))
        denom = norm * float(np.linalg.norm(right))
        cosines.append(float(left @ right / denom) if denom > 0 else float(diff == 0))
        if left.size:
            max_abs = max(max_abs, float(np.max(np.abs(left - right))))
    n = len(errors)
    mean_error = float(np.mean(errors)) if n else 0.0
    return Fidelity(
        metric="1-relative_error",
        value=max(0.0, 1.0 - mean_error),
        n=n,
        details={
            "mean_relative_error": mean_error,
            "max_abs_diff": max_abs,
            "mean_cosine": float(np.mean(cosines)) if n else 1.0,
        },
    )


def _to_numpy(value: Any) -> Any:
    detach = getattr(value, "detach", None)
    if callable(detach):  # torch tensors, without importing torch
        return detach().cpu().float().numpy()
    return value
