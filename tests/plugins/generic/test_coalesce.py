"""Cross-input batching: a one-at-a-time stage's component calls become one batched call
per group, outputs come back in the original order, the user's code never runs
concurrently, and errors reach the caller."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from pipetune import Pipeline, Stage
from pipetune.plugins.generic.batchcalls import merge_calls, split_output
from pipetune.plugins.generic.coalesce import (
    CoalescedBatchFn,
    CoalescingProxy,
    coalesced_stage,
    text_length,
)


class RowModel:
    """Doubles every row; records the batch sizes it was called with."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.batches.append(x.shape[0])
        return x * 2.0


def score(text, *, model):
    row = np.array([[len(text), text.count("a")]], dtype=np.float32)
    return float(model(row)[0].sum())


def test_calls_are_batched_per_group_and_outputs_keep_their_order():
    model = RowModel()
    stage = Stage("score", score, kind="inference", slots={"model": model})
    texts = ["a" * n for n in (5, 1, 9, 3, 7, 2, 8)]
    expected = [stage(t) for t in texts]
    model.batches.clear()
    batched = coalesced_stage(stage, ["model"], batch_size=3)
    assert batched.call_batch(texts) == expected
    assert model.batches == [3, 3, 1] or sorted(model.batches) == [1, 3, 3]
    assert stage.batch_fn is None  # the original is untouched
    assert batched(texts[0]) == expected[0]  # one input still runs the plain function


def test_groups_are_ordered_by_length_within_the_window():
    seen: list[list[int]] = []

    class Recorder:
        def __call__(self, x):
            seen.append(sorted(int(v) for v in x[:, 0]))
            return x

    stage = Stage("score", score, slots={"model": Recorder()})
    batched = coalesced_stage(stage, ["model"], batch_size=2)
    batched.call_batch(["aaaa", "a", "aaa", "aa"])
    assert seen == [[1, 2], [3, 4]]
    assert text_length({"title": "ab", "body": ["cde", "f"]}) == 6 and text_length(7) == 0


def test_user_code_never_runs_concurrently_and_may_call_twice_or_not_at_all():
    active = []
    peak = []
    lock = threading.Lock()
    model = RowModel()

    def fn(n, *, model):
        with lock:
            active.append(1)
            peak.append(len(active))
        total = 0.0
        for k in range(n):  # zero, one or two calls per input, each with its own values
            with lock:
                active.pop()
            total += float(model(np.full((1, 2), 10 * n + k, np.float32)).sum())
            with lock:
                active.append(1)
                peak.append(len(active))
        with lock:
            active.pop()
        return total

    stage = Stage("f", fn, slots={"model": model})
    batched = coalesced_stage(stage, ["model"], batch_size=4, length=None)
    assert batched.call_batch([0, 2, 1, 3]) == [0.0, 164.0, 40.0, 372.0]
    assert max(peak) == 1
    assert model.batches == [3, 2, 1]  # first calls of three inputs, then seconds, a third


def test_identical_calls_in_a_group_are_computed_once():
    model = RowModel()
    stage = Stage("score", score, slots={"model": model})
    texts = ["same", "same", "other", "same"]
    got = coalesced_stage(stage, ["model"], batch_size=4).call_batch(texts)
    assert got == [stage(t) for t in texts[:1]] * 2 + [stage("other"), stage("same")]
    assert model.batches[0] == 2  # "same" once, "other" once


def test_a_failing_input_raises_and_a_failing_batch_falls_back_per_call():
    def fn(text, *, model):
        if text == "bad":
            raise ValueError("bad input")
        return float(model(np.ones((1, 2), np.float32)).sum())

    stage = Stage("f", fn, slots={"model": RowModel()})
    batched = coalesced_stage(stage, ["model"], batch_size=4)
    with pytest.raises(ValueError, match="bad input"):
        batched.call_batch(["ok", "bad", "fine"])

    class OnlyOne:
        def __call__(self, x):
            if x.shape[0] != 1:
                raise RuntimeError("batch of one only")
            return x

    single = coalesced_stage(Stage("f", fn, slots={"model": OnlyOne()}), ["model"], batch_size=4)
    assert single.call_batch(["a", "b", "c"]) == [2.0, 2.0, 2.0]


def test_a_proxy_reads_attributes_and_calls_through_outside_a_group():
    model = RowModel()
    model.config = "cfg"
    proxy = CoalescingProxy(model, "model")
    assert proxy.config == "cfg"
    assert proxy(np.ones((1, 2))).shape == (1, 2)


def test_the_stage_must_take_the_slot_as_an_argument():
    model = RowModel()
    stage = Stage("f", lambda text: model(np.ones((1, 2))), slots={"model": model})
    with pytest.raises(ValueError, match="keyword arguments"):
        coalesced_stage(stage, ["model"], batch_size=2)
    with pytest.raises(ValueError):
        CoalescedBatchFn(score, ["model"], batch_size=0)


def test_sequences_are_padded_masked_and_cut_back():
    calls = [
        ((), {"input_ids": np.array([[1, 2, 3]]), "attention_mask": np.ones((1, 3), int)}),
        ((), {"input_ids": np.array([[4]]), "attention_mask": np.ones((1, 1), int)}),
    ]
    merged = merge_calls(calls, avoid=frozenset({3}))
    assert merged is not None and merged.width == 4  # 3 is a model dimension: one more column
    np.testing.assert_array_equal(merged.kwargs["attention_mask"], [[1, 1, 1, 0], [1, 0, 0, 0]])
    np.testing.assert_array_equal(merged.kwargs["input_ids"], [[1, 2, 3, 0], [4, 0, 0, 0]])
    states = np.arange(2 * 4 * 5).reshape(2, 4, 5)
    parts = split_output({"last_hidden_state": states, "pooled": np.ones((2, 5))}, merged)
    assert parts[0]["last_hidden_state"].shape == (1, 3, 5)
    assert parts[1]["last_hidden_state"].shape == (1, 1, 5)
    assert parts[1]["pooled"].shape == (1, 5)
    no_mask = [((), {"input_ids": np.array([[1, 2]])}), ((), {"input_ids": np.array([[3]])})]
    added = merge_calls(no_mask)
    assert added is not None
    np.testing.assert_array_equal(added.kwargs["attention_mask"], [[1, 1], [1, 0]])


def test_calls_that_differ_in_settings_are_not_merged():
    a = ((np.ones((1, 2)),), {"flag": True})
    b = ((np.ones((1, 2)),), {"flag": False})
    assert merge_calls([a, b]) is None
    assert merge_calls([((np.ones((1, 2)),), {}), ((np.ones((1, 3)),), {})]) is None


@pytest.mark.slow
def test_a_torch_text_model_gives_the_same_outputs_batched(torch_tiny_bert):
    torch, tokenizer, model = torch_tiny_bert

    def embed(text, *, tokenizer, model):
        enc = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            out = model(**enc)
        mask = enc["attention_mask"].unsqueeze(-1).float()
        return ((out.last_hidden_state * mask).sum(1) / mask.sum(1))[0].numpy()

    stage = Stage("embed", embed, slots={"tokenizer": tokenizer, "model": model})
    texts = ["short", "a somewhat longer text here", "mid length text", "x " * 20]
    expected = [stage(t) for t in texts]
    for grad_mode in (None, "inference_mode"):
        batched = coalesced_stage(stage, ["model"], batch_size=4, grad_mode=grad_mode)
        got = batched.call_batch(texts)
        for a, b in zip(expected, got, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)
        assert batched.batch_fn.calls == 1
    pipeline = Pipeline("p", (stage,))
    assert pipeline.run(texts[0]).shape == expected[0].shape


@pytest.fixture(scope="module")
def torch_tiny_bert():
    torch = pytest.importorskip("torch", reason="torch is not installed: pip install torch")
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    tokenizers = pytest.importorskip("tokenizers", reason="tokenizers is not installed")
    torch.set_num_threads(1)
    vocab = {
        t: i
        for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *"abcdefghijklmnopqrstuvwxyz"])
    }
    rust = tokenizers.Tokenizer(tokenizers.models.WordPiece(vocab, unk_token="[UNK]"))
    rust.pre_tokenizer = tokenizers.pre_tokenizers.Split("", "isolated")
    rust.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=rust, pad_token="[PAD]", unk_token="[UNK]"
    )
    config = transformers.BertConfig(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    return torch, tokenizer, transformers.BertModel(config).eval()
