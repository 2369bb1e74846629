"""Fidelity for ranked ids: recall@k against the reference ranking, NDCG@k beside it.

The reference is the exact result (exact top-k retrieval) or the full ranking (a ranker that
scored every catalog item). A request's output may be a 1-D array or list of ids, a
``(scores, ids)`` pair as ``faiss.Index.search`` returns, a 2-D array holding one row per
query of a batched request, or a mapping with an ``"ids"`` entry; :func:`rows_of` turns each
into ranked rows of ids.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.registry import OutputKind
from pipetune.core.kernel.results import Fidelity
from pipetune.core.measure.stats import wilson_interval


def rows_of(output: Any) -> list[np.ndarray]:
    """The ranked id rows in one request's output (one row per query)."""
    ids = getattr(output, "ids", None)
    if ids is not None and not callable(ids):
        return rows_of(ids)
    if isinstance(output, Mapping):
        if "ids" not in output:
            raise ConfigError(
                f"a ranked-ids output mapping needs an 'ids' entry, got {sorted(output)}"
            )
        return rows_of(output["ids"])
    if isinstance(output, tuple) and len(output) == 2 and _is_integer_like(output[1]):
        return rows_of(output[1])  # (distances, ids) as faiss returns them
    detach = getattr(output, "detach", None)
    if callable(detach):  # a torch tensor, without importing torch
        output = detach().cpu().numpy()
    array = np.asarray(output)
    if array.ndim == 0:
        raise ConfigError(f"expected ranked ids, got a scalar ({output!r})")
    if (
        array.size
        and not np.issubdtype(array.dtype, np.integer)
        and not np.all(np.equal(np.mod(array, 1), 0))
    ):
        raise ConfigError(f"expected integer ids, got values of type {array.dtype}")
    array = array.astype(np.int64, copy=False)
    if array.ndim == 1:
        return [array]
    if array.ndim == 2:
        return list(array)
    raise ConfigError(f"expected ranked ids as a 1-D or 2-D array, got shape {array.shape}")


def _is_integer_like(value: Any) -> bool:
    dtype = getattr(value, "dtype", None)
    if dtype is not None:
        return np.issubdtype(np.dtype(str(dtype).replace("torch.", "")), np.integer)
    return False


def recall_at_k(
    reference: Sequence[int] | np.ndarray,
    candidate: Sequence[int] | np.ndarray,
    k: int | None = None,
) -> float:
    """Share of the reference's top-k that appears in the candidate's top-k."""
    ref = np.asarray(reference)[: k or len(reference)]
    if len(ref) == 0:
        return 1.0
    cand = np.asarray(candidate)[: len(ref)]
    return len(set(ref.tolist()) & set(cand.tolist())) / len(ref)


def ndcg_at_k(
    reference: Sequence[int] | np.ndarray,
    candidate: Sequence[int] | np.ndarray,
    k: int | None = None,
) -> float:
    """NDCG@k with graded relevance from the reference ranking.

    The item at reference rank ``r`` (0-based) has relevance ``(k - r) / k``; items outside
    the reference top-k have none. The ideal DCG is the reference order itself, so 1.0 means
    the candidate returned the reference's items in the reference's order.
    """
    ref = np.asarray(reference)[: k or len(reference)]
    k = len(ref)
    if k == 0:
        return 1.0
    relevance = {int(item): (k - rank) / k for rank, item in enumerate(ref.tolist())}
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)
    ideal = float(np.sum(np.array([(k - r) / k for r in range(k)]) * discounts))
    cand = np.asarray(candidate)[:k].tolist()
    gains = np.array([relevance.get(int(item), 0.0) for item in cand] + [0.0] * (k - len(cand)))
    return float(np.sum(gains * discounts) / ideal)


def ranked_ids_fidelity(
    baseline: Sequence[Any],
    candidate: Sequence[Any],
    labels: Sequence[Any] | None = None,
) -> Fidelity:
    """recall@k of candidate outputs against baseline outputs (pooled over every query's
    top-k slots, with a Wilson interval), NDCG@k and the worst queries in ``details``.

    ``k`` is the length of each baseline row. With ``labels`` (the relevant ids of each
    request), the hit rate of both rankings against them goes in ``details`` too.
    """
    if len(baseline) != len(candidate):
        raise ConfigError(
            f"cannot compare rankings: {len(baseline)} baseline outputs, "
            f"{len(candidate)} candidate outputs"
        )
    recalls: list[float] = []
    ndcgs: list[float] = []
    hits = slots = exact = 0
    ks: set[int] = set()
    for position, (base, cand) in enumerate(zip(baseline, candidate, strict=True)):
        base_rows, cand_rows = rows_of(base), rows_of(cand)
        if len(base_rows) != len(cand_rows):
            raise ConfigError(
                f"output #{position}: the baseline has {len(base_rows)} ranked rows, "
                f"the candidate {len(cand_rows)}"
            )
        for ref, got in zip(base_rows, cand_rows, strict=True):
            k = len(ref)
            ks.add(k)
            found = len(set(ref.tolist()) & set(got[:k].tolist()))
            hits += found
            slots += k
            recalls.append(found / k if k else 1.0)
            ndcgs.append(ndcg_at_k(ref, got))
            exact += int(len(got) >= k and np.array_equal(ref, got[:k]))
    queries = len(recalls)
    value = hits / slots if slots else 1.0
    k_label = str(ks.pop()) if len(ks) == 1 else "k"
    details: dict[str, Any] = {
        "recall_at_k": value,
        "ndcg_at_k": float(np.mean(ndcgs)) if ndcgs else 1.0,
        "k": int(k_label) if k_label != "k" else sorted(ks),
        "queries": queries,
        "min_recall": float(min(recalls)) if recalls else 1.0,
        "p05_recall": float(np.percentile(recalls, 5)) if recalls else 1.0,
        "identical_rankings": exact / queries if queries else 1.0,
        "ci_note": "Wilson interval over the pooled top-k slots",
    }
    if labels is not None:
        details.update(_label_hits(baseline, candidate, labels))
    return Fidelity(
        metric=f"recall@{k_label}",
        value=value,
        n=queries,
        ci=wilson_interval(hits, slots),
        details=details,
    )


def _label_hits(
    baseline: Sequence[Any], candidate: Sequence[Any], labels: Sequence[Any]
) -> dict[str, float]:
    """Hit rate of each ranking against the labelled relevant ids."""

    def rate(outputs: Sequence[Any]) -> float:
        found = total = 0
        for output, relevant in zip(outputs, labels, strict=True):
            wanted = {int(i) for i in np.atleast_1d(np.asarray(relevant)).tolist()}
            got = {int(i) for row in rows_of(output) for i in row.tolist()}
            found += len(wanted & got)
            total += len(wanted)
        return found / total if total else math.nan

    base, cand = rate(baseline), rate(candidate)
    return {
        "baseline_label_recall": base,
        "candidate_label_recall": cand,
        "label_recall_drop": base - cand,
    }


def output_kinds() -> list[OutputKind]:
    """What ``register_output_kinds`` returns for the recsys plugin."""
    return [
        OutputKind(
            "ranked_ids",
            "recall@k",
            ranked_ids_fidelity,
            "recall@k of the baseline's top-k ids (NDCG@k and hit rates in details)",
        )
    ]
