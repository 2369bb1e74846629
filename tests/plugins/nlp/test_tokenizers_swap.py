"""The Rust tokenizer swap: built from the same vocabulary and normalization, verified id
for id, rejected with the first differing input."""

from __future__ import annotations

import pytest

from pipetune.plugins.nlp import tokenizers_swap as swap

from .toys import AccentKeepingWordPiece, ToyWordPiece

HARD_TEXTS = [
    "",
    "   ",
    "Plain ASCII sentence, with punctuation!",
    "Héllo wörld 😀 emoji 👍🏽 and 🙏",
    "Mixed scripts: Привет мир, 你好世界, مرحبا بالعالم, Nguyễn Thị Hoa, Øystein Ødegård",
    "decomposed accents: e\u0301te\u0301 and composed: été",
    "special tokens in text: [SEP] [CLS] [MASK] [unused0]",
    "control\x00chars\x01and\ttabs\nand\u200bzero\u200dwidth\ufeff",
    "ligatures ﬁ ﬀ and full-width ＡＢＣ１２３ and roman Ⅻ ①",
    "a" * 150 + " " + "supercalifragilisticexpialidocious" * 4,
    "Invoice INV-2231 of EUR 12,345.67 dated 2024-03-01 (ref: AB-123456).",
]


def test_rust_rebuild_of_the_python_bert_tokenizer_matches_id_for_id(legacy_tokenizer):
    rust = swap.build_rust_tokenizer(legacy_tokenizer)
    assert rust is not legacy_tokenizer
    assert swap.first_mismatch(legacy_tokenizer, rust, HARD_TEXTS) is None
    expected = [legacy_tokenizer(t)["input_ids"] for t in HARD_TEXTS]
    assert swap.ids_of(rust, HARD_TEXTS) == expected


def test_generated_documents_match_id_for_id(legacy_tokenizer, documents):
    rust = swap.build_rust_tokenizer(legacy_tokenizer)
    sections = [s for doc in documents for s in doc.sections]
    assert swap.first_mismatch(legacy_tokenizer, rust, sections) is None


def test_wrapped_for_user_code_keeps_the_transformers_api(legacy_tokenizer):
    rust = swap.build_rust_tokenizer(legacy_tokenizer)
    wrapped = swap.as_slot_replacement(rust, legacy_tokenizer, prefer_raw=False)
    assert wrapped.is_fast
    text = "Hello there, General Kenobi"
    for kwargs in ({}, {"padding": "max_length", "max_length": 16, "truncation": True}):
        assert dict(wrapped(text, **kwargs)) == dict(legacy_tokenizer(text, **kwargs))
    assert swap.first_mismatch(legacy_tokenizer, wrapped, HARD_TEXTS) is None


def test_python_vocab_tokenizer_is_rebuilt_and_verified(legacy_tokenizer):
    toy = ToyWordPiece(dict(legacy_tokenizer.vocab))
    rust = swap.build_rust_tokenizer(toy)
    adapter = swap.as_slot_replacement(rust, toy, prefer_raw=False)
    texts = ["Plain text, with punctuation!", "The invoice is overdue.", "unbelievably long"]
    assert swap.first_mismatch(toy, adapter, texts) is None
    assert adapter.encode(texts[0]) == toy.encode(texts[0])
    assert adapter.tokenize(texts[1]) == toy.tokenize(texts[1])


def test_a_differing_fast_tokenizer_is_caught_with_the_first_differing_input(legacy_tokenizer):
    toy = AccentKeepingWordPiece(dict(legacy_tokenizer.vocab))
    adapter = swap.as_slot_replacement(swap.build_rust_tokenizer(toy), toy, prefer_raw=False)
    texts = ["plain words", "more plain words", "a café on the corner", "naïve"]
    mismatch = swap.first_mismatch(toy, adapter, texts)
    assert mismatch is not None and mismatch.index == 2 and mismatch.text == texts[2]
    assert mismatch.expected != mismatch.got
    assert "input #2" in mismatch.describe() and "café" in mismatch.describe()


def test_unconvertible_tokenizers_say_why():
    class NoWordPiece:
        def __init__(self):
            self.vocab = {"a": 0, "b": 1, "[UNK]": 2}

        def tokenize(self, text):
            return list(text)

    with pytest.raises(swap.ConversionError, match="WordPiece"):
        swap.build_rust_tokenizer(NoWordPiece())
    with pytest.raises(swap.ConversionError, match="not a recognized tokenizer"):
        swap.build_rust_tokenizer(object())


def test_pad_ids(legacy_tokenizer, minilm_path, tokenizers_lib):
    assert swap.pad_id(legacy_tokenizer) == 0
    rust = tokenizers_lib.Tokenizer.from_file(str(minilm_path / "tokenizer.json"))
    assert swap.pad_id(rust) == 0
