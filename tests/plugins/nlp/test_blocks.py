"""The building blocks: tokenize / embed / classify, padding, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from pipetune import Pipeline, PipelineError
from pipetune.core.runtime.offline import run_offline
from pipetune.plugins.nlp import blocks
from pipetune.plugins.nlp.padding import (
    Encoded,
    collate,
    encode_ids,
    length_histogram,
    padding_waste,
    plan_batches,
    waste_of_plan,
)
from pipetune.plugins.nlp.tokenizers_swap import build_rust_tokenizer

TEXTS = ["short one", "a somewhat longer section of text with more words in it", ""]


def test_split_sections_handles_text_bytes_and_empty():
    assert blocks.split_sections("a\n\nb \n \n\nc") == ("a", "b", "c")
    assert blocks.split_sections("") == ("",)
    assert blocks.split_sections(b"caf\xc3\xa9\n\n\xff\xfebad") == ("café", "\ufffd\ufffdbad")
    with pytest.raises(TypeError, match="str or bytes"):
        blocks.split_sections(None)


def test_tokenize_block_same_ids_python_and_rust(legacy_tokenizer):
    rust = build_rust_tokenizer(legacy_tokenizer)
    long_text = "word " * 700
    texts = [*TEXTS, long_text]
    for padding in ("max_length", "dynamic"):
        slow = blocks.tokenize_texts(texts, legacy_tokenizer, 128, padding)
        fast = blocks.tokenize_texts(texts, rust, 128, padding)
        assert slow == fast
    padded = blocks.tokenize_texts(texts, rust, 128, "max_length")
    assert all(e.padded_length == 128 for e in padded)
    assert padded[-1].length == 128 and padded[-1].tokens[-1] == 102  # [SEP] kept
    assert padded[2].length == 2  # an empty text is [CLS] [SEP]
    dynamic = blocks.tokenize_texts(texts, rust, 128, "dynamic")
    assert [e.padded_length for e in dynamic] == [e.length for e in dynamic]


def test_tokenize_rejects_bad_settings(legacy_tokenizer):
    with pytest.raises(Exception, match="padding must be"):
        blocks.tokenize_texts(["x"], legacy_tokenizer, 16, "longest")
    with pytest.raises(Exception, match="max_length"):
        blocks.tokenize_texts(["x"], legacy_tokenizer, 1, "dynamic")


def test_dynamic_padding_and_bucketing_keep_the_embeddings(tiny_bert, legacy_tokenizer):
    rust = build_rust_tokenizer(legacy_tokenizer)
    texts = [*TEXTS, "yet another section " * 9]
    padded = blocks.tokenize_texts(texts, rust, 64, "max_length")
    dynamic = blocks.tokenize_texts(texts, rust, 64, "dynamic")
    one_by_one = blocks.embed_encoded(padded, tiny_bert, batch_size=1)
    bucketed = blocks.embed_encoded(
        dynamic, tiny_bert, batch_size=3, bucket=True, grad_mode="inference_mode"
    )
    assert one_by_one.shape == (4, 32)
    np.testing.assert_allclose(one_by_one, bucketed, atol=1e-5)
    assert np.allclose(np.linalg.norm(bucketed, axis=1), 1.0, atol=1e-5)
    assert blocks.embed_encoded([], tiny_bert).shape == (0, 32)


def test_plan_collate_and_padding_waste():
    seqs = [encode_ids([1] * n, None, 0) for n in (5, 50, 6, 48)]
    assert plan_batches([5, 50, 6, 48], 2, bucket=False) == [[0, 1], [2, 3]]
    assert plan_batches([5, 50, 6, 48], 2, bucket=True) == [[0, 2], [3, 1]]
    ids, mask = collate([seqs[0], seqs[1]])
    assert ids.shape == (2, 50) and mask[0].sum() == 5 and mask[1].sum() == 50
    unsorted = waste_of_plan(seqs, 2, bucket=False)
    bucketed = waste_of_plan(seqs, 2, bucket=True)
    assert unsorted["real_tokens"] == bucketed["real_tokens"] == 109
    assert unsorted["pad_share"] > 0.4 > 0.1 > bucketed["pad_share"]
    fixed = [encode_ids([1] * n, 512, 0) for n in (5, 50)]
    assert padding_waste([fixed])["pad_share"] == pytest.approx(1 - 55 / 1024)
    assert length_histogram([10, 40, 600], (32, 512)) == {"<=32": 1, "<=512": 1, ">512": 1}


def test_encoded_is_hashable_by_content_and_read_only():
    a = encode_ids([101, 7, 102], 6, 0)
    b = Encoded(np.array([101, 7, 102, 0, 0, 0]), 3)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    with pytest.raises(ValueError):
        a.ids[0] = 5
    with pytest.raises(ValueError):
        Encoded(np.array([1, 2]), 3)


def test_linear_head_round_trips(tmp_path, tiny_head):
    path = tiny_head.save(tmp_path / "head.npz")
    again = blocks.LinearHead.load(path)
    x = np.random.default_rng(1).normal(size=(4, 32)).astype(np.float32)
    assert again.predict(x) == tiny_head.predict(x)
    assert again.predict(np.zeros((0, 32), np.float32)) in tiny_head.classes


@pytest.mark.slow
def test_bad_documents_are_processed_or_reported_per_item(legacy_tokenizer, tiny_bert, tiny_head):
    rust = build_rust_tokenizer(legacy_tokenizer)
    pipeline = blocks.document_classifier(
        rust, tiny_bert, tiny_head, max_length=64, padding="dynamic", batch_size=8, bucket=True
    )
    huge = ("lorem ipsum dolor sit amet " * 40_000)[:1_000_000]
    items = [
        "",
        b"valid start \xff\xfe invalid bytes \xc3",
        huge,
        "Emoji 😀🙏🏽 and scripts: Привет, 你好, مرحبا, Ελένη",
        None,  # not a document at all
        "\n\n\n",
    ]
    result = run_offline(pipeline, items, on_error="skip")
    assert result.ok == [True, True, True, True, False, True]
    assert all(
        out in tiny_head.classes for out, ok in zip(result.outputs, result.ok, strict=True) if ok
    )
    assert len(result.errors) == 1 and result.errors[0].index == 4
    assert "str or bytes" in result.errors[0].error and result.errors[0].stage == "sections"
    small = [i for i in items if i is not None and i is not huge]
    assert pipeline.run_batch(small) == [pipeline.run(i) for i in small]


@pytest.mark.slow
def test_the_python_tokenizer_handles_a_million_characters(legacy_tokenizer):
    huge = "x" * 999_000 + " end"  # one enormous word, then a short one
    encoded = blocks.tokenize_texts([huge], legacy_tokenizer, 512, "max_length")
    assert encoded[0].length == 4  # [CLS] [UNK] end [SEP]


def test_stage_error_names_the_stage_and_input(legacy_tokenizer, tiny_bert, tiny_head):
    pipeline = blocks.document_classifier(legacy_tokenizer, tiny_bert, tiny_head, max_length=32)
    with pytest.raises(PipelineError, match=r"stage 'sections' raised TypeError on input #1"):
        run_offline(pipeline, ["fine", 42])
    assert isinstance(pipeline, Pipeline)


@pytest.mark.gpu
def test_embedding_on_a_cuda_model_matches_cpu(torch, tiny_bert, legacy_tokenizer):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    import copy

    on_gpu = copy.deepcopy(tiny_bert).cuda()
    encoded = blocks.tokenize_texts(TEXTS, build_rust_tokenizer(legacy_tokenizer), 64, "dynamic")
    cpu = blocks.embed_encoded(encoded, tiny_bert, batch_size=4, bucket=True)
    gpu = blocks.embed_encoded(encoded, on_gpu, batch_size=4, bucket=True)
    np.testing.assert_allclose(cpu, gpu, atol=1e-4)


def test_a_fast_tokenizer_configured_in_its_json_encodes_like_the_python_one(
    legacy_tokenizer, fast_tokenizer, documents
):
    """MiniLM's tokenizer.json pads every text to 128 and truncates at 128: the tokenize
    block must give the ids the model expects (no pads counted as content, no silent cut),
    and leave the user's tokenizer as it was."""
    from pipetune.plugins.nlp.blocks import PAD_DYNAMIC, split_sections, tokenize_texts

    backend = fast_tokenizer.backend_tokenizer
    padding, truncation = backend.padding, backend.truncation
    texts = [s for d in documents[:3] for s in split_sections(d.text)]
    texts.append("a long clause " * 120)  # ~360 tokens: over the json's 128
    fast = tokenize_texts(texts, fast_tokenizer, 512, PAD_DYNAMIC)
    python = tokenize_texts(texts, legacy_tokenizer, 512, PAD_DYNAMIC)
    assert [list(e.ids) for e in fast] == [list(e.ids) for e in python]
    assert [e.length for e in fast] == [e.length for e in python]
    assert fast[-1].length > 128
    assert (backend.padding, backend.truncation) == (padding, truncation)
