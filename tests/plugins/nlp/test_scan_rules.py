"""nlp scan rules: a true positive and a near miss each."""

from __future__ import annotations

import pytest

from pipetune.plugins.nlp import scan_rules
from tests.scan.rule_cases import assert_case

CASES = {
    "PT-NLP001": (
        """
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained("bert-base-uncased", use_fast=False)
        """,
        """
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained("bert-base-uncased", use_fast=True)
        """,
    ),
    "PT-NLP002": (
        """
        enc = tokenizer(texts, padding="max_length", max_length=512, truncation=True)
        """,
        """
        enc = tokenizer(texts, padding=True, max_length=512, truncation=True)
        """,
    ),
    "PT-NLP003": (
        """
        model = AutoModel.from_pretrained(name, attn_implementation="eager")
        """,
        """
        model = AutoModel.from_pretrained(name, attn_implementation="sdpa")
        """,
    ),
    "PT-NLP004": (
        """
        import torch
        def predict(model, batch):
            return model(**batch).logits
        """,
        """
        import torch
        @torch.inference_mode()
        def predict(model, batch):
            return model(**batch).logits
        """,
    ),
}


@pytest.mark.parametrize("rule", sorted(CASES))
def test_true_positive_and_near_miss(rule):
    hit, miss = CASES[rule]
    assert_case(scan_rules, "nlp", rule, hit, miss)


def test_legacy_tokenizer_class_and_fast_class():
    from tests.scan.rule_cases import findings

    code = """
    from transformers import BertTokenizerLegacy, BertTokenizerFast
    a = BertTokenizerLegacy("vocab.txt")
    b = BertTokenizerFast.from_pretrained("bert-base-uncased", use_fast=False)
    """
    found = findings(scan_rules, "nlp", code, "PT-NLP001")
    assert [f.line for f in found] == [3]
    assert found[0].confidence >= 0.9


def test_inference_mode_near_misses():
    from tests.scan.rule_cases import findings

    code = """
    import torch
    with torch.no_grad():
        out = model(x)
    class Net(torch.nn.Module):
        def forward(self, x):
            return self.encoder(x)
    """
    assert findings(scan_rules, "nlp", code, "PT-NLP004") == []
    training = """
    import torch
    loss = model(x).loss
    loss.backward()
    """
    assert findings(scan_rules, "nlp", training, "PT-NLP004") == []


def test_short_fixed_padding_is_left_alone():
    from tests.scan.rule_cases import findings

    code = 'enc = tok(texts, padding="max_length", max_length=32)\n'
    assert findings(scan_rules, "nlp", code, "PT-NLP002") == []
