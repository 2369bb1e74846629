"""recsys scan rules: a true positive and a near miss each."""

from __future__ import annotations

import pytest

from pipetune.plugins.recsys import scan_rules
from tests.scan.rule_cases import assert_case, findings

CASES = {
    "PT-REC001": (
        """
        import numpy as np
        def topk(items, query, k):
            scores = items @ query
            return np.argsort(-scores)[:k]
        """,
        """
        import numpy as np
        def shortest(lengths, k):
            return np.argsort(lengths)[:k]
        """,
    ),
    "PT-REC002": (
        """
        import faiss
        index = faiss.IndexFlatIP(128)
        index.add(vectors)
        """,
        """
        import faiss
        quantizer = faiss.IndexFlatL2(128)
        index = faiss.IndexIVFFlat(quantizer, 128, 1024)
        """,
    ),
    "PT-REC003": (
        """
        def features(ids, redis_client):
            return [redis_client.get(f"user:{i}") for i in ids]
        """,
        """
        def features(ids, redis_client):
            return redis_client.mget([f"user:{i}" for i in ids])
        """,
    ),
}


@pytest.mark.parametrize("rule", sorted(CASES))
def test_true_positive_and_near_miss(rule):
    hit, miss = CASES[rule]
    assert_case(scan_rules, "recsys", rule, hit, miss)


def test_inline_matmul_and_inline_quantizer():
    code = """
    import torch, faiss
    top = torch.topk(catalog @ q, 10)
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(64), 64, 100)
    """
    assert [f.line for f in findings(scan_rules, "recsys", code, "PT-REC001")] == [3]
    assert findings(scan_rules, "recsys", code, "PT-REC002") == []


def test_size_unknown_so_confidence_is_medium():
    code = "import faiss\nindex = faiss.IndexFlatL2(64)\n"
    (finding,) = findings(scan_rules, "recsys", code, "PT-REC002")
    assert 0 < finding.confidence < 0.8
