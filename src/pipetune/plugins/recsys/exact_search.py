"""Item matrices and queries as numpy arrays, and exact top-k over them: the catalog read
from numpy, torch or a faiss flat index (without copying), queries checked against its
dimension, exact scores, the top-k of each row and recall@k against a reference. Both the
exact-search blocks and the ANN tune steps rank with these.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipetune.core.kernel.errors import ConfigError, PipelineError
from pipetune.plugins.recsys.ann import is_faiss_index, load_faiss


def as_matrix(value: Any, where: str) -> np.ndarray:
    """The item matrix in ``value`` (numpy, torch, or a faiss flat index) as a 2-D float32
    array, without copying when it already is one. Never written to."""
    vectors = _vectors_of_flat_index(value)
    if vectors is not None:
        return vectors
    detach = getattr(value, "detach", None)
    if callable(detach):  # a torch tensor: share its memory, do not import torch
        value = detach().cpu().numpy()
    try:
        matrix = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{where}: cannot read an item matrix from {type(value).__name__}: {exc}"
        ) from None
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ConfigError(
            f"{where}: expected a 2-D item matrix (items x dimensions), got shape {matrix.shape}"
        )
    if not np.issubdtype(matrix.dtype, np.floating):
        raise ConfigError(f"{where}: expected floating-point item vectors, got {matrix.dtype}")
    if matrix.dtype != np.float32:
        matrix = matrix.astype(np.float32)
    return matrix


def _vectors_of_flat_index(value: Any) -> np.ndarray | None:
    if not is_faiss_index(value) or not type(value).__name__.startswith("IndexFlat"):
        return None
    faiss = load_faiss()
    n, d = int(value.ntotal), int(value.d)
    if n == 0:
        return np.zeros((0, d), dtype=np.float32)
    # A read-only view of the index's own storage: no copy of the catalog.
    return faiss.rev_swig_ptr(value.get_xb(), n * d).reshape(n, d)


def check_finite(matrix: np.ndarray, where: str) -> None:
    """Raise naming ``where`` and the first bad rows when the catalog holds NaN or inf."""
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        shown = ", ".join(str(r) for r in rows[:5]) + (" ..." if len(rows) > 5 else "")
        raise ConfigError(
            f"{where}: {len(rows)} item vector(s) contain NaN or infinite values "
            f"(rows {shown}); fix or drop them before retrieval"
        )


def as_queries(value: Any, dim: int, where: str) -> tuple[np.ndarray, bool]:
    """Queries as a contiguous (nq, dim) float32 array, and whether the input was one 1-D
    vector. Raises :class:`PipelineError` naming ``where`` on a bad query."""
    detach = getattr(value, "detach", None)
    if callable(detach):
        value = detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise PipelineError(
            f"{where}: the query is not a vector ({type(value).__name__})"
        ) from None
    single = array.ndim == 1
    if single:
        array = array[None, :]
    if array.ndim != 2:
        raise PipelineError(
            f"{where}: expected a query vector or a (batch, dim) array, got shape {array.shape}"
        )
    if array.shape[1] != dim:
        raise PipelineError(
            f"{where}: the query has {array.shape[1]} dimensions but the item matrix has {dim}"
        )
    if not np.isfinite(array).all():
        raise PipelineError(f"{where}: the query contains NaN or infinite values")
    return np.ascontiguousarray(array), single


def normalized(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def exact_scores(items: np.ndarray, queries: np.ndarray, metric: str) -> np.ndarray:
    """Scores, higher is better: inner products, or negated squared L2 distances."""
    scores = queries @ items.T
    if metric == "l2":
        scores = 2.0 * scores - np.einsum("ij,ij->i", items, items)[None, :]
        scores -= np.einsum("ij,ij->i", queries, queries)[:, None]
    return scores


def top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Top-k column indices of each row, best first (argpartition then sort the k)."""
    n = scores.shape[1]
    if k >= n:
        order = np.argsort(-scores, axis=1, kind="stable")
        return order[:, :k]
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def per_query_recall(reference: np.ndarray, found: np.ndarray) -> np.ndarray:
    """recall@k of each row of ``found`` against the same row of ``reference``."""
    k = reference.shape[1]
    out = np.empty(len(reference))
    for row, (ref, got) in enumerate(zip(reference, found, strict=True)):
        out[row] = len(set(ref.tolist()) & set(got[:k].tolist())) / k
    return out
