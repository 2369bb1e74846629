"""Fidelity for token ids: exact, id for id, with the first difference shown.

Label agreement (and accuracy against labels) is the generic plugin's ``labels`` metric;
this module answers for ``token_ids`` outputs in the shapes text pipelines produce:
:class:`~pipetune.plugins.nlp.padding.Encoded`, transformers ``BatchEncoding`` / dicts with
``input_ids``, tensors, arrays, lists of ids, and tuples of any of these (one per section).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipetune.core.kernel.registry import OutputKind
from pipetune.core.kernel.results import Fidelity
from pipetune.core.measure.fidelity import share_agreeing
from pipetune.plugins.nlp.padding import Encoded


def id_rows(value: Any) -> list[tuple[int, ...]]:
    """The real (unpadded where known) id sequences inside one output."""
    if isinstance(value, Encoded):
        return [tuple(int(i) for i in value.tokens)]
    if isinstance(value, Mapping) and "input_ids" in value:
        ids = value["input_ids"]
        mask = value.get("attention_mask")
        rows = _matrix(ids)
        if mask is not None:
            masks = _matrix(mask)
            rows = [
                tuple(i for i, m in zip(r, mr, strict=False) if m)
                for r, mr in zip(rows, masks, strict=False)
            ]
        return rows
    if isinstance(value, list | tuple) and value and not _is_int(value[0]):
        return [row for part in value for row in id_rows(part)]
    return _matrix(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _matrix(value: Any) -> list[tuple[int, ...]]:
    detach = getattr(value, "detach", None)
    if callable(detach):
        value = detach().cpu().numpy()
    array = np.asarray(value)
    if array.ndim == 0:
        return [(int(array),)]
    if array.ndim == 1:
        return [tuple(int(i) for i in array)]
    return [tuple(int(i) for i in row) for row in array.reshape(-1, array.shape[-1])]


def exact_ids(baseline: Sequence[Any], candidate: Sequence[Any]) -> Fidelity:
    """Share of outputs whose id sequences are identical; the first mismatch in details."""
    n = len(baseline)
    agree = 0
    first: dict[str, Any] | None = None
    for index, (b, c) in enumerate(zip(baseline, candidate, strict=True)):
        left, right = id_rows(b), id_rows(c)
        if left == right:
            agree += 1
            continue
        if first is None:
            first = _describe(index, left, right)
    return share_agreeing("exact_token_ids", agree, n, {"agree": agree, "first_mismatch": first})


def _describe(index: int, left: list[tuple[int, ...]], right: list[tuple[int, ...]]) -> dict:
    if len(left) != len(right):
        return {"input": index, "sequences": [len(left), len(right)]}
    for row, (a, b) in enumerate(zip(left, right, strict=True)):
        if a != b:
            position = next(
                (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                min(len(a), len(b)),
            )
            return {
                "input": index,
                "sequence": row,
                "position": position,
                "expected": list(a[max(0, position - 2) : position + 3]),
                "got": list(b[max(0, position - 2) : position + 3]),
            }
    return {"input": index}


def output_kinds() -> list[OutputKind]:
    """What ``register_output_kinds`` returns for the nlp plugin."""
    return [
        OutputKind(
            "token_ids",
            "exact_token_ids",
            lambda baseline, candidate, labels: exact_ids(baseline, candidate),
            "share of outputs whose token ids are identical, id for id",
        )
    ]
