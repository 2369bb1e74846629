"""Batched ``generate`` calls: a plain one-prompt-at-a-time generate stage coalesced across
requests gives every request the tokens it gets alone (a tiny random Llama, greedy)."""

from __future__ import annotations

import pytest

from pipetune import Stage
from pipetune.plugins.generic.coalesce import coalesced_stage
from pipetune.plugins.generic.generatecalls import (
    MergedGenerate,
    merge_generate_calls,
    split_generated,
)

torch = pytest.importorskip("torch", reason="torch is not installed: pip install torch")


@pytest.fixture(scope="module")
def tiny_llama():
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
        pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config).eval()


def _answer(prompt, *, model):
    """A user's stage: one prompt (a list of token ids), greedy, the new tokens back."""
    ids = torch.tensor([prompt])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=10)
    return out[0, ids.shape[1] :].tolist()


def _prompts():
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(3, 128, (n,), generator=generator).tolist() for n in (5, 12, 7, 9, 3)]


@pytest.mark.slow
def test_requests_batched_across_inputs_get_their_own_tokens(tiny_llama):
    stage = Stage("answer", _answer, slots={"model": tiny_llama})
    prompts = _prompts()
    alone = [stage(p) for p in prompts]
    batched = coalesced_stage(stage, ["model"], batch_size=4)
    assert batched.call_batch(prompts) == alone
    # one batched generate for the group of four; the group of one runs as written
    assert batched.batch_fn.calls == 1
    assert stage.batch_fn is None  # the original untouched


def _answer_within(item, *, model):
    """A stage whose requests carry their own output budgets."""
    prompt, budget = item
    ids = torch.tensor([prompt])
    out = model.generate(input_ids=ids, max_new_tokens=budget, do_sample=False)
    return out[0, ids.shape[1] :].tolist()


@pytest.mark.slow
def test_requests_with_their_own_budgets_are_batched_and_cut_to_them(tiny_llama):
    stage = Stage("answer", _answer_within, slots={"model": tiny_llama})
    items = list(zip(_prompts(), (3, 11, 6, 1, 8), strict=True))
    alone = [stage(item) for item in items]
    batched = coalesced_stage(stage, ["model"], batch_size=5)
    assert batched.call_batch(items) == alone
    assert [len(tokens) for tokens in alone] == [3, 11, 6, 1, 8]
    assert batched.batch_fn.calls == 1


def test_a_row_that_stops_early_is_cut_after_its_end_token():
    # two prompts of 2 and 3 tokens, padded on the left to 3; eos is 1, pad 0
    merged = MergedGenerate({}, lengths=(2, 3), width=3, stop_ids=frozenset({1}))
    output = torch.tensor([[0, 5, 6, 7, 1, 0, 0], [4, 5, 6, 7, 8, 9, 10]])
    first, second = split_generated(output, merged)
    assert first.tolist() == [[5, 6, 7, 1]]
    assert second.tolist() == [[4, 5, 6, 7, 8, 9, 10]]
    budgets = MergedGenerate({}, (2, 3), 3, frozenset({1}), budgets=(1, 2))
    first, second = split_generated(output, budgets)
    assert first.tolist() == [[5, 6, 7]] and second.tolist() == [[4, 5, 6, 7, 8]]


def test_calls_are_padded_on_the_left_with_the_pad_token(tiny_llama):
    calls = [((), {"input_ids": torch.tensor([[5, 6]]), "max_new_tokens": 4}),
             ((torch.tensor([[7, 8, 9]]),), {"max_new_tokens": 4})]  # fmt: skip
    merged = merge_generate_calls(calls, tiny_llama)
    assert merged is not None and merged.lengths == (2, 3) and merged.width == 3
    assert merged.kwargs["input_ids"].tolist() == [[0, 5, 6], [7, 8, 9]]
    assert merged.kwargs["attention_mask"].tolist() == [[0, 1, 1], [1, 1, 1]]
    assert merged.kwargs["max_new_tokens"] == 4 and merged.kwargs["pad_token_id"] == 0


@pytest.mark.parametrize(
    "options",
    [
        {"do_sample": True},
        {"num_beams": 2},
        {"num_return_sequences": 2},
        {"return_dict_in_generate": True},
        {"prompt_lookup_num_tokens": 5},
        {"stop_strings": ["."]},
        {},  # no max_new_tokens: a max_length would count the padding
    ],
)
def test_calls_whose_rows_would_differ_are_not_merged(tiny_llama, options):
    budget = {} if not options else {"max_new_tokens": 4}
    calls = [((), {"input_ids": torch.tensor([[5, 6]]), **budget, **options}),
             ((), {"input_ids": torch.tensor([[7, 8, 9]]), **budget, **options})]  # fmt: skip
    assert merge_generate_calls(calls, tiny_llama) is None


def test_calls_with_different_settings_or_padded_prompts_are_not_merged(tiny_llama):
    ids = torch.tensor([[5, 6]])
    differ = [((), {"input_ids": ids, "max_new_tokens": 4, "repetition_penalty": 1.0}),
              ((), {"input_ids": ids, "max_new_tokens": 4, "repetition_penalty": 1.2})]  # fmt: skip
    assert merge_generate_calls(differ, tiny_llama) is None
    padded = [((), {"input_ids": ids, "attention_mask": torch.tensor([[0, 1]]),
                    "max_new_tokens": 4})] * 2  # fmt: skip
    assert merge_generate_calls(padded, tiny_llama) is None
    two_rows = [((), {"input_ids": torch.tensor([[5, 6], [7, 8]]), "max_new_tokens": 4})] * 2
    assert merge_generate_calls(two_rows, tiny_llama) is None


@pytest.mark.slow
def test_a_plain_generate_stage_is_measured_proposed_and_tuned_for_throughput(tiny_llama, tmp_path):
    from pipetune.core.kernel.artifacts import ArtifactStore
    from pipetune.core.kernel.context import TuneContext
    from pipetune.core.kernel.manager import get_plugin_manager
    from pipetune.core.kernel.model import Pipeline, Requirements, Workload
    from pipetune.core.kernel.results import Change
    from pipetune.core.measure.profiler import profile
    from pipetune.plugins.generic import crossbatch
    from pipetune.plugins.generic import proposals as ids
    from pipetune.plugins.generic.changes import cross_input_batching

    pm = get_plugin_manager(entry_points=False, disable=("recsys", "nlp", "vision", "llm"))
    stage = Stage("answer", _answer, kind="generate", slots={"model": tiny_llama})
    pipeline = Pipeline("chat", (stage,), output_kind="any")
    generator = torch.Generator().manual_seed(2)
    workload = Workload(
        items=tuple(
            tuple(torch.randint(3, 128, (int(n),), generator=generator).tolist())
            for n in torch.randint(3, 14, (24,), generator=generator)
        )
    )
    options = {"sweep": False, "hot_functions": False, "layers": False, "memory": False}
    found = profile(pipeline, workload, pm=pm, **options)
    measured = found.facts["generic"]["coalesce"]["answer"]
    assert measured["slots"] == ["model"] and measured["speedup"] > 1.0
    throughput = Requirements(optimize_for="throughput")
    proposed = ids.propose(pipeline, found, throughput)
    (proposal,) = [p for p in proposed if p.id == ids.CROSS_BATCHING]
    context = TuneContext(pm, pipeline, workload, throughput, ArtifactStore(tmp_path))
    tuned = cross_input_batching.tune(proposal, pipeline, context)
    change = Change(cross_input_batching.ID, "generic", "answer", tuned.params)
    built = cross_input_batching.materialize(change, pipeline, tmp_path)
    items = list(workload.items)
    assert crossbatch.batched_outputs(built, items) == [pipeline.run(x) for x in items]


def test_the_search_times_fewer_inputs_when_one_takes_seconds():
    from types import SimpleNamespace

    from pipetune.plugins.generic import crossbatch

    def context(mean_ms):
        latency = SimpleNamespace(mean=mean_ms)
        return SimpleNamespace(profile=SimpleNamespace(latency_ms=latency))

    assert crossbatch.tune_items(context(20.0)) == crossbatch.TUNE_ITEMS
    assert crossbatch.tune_items(context(2000.0)) == 10  # 120 s / (6 x 2 s)
    assert crossbatch.tune_items(context(60_000.0)) == crossbatch.MIN_TUNE_ITEMS
    assert crossbatch.tune_items(SimpleNamespace(profile=None)) == crossbatch.TUNE_ITEMS
