"""generic scan rules: a true positive and a near miss each."""

from __future__ import annotations

import pytest

from pipetune.plugins.generic import scan_rules
from tests.scan.rule_cases import assert_case, findings

CASES = {
    "PT-GEN001": (
        """
        def classify(texts, model):
            return [model(t) for t in texts]
        """,
        """
        def classify(texts, model):
            return model(texts)
        """,
    ),
    "PT-GEN002": (
        """
        def rank(queries, docs, encoder):
            for q in queries:
                for d in docs:
                    encoder.encode(d)
        """,
        """
        def rank(queries, encoder):
            for q in queries:
                for sentence in q.sentences:
                    encoder.encode(sentence)
        """,
    ),
    "PT-GEN003": (
        """
        import requests
        def crawl(urls):
            for url in urls:
                requests.get(url)
        """,
        """
        import requests
        from concurrent.futures import ThreadPoolExecutor
        def crawl(urls):
            with ThreadPoolExecutor(8) as pool:
                return list(pool.map(requests.get, urls))
        """,
    ),
}


@pytest.mark.parametrize("rule", sorted(CASES))
def test_true_positive_and_near_miss(rule):
    hit, miss = CASES[rule]
    assert_case(scan_rules, "generic", rule, hit, miss)


def test_batched_loops_and_repeats_are_not_per_item():
    code = """
    def run(batches, model, batch):
        for batch_ in batches:
            model(batch_)
        for _ in range(3):
            model(batch)
    """
    assert findings(scan_rules, "generic", code, "PT-GEN001") == []


def test_item_derived_through_an_assignment_counts():
    code = """
    def run(texts, model, tok):
        for text in texts:
            ids = tok(text)
            model(ids)
    """
    assert [f.line for f in findings(scan_rules, "generic", code, "PT-GEN001")] == [5]
