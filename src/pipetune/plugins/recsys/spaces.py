"""The vector space an ANN index searches in, for each user metric.

An index need not search in the user's own space. For an inner-product ranking over
vectors whose norms differ, two standard alternatives often search faster at the same
recall, and the index choice tries them beside the plain one (:mod:`.selection`):

* ``native``: the user's metric as is (cosine: inner product over normalized vectors).
* ``mips_l2``: the MIPS-to-L2 reduction (Bachrach et al., 2014). Every item gets one
  extra coordinate ``sqrt(M² − ‖x‖²)`` (``M`` the largest item norm) and every query a
  ``0``; then ``‖q' − x'‖² = ‖q‖² + M² − 2·q·x``, so the L2 ranking of the augmented
  vectors *is* the inner-product ranking, exactly, and an L2 index (whose clusters and
  graph neighbourhoods are not dominated by the longest vectors) does the search.
* ``normalized``: candidates by cosine (an index over unit vectors), re-ranked exactly by
  inner product against the item matrix. Only where the ranking allows it: the tune step
  checks on the tuning queries that the cosine top-k' holds the inner-product top-k.

With equal norms all three rank alike, so only ``native`` is tried.
"""

from __future__ import annotations

import numpy as np

from pipetune.core.kernel.errors import ConfigError

SPACES = ("native", "mips_l2", "normalized")
#: Item norms must spread at least this much (largest / smallest) before the other spaces
#: can rank differently from the plain one, and are worth an index build.
MIN_NORM_SPREAD = 1.02


def check(space: str, metric: str) -> None:
    if space not in SPACES:
        raise ConfigError(f"index space must be one of {', '.join(SPACES)}, not {space!r}")
    if space != "native" and metric != "ip":
        raise ConfigError(
            f"the {space} index space is for inner-product rankings, not metric {metric!r}"
        )


def norm_stats(matrix: np.ndarray) -> dict[str, float]:
    """How much the item norms differ: smallest, largest, 1st and 99th percentile, and the
    spread (largest / smallest; ``inf`` with a zero vector)."""
    norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix, dtype=np.float64))
    low, high = float(norms.min()), float(norms.max())
    return {
        "min": low,
        "max": high,
        "p01": float(np.quantile(norms, 0.01)),
        "p99": float(np.quantile(norms, 0.99)),
        "spread": high / low if low > 0 else float("inf"),
    }


def candidate_spaces(metric: str, stats: dict[str, float] | None) -> list[tuple[str, str]]:
    """The spaces worth an index for ``metric``, each with why. ``normalized`` still needs
    the ranking check of the tune step (:func:`cosine_depth`)."""
    spaces = [("native", f"the {metric} ranking as is")]
    spread = (stats or {}).get("spread", 1.0)
    if metric == "ip" and spread >= MIN_NORM_SPREAD:
        told = f"item norms spread {spread:.2f}x"
        spaces.append(
            ("mips_l2", f"{told}: the MIPS→L2 reduction ranks exactly alike in an L2 index")
        )
        spaces.append(("normalized", f"{told}: cosine candidates re-ranked by inner product"))
    return spaces


def index_dim(dim: int, space: str) -> int:
    return dim + 1 if space == "mips_l2" else dim


def index_metric(metric: str, space: str) -> str:
    """The metric the faiss index itself uses: ``ip`` or ``l2``."""
    if space == "mips_l2" or metric == "l2":
        return "l2"
    return "ip"


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def max_sq_norm(items: np.ndarray) -> float:
    """``M²``: the largest squared item norm (what the MIPS→L2 reduction pads up to)."""
    return float(np.einsum("ij,ij->i", items, items).max())


def index_vectors(items: np.ndarray, metric: str, space: str) -> np.ndarray:
    """What the index holds for ``items`` (never modified): contiguous float32."""
    check(space, metric)
    if space == "mips_l2":
        squared = np.einsum("ij,ij->i", items, items)
        extra = np.sqrt(np.maximum(float(squared.max()) - squared, 0.0))
        return np.ascontiguousarray(np.hstack([items, extra[:, None]]), dtype=np.float32)
    if metric == "cosine" or space == "normalized":
        return np.ascontiguousarray(_unit(items), dtype=np.float32)
    return np.ascontiguousarray(items, dtype=np.float32)


def query_vectors(queries: np.ndarray, metric: str, space: str) -> np.ndarray:
    """The queries as the index expects them."""
    if space == "mips_l2":
        padded = np.zeros((len(queries), queries.shape[1] + 1), dtype=np.float32)
        padded[:, :-1] = queries
        return padded
    if metric == "cosine":
        return _unit(queries)
    return queries


def inner_products_from_l2(distances: np.ndarray, queries: np.ndarray, max_sq: float) -> np.ndarray:
    """Inner products from the squared L2 distances of the MIPS→L2 reduction:
    ``q·x = (‖q‖² + M² − ‖q' − x'‖²) / 2``."""
    squared = np.einsum("ij,ij->i", queries, queries)[:, None]
    return ((squared + max_sq - distances) / 2.0).astype(np.float32)


def describe(space: str, metric: str, dim: int) -> str:
    if space == "mips_l2":
        return f"ip via MIPS→L2, {dim + 1}-d"
    if space == "normalized":
        return "ip via cosine candidates, re-ranked"
    return metric


def cosine_depth(
    items: np.ndarray,
    queries: np.ndarray,
    reference: np.ndarray,
    depths: list[int],
    goal: float,
) -> tuple[int | None, dict[int, float]]:
    """The smallest re-rank depth k' whose exact *cosine* top-k' holds ``goal`` of the
    inner-product top-k (``reference``) on these queries, and the share at every depth
    tried. ``None`` when no depth does: the ranking does not allow cosine candidates."""
    from pipetune.plugins.recsys.exact_search import per_query_recall, top_k_rows

    unit = _unit(items)
    shares: dict[int, float] = {}
    for depth in sorted(depths):
        found = np.concatenate(
            [
                top_k_rows(chunk @ unit.T, min(depth, len(items)))
                for chunk in np.array_split(queries, max(1, len(queries) // 16))
            ]
        )
        shares[depth] = float(per_query_recall(reference, _holds(found, reference)).mean())
        if shares[depth] >= goal:
            return depth, shares
    return None, shares


def _holds(found: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each row of ``found`` reduced to the reference ids it contains (padded with -1), so
    that recall@k counts a reference id anywhere in the top-k'."""
    k = reference.shape[1]
    out = np.full((len(found), k), -1, dtype=np.int64)
    for row, (got, ref) in enumerate(zip(found, reference, strict=True)):
        hits = np.intersect1d(got, ref)[:k]
        out[row, : len(hits)] = hits
    return out
