"""recall@k and NDCG@k on hand-checked cases, and the compare_outputs dispatch."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipetune.core.kernel.errors import ConfigError
from pipetune.plugins.recsys.fidelity import (
    ndcg_at_k,
    ranked_ids_fidelity,
    recall_at_k,
    rows_of,
)


def test_recall_at_k_hand_checked() -> None:
    assert recall_at_k([1, 2, 3, 4], [4, 3, 2, 1]) == 1.0
    assert recall_at_k([1, 2, 3, 4], [1, 2, 9, 8]) == 0.5
    assert recall_at_k([1, 2, 3, 4], [9, 8, 7, 6]) == 0.0
    # only the candidate's first k count
    assert recall_at_k([1, 2], [9, 1, 2]) == 0.5


def test_ndcg_hand_checked() -> None:
    # k = 2: relevance of reference rank 0 is 1.0, of rank 1 is 0.5.
    ideal = 1.0 / math.log2(2) + 0.5 / math.log2(3)
    assert ndcg_at_k([10, 20], [10, 20]) == pytest.approx(1.0)
    assert ndcg_at_k([10, 20], [20, 10]) == pytest.approx(
        (0.5 / math.log2(2) + 1.0 / math.log2(3)) / ideal
    )
    assert ndcg_at_k([10, 20], [99, 10]) == pytest.approx((1.0 / math.log2(3)) / ideal)
    assert ndcg_at_k([10, 20], [98, 99]) == 0.0
    # a short candidate counts its missing positions as misses
    assert ndcg_at_k([10, 20], [10]) == pytest.approx(1.0 / ideal)


def test_pooled_recall_ci_and_details() -> None:
    baseline = [np.array([1, 2, 3, 4]), np.array([5, 6, 7, 8])]
    candidate = [np.array([1, 2, 3, 4]), np.array([5, 6, 0, 0])]
    fid = ranked_ids_fidelity(baseline, candidate)
    assert fid.metric == "recall@4"
    assert fid.value == pytest.approx(6 / 8)
    assert fid.n == 2
    low, high = fid.ci
    assert low < 0.75 < high
    assert fid.details["min_recall"] == 0.5
    assert fid.details["identical_rankings"] == 0.5
    assert 0 < fid.details["ndcg_at_k"] < 1


def test_output_formats() -> None:
    ids = np.array([3, 1, 2])
    assert [r.tolist() for r in rows_of(ids)] == [[3, 1, 2]]
    assert [r.tolist() for r in rows_of([3, 1, 2])] == [[3, 1, 2]]
    faiss_like = (np.zeros((2, 3), dtype=np.float32), np.array([[3, 1, 2], [4, 5, 6]]))
    assert [r.tolist() for r in rows_of(faiss_like)] == [[3, 1, 2], [4, 5, 6]]
    assert [r.tolist() for r in rows_of((np.zeros(3), ids))] == [[3, 1, 2]]
    assert [r.tolist() for r in rows_of({"ids": ids})] == [[3, 1, 2]]
    with pytest.raises(ConfigError):
        rows_of(np.array([0.5, 1.2]))
    with pytest.raises(ConfigError):
        rows_of({"scores": ids})


def test_labels_hit_rate() -> None:
    fid = ranked_ids_fidelity([[1, 2]], [[1, 3]], labels=[[2, 3]])
    assert fid.details["baseline_label_recall"] == 0.5
    assert fid.details["candidate_label_recall"] == 0.5


def test_mismatched_lengths_are_clear() -> None:
    with pytest.raises(ConfigError, match="2 baseline outputs, 1 candidate"):
        ranked_ids_fidelity([[1], [2]], [[1]])


def test_compare_outputs_hook_answers_ranked_ids(pm) -> None:
    from pipetune.core.measure.fidelity import compare

    fid = compare(pm, "ranked_ids", [[1, 2, 3]], [[1, 2, 4]])
    assert fid.metric == "recall@3"
    assert fid.value == pytest.approx(2 / 3)
    # other kinds are left to the plugins that own them
    assert compare(pm, "labels", [1], [1]).metric == "label_agreement"
