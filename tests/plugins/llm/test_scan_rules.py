"""llm scan rules: a true positive and a near miss each."""

from __future__ import annotations

import pytest

from pipetune.plugins.llm import scan_rules
from tests.scan.rule_cases import assert_case

CASES = {
    "PT-LLM001": (
        """
        out = model.generate(**inputs, max_new_tokens=64, use_cache=False)
        """,
        """
        out = model.generate(**inputs, max_new_tokens=64, use_cache=True)
        """,
    ),
    "PT-LLM002": (
        """
        import torch
        def greedy(model, input_ids):
            for _ in range(32):
                logits = model(input_ids).logits
                nxt = logits[:, -1].argmax(-1, keepdim=True)
                input_ids = torch.cat([input_ids, nxt], dim=-1)
            return input_ids
        """,
        """
        import torch
        def greedy(model, input_ids):
            past = None
            step = input_ids
            for _ in range(32):
                out = model(step, past_key_values=past, use_cache=True)
                past = out.past_key_values
                step = out.logits[:, -1].argmax(-1, keepdim=True)
                input_ids = torch.cat([input_ids, step], dim=-1)
            return input_ids
        """,
    ),
    "PT-LLM003": (
        """
        def answer_all(llm, tok, questions):
            for q in questions:
                ids = tok(q, return_tensors="pt")
                yield llm.generate(**ids)
        """,
        """
        def answer_all(llm, tok, questions):
            ids = tok(questions, return_tensors="pt", padding=True)
            return llm.generate(**ids)
        """,
    ),
    "PT-LLM004": (
        """
        SYSTEM_PROMPT = "You are a support agent for ACME. Answer briefly."
        def answer_all(llm, tok, questions):
            for q in questions:
                ids = tok(SYSTEM_PROMPT + q, return_tensors="pt")
                yield llm.generate(**ids)
        """,
        """
        def answer_all(llm, tok, questions):
            for q in questions:
                ids = tok(f"{q}", return_tensors="pt")
                yield llm.generate(**ids)
        """,
    ),
}


@pytest.mark.parametrize("rule", sorted(CASES))
def test_true_positive_and_near_miss(rule):
    hit, miss = CASES[rule]
    assert_case(scan_rules, "llm", rule, hit, miss)
