"""Module-level fidelity of a compiled model against the eager one.

The validator measures the pipeline's own fidelity metric (label agreement, recall...) on
held-out inputs; this is the finer check underneath, on the module's raw outputs for the
calls the pipeline really makes: the largest absolute difference (scaled by the output's
magnitude, so a tolerance means the same for logits and for hidden states), the cosine
similarity of each output row (what an embedding consumer sees), and the agreement of
the arg-max along the last dimension (what a classifier head decides).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class OutputAgreement:
    calls: int
    max_abs_diff: float
    scale: float
    min_cosine: float
    mean_cosine: float
    argmax_agreement: float | None

    @property
    def relative_max_abs_diff(self) -> float:
        return self.max_abs_diff / max(self.scale, 1e-12)

    def within(self, tolerance: float) -> bool:
        """True when the largest difference is within ``tolerance`` of the output scale
        (max |eager output|, at least 1)."""
        return self.max_abs_diff <= tolerance * max(1.0, self.scale)

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "max_abs_diff": self.max_abs_diff,
            "output_scale": self.scale,
            "min_cosine": self.min_cosine,
            "mean_cosine": self.mean_cosine,
            "argmax_agreement": self.argmax_agreement,
        }


def as_arrays(output: Any) -> list[np.ndarray]:
    """An output's tensors and arrays as float64 arrays, in structure order (tensors,
    arrays, tuples, lists, dicts, transformers ModelOutputs)."""
    leaves: list[Any] = []
    _collect(output, leaves)
    arrays = []
    for leaf in leaves:
        detach = getattr(leaf, "detach", None)
        if callable(detach):
            leaf = detach().cpu().float().numpy()
        arrays.append(np.asarray(leaf, dtype=np.float64))
    return arrays


def _collect(value: Any, leaves: list[Any]) -> None:
    if isinstance(value, np.ndarray) or callable(getattr(value, "detach", None)):
        leaves.append(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            _collect(item, leaves)
    elif isinstance(value, list | tuple):
        for item in value:
            _collect(item, leaves)


def compare_outputs(eager: Sequence[Any], candidate: Sequence[Any]) -> OutputAgreement:
    """Compare the outputs of the same calls, one output structure per call."""
    max_diff, scale = 0.0, 0.0
    cosines: list[float] = []
    agree = total = 0
    for base, cand in zip(eager, candidate, strict=True):
        left, right = as_arrays(base), as_arrays(cand)
        if len(left) != len(right):
            raise ValueError(f"{len(left)} eager outputs, {len(right)} compiled outputs")
        for a, b in zip(left, right, strict=True):
            if a.shape != b.shape:
                raise ValueError(f"output shapes differ: {a.shape} vs {b.shape}")
            if not a.size:
                continue
            max_diff = max(max_diff, float(np.max(np.abs(a - b))))
            scale = max(scale, float(np.max(np.abs(a))))
            rows_a = a.reshape(-1, a.shape[-1]) if a.ndim else a.reshape(1, 1)
            rows_b = b.reshape(-1, b.shape[-1]) if b.ndim else b.reshape(1, 1)
            norms = np.linalg.norm(rows_a, axis=1) * np.linalg.norm(rows_b, axis=1)
            dots = np.sum(rows_a * rows_b, axis=1)
            valid = norms > 0
            cosines.extend((dots[valid] / norms[valid]).tolist())
            if a.ndim >= 1 and a.shape[-1] > 1:
                agree += int(np.sum(rows_a.argmax(axis=1) == rows_b.argmax(axis=1)))
                total += rows_a.shape[0]
    return OutputAgreement(
        calls=len(eager),
        max_abs_diff=max_diff,
        scale=scale,
        min_cosine=float(min(cosines)) if cosines else 1.0,
        mean_cosine=float(np.mean(cosines)) if cosines else 1.0,
        argmax_agreement=agree / total if total else None,
    )


def max_abs_diffs(outputs: Sequence[Any], expected: Sequence[Any]) -> list[float]:
    return [
        float(np.max(np.abs(np.asarray(o, dtype=np.float64) - np.asarray(e, dtype=np.float64))))
        if np.asarray(e).size
        else 0.0
        for o, e in zip(outputs, expected, strict=True)
    ]
