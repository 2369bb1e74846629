"""The nlp plugin's hooks, end to end on small pipelines: facts, proposals, tune and
materialize, the swap's rejection path, no mutation, fidelity and calibration inputs."""

from __future__ import annotations

import pytest

import pipetune
from pipetune import Change, Pipeline, Proposal, Rejected, Requirements, Stage, Workload
from pipetune.core.kernel.artifacts import ArtifactStore
from pipetune.core.kernel.context import TuneContext
from pipetune.plugins.nlp import blocks

from .conftest import state_digest
from .toys import AccentKeepingWordPiece


@pytest.fixture(scope="module")
def pm():
    return pipetune.get_plugin_manager(entry_points=False)


@pytest.fixture()
def small(legacy_tokenizer, tiny_bert, tiny_head, documents):
    pipeline = blocks.document_classifier(legacy_tokenizer, tiny_bert, tiny_head, max_length=128)
    workload = Workload(items=tuple(d.text for d in documents), warmup=0, repeats=1)
    return pipeline, workload


def _context(pm, pipeline, workload, tmp_path, floor=None):
    store = ArtifactStore(tmp_path / "artifacts")
    return TuneContext(pm, pipeline, workload, Requirements(), store, fidelity_floor=floor)


def _tune_and_apply(pm, proposal, pipeline, workload, context):
    assert context.workload is workload
    tuned = pm.tune(proposal, pipeline, context)
    change = pm.make_change(proposal, tuned)
    new = pm.materialize(change, pipeline, context.artifacts.root)
    return tuned, change, new


@pytest.mark.slow
def test_profile_facts_and_proposals(pm, small):
    pipeline, workload = small
    profile = pipetune.profile(pipeline, workload, pm=pm)
    facts = profile.facts["nlp"]
    assert facts["stages"]["tokenize"]["tokenizer"]["kind"] == "transformers-python"
    assert facts["stages"]["embed"]["model"]["attention"] == "eager"
    assert 0 < facts["tokenization_share"] < 1 and facts["tokenize_stage"] == "tokenize"
    counts = facts["token_counts"]
    assert sum(counts["histogram"].values()) == counts["texts"] > 0
    assert facts["padding_waste"]["pad_share"] > 0.5  # short sections padded to 128
    assert set(facts["model_ms_by_length"]) == {"32", "64", "128", "256", "512"}
    assert facts["attention"] == "eager" and facts["rust_tokenizer_speedup"] > 0
    assert 0 <= facts["recurring_texts_share"] <= 1

    proposals: dict[str, Proposal] = {}
    for _, values in pm.call_each(
        "propose_changes", pipeline=pipeline, profile=profile, requirements=Requirements()
    ):
        proposals.update({p.id: p for p in values})
    assert {
        "nlp.rust_tokenizer",
        "nlp.truncation",
        "nlp.dynamic_padding",
        "nlp.length_bucketing",
        "nlp.sdpa_attention",
        "nlp.inference_mode",
        "nlp.distillation",
    } <= set(proposals)
    assert proposals["nlp.truncation"].stage == "embed"
    assert proposals["nlp.truncation"].params["slot_stage"] == "tokenize"
    padding = proposals["nlp.dynamic_padding"]
    assert padding.evidence["padding_waste"]["pad_share"] > 0.5 and padding.est_stage_speedup >= 1
    timings = facts["model_ms_by_length"]
    assert [timings[k] for k in ("32", "64", "128", "256", "512")] == sorted(timings.values())
    distill = proposals["nlp.distillation"]
    assert not distill.applicable and distill.effort == "weeks"
    assert all(p.status == "proposed" for p in proposals.values())


def test_rust_swap_tune_and_materialize(pm, small, tmp_path, legacy_tokenizer):
    pipeline, workload = small
    vocab_before = len(legacy_tokenizer.vocab), dict(legacy_tokenizer.init_kwargs)
    proposal = Proposal(
        "nlp.rust_tokenizer", "nlp", "tokenize", "swap", params={"slot": "tokenizer", "block": True}
    )
    context = _context(pm, pipeline, workload, tmp_path)
    tuned, _, new = _tune_and_apply(pm, proposal, pipeline, workload, context)
    assert (context.artifacts.root / tuned.artifacts["tokenizer"]).is_file()
    assert tuned.notes["verified_texts"] > 10 and tuned.notes["exact_token_ids"] == 1.0
    assert type(new.stage("tokenize").slots["tokenizer"]).__name__ == "Tokenizer"
    assert pipeline.stage("tokenize").slots["tokenizer"] is legacy_tokenizer
    assert (len(legacy_tokenizer.vocab), dict(legacy_tokenizer.init_kwargs)) == vocab_before
    sections = [pipeline.stage("sections")(x) for x in workload.items]
    before = [pipeline.stage("tokenize")(s) for s in sections]
    after = [new.stage("tokenize")(s) for s in sections]
    exact = pm.compare("token_ids", before, after)
    assert exact.metric == "exact_token_ids" and exact.value == 1.0
    assert exact.judged_by == "nlp"
    assert [new.run(x) for x in workload.items] == [pipeline.run(x) for x in workload.items]
    assert new.stage("tokenize").meta["applied"] == ("nlp.rust_tokenizer",)


def test_rust_swap_is_rejected_with_the_first_differing_input(pm, legacy_tokenizer, tmp_path):
    toy = AccentKeepingWordPiece(dict(legacy_tokenizer.vocab))

    def tokenize(text, *, tokenizer):
        return tokenizer.encode(text)

    stage = Stage("tokenize", tokenize, kind="tokenize", slots={"tokenizer": toy})
    pipeline = Pipeline("ids", (stage,), output_kind="token_ids")
    texts = ("plain words", "more words here", "the invoice", "a naïve café order", "done")
    workload = Workload(items=texts)
    proposal = Proposal(
        "nlp.rust_tokenizer", "nlp", "tokenize", "swap", params={"slot": "tokenizer"}
    )
    context = _context(pm, pipeline, workload, tmp_path)
    with pytest.raises(Rejected, match=r"input #3 .*naïve café") as caught:
        _tune_and_apply(pm, proposal, pipeline, workload, context)
    assert "differ at token" in str(caught.value)


def test_sdpa_builds_a_copy_and_never_touches_the_model(pm, small, tmp_path, tiny_bert, torch):
    pipeline, workload = small
    digest = state_digest(tiny_bert)
    proposal = Proposal("nlp.sdpa_attention", "nlp", "embed", "sdpa", params={"slot": "model"})
    context = _context(pm, pipeline, workload, tmp_path)
    _, _, new = _tune_and_apply(pm, proposal, pipeline, workload, context)
    copy = new.stage("embed").slots["model"]
    assert copy is not tiny_bert and copy.config._attn_implementation == "sdpa"
    assert tiny_bert.config._attn_implementation == "eager"
    assert state_digest(tiny_bert) == digest == state_digest(copy)
    ids = torch.tensor([[101, 2023, 2003, 102, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        a = tiny_bert(input_ids=ids, attention_mask=mask).last_hidden_state[:, :4]
        b = copy(input_ids=ids, attention_mask=mask).last_hidden_state[:, :4]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_padding_bucketing_and_grad_mode_changes(pm, small, tmp_path, tiny_bert):
    pipeline, workload = small
    digest = state_digest(tiny_bert)
    store = ArtifactStore(tmp_path)
    new = pipeline
    for change in (
        Change("nlp.dynamic_padding", "nlp", "embed", {"slot_stage": "tokenize"}),
        Change("nlp.length_bucketing", "nlp", "embed", {"batch_size": 8}),
        Change("nlp.inference_mode", "nlp", "embed", {}),
        Change("nlp.truncation", "nlp", "embed", {"slot_stage": "tokenize", "max_length": 64}),
    ):
        new = pm.materialize(change, new, store.root)
    tok, emb = new.stage("tokenize").slots, new.stage("embed").slots
    assert (tok["padding"], tok["max_length"]) == ("dynamic", 64)
    assert (emb["batch_size"], emb["bucket"], emb["grad_mode"]) == (8, True, "inference_mode")
    original = pipeline.stage("tokenize").slots, pipeline.stage("embed").slots
    assert (original[0]["padding"], original[0]["max_length"]) == ("max_length", 128)
    assert (original[1]["batch_size"], original[1]["grad_mode"]) == (1, "no_grad")
    assert state_digest(tiny_bert) == digest
    outputs = new.run_batch(list(workload.items))
    assert len(outputs) == len(workload.items)
    with pytest.raises(pipetune.PipelineError, match="no slot 'max_length'"):
        bad = Change("nlp.truncation", "nlp", "x", {"slot_stage": "embed", "max_length": 64})
        pm.materialize(bad, pipeline, store.root)


def test_calibration_inputs_are_stage_inputs_spanning_lengths(pm, small):
    from pipetune.plugins.nlp.padding import Encoded

    pipeline, workload = small
    inputs = pm.hook.calibration_inputs(pipeline=pipeline, stage="embed", workload=workload)
    assert inputs and len(inputs) <= 16
    assert all(isinstance(seq, Encoded) for value in inputs for seq in value)
    lengths = sorted(seq.length for value in inputs for seq in value)
    assert lengths[0] < 20 and lengths[-1] > 60  # letterheads and long paragraphs
    embed = pipeline.stage("embed")
    assert all(embed(value).shape == (len(value), 32) for value in inputs)
    assert (
        pm.hook.calibration_inputs(pipeline=pipeline, stage="sections", workload=workload) is None
    )


def test_stage_hints_for_opaque_and_closed_over_stages(pm, legacy_tokenizer):
    opaque = Stage("tok", lambda text: text.split(), kind="tokenize")
    hints = pm.hook.stage_hints(stage=opaque, pipeline=Pipeline("p", (opaque,)))
    assert any("`tokenizer` slot" in h for hint in hints for h in hint)
    closed = Stage("tok2", lambda text: text, slots={"tokenizer": legacy_tokenizer})
    hints = pm.hook.stage_hints(stage=closed, pipeline=Pipeline("p", (closed,)))
    assert any("keyword argument" in h for hint in hints for h in hint)


def test_demo_and_dependencies_are_registered(pm):
    demos = pm.demos()
    plugin, demo = demos["nlp"]
    assert plugin == "nlp" and demo.default
    modules = {dep.module for _, dep in pm.dependencies() if _ == "nlp"}
    assert {"torch", "transformers", "tokenizers"} <= modules


def embed_texts(text, *, tokenizer, model, max_length, padding):
    """Plain user code: a transformers tokenizer and model in slots, no building blocks."""
    import torch

    enc = tokenizer(
        text, truncation=True, max_length=max_length, padding=padding, return_tensors="pt"
    )
    with torch.no_grad():
        states = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1)
    return ((states * mask).sum(1) / mask.sum(1))[0].numpy()


@pytest.mark.slow
def test_plain_user_stages_get_the_swap_truncation_padding_and_sdpa(
    pm, legacy_tokenizer, tiny_bert, documents, tmp_path
):
    import numpy as np

    slots = {"tokenizer": legacy_tokenizer, "model": tiny_bert, "max_length": 128,
             "padding": "max_length"}  # fmt: skip
    stage = Stage("embed", embed_texts, kind="inference", slots=slots)
    pipeline = Pipeline("user", (stage,), output_kind="tensor")
    texts = tuple(s for d in documents[:3] for s in d.sections)
    workload = Workload(items=texts, warmup=0, repeats=1)
    profile = pipetune.profile(pipeline, workload, pm=pm, sweep=False, hot_functions=False,
                               layers=False, memory=False)  # fmt: skip
    facts = profile.facts["nlp"]
    assert facts["tokenize_stage_dedicated"] is False and facts["tokenization_share"] > 0
    found = {
        p.id: p
        for _, values in pm.call_each(
            "propose_changes", pipeline=pipeline, profile=profile, requirements=Requirements()
        )
        for p in values
    }
    assert {"nlp.rust_tokenizer", "nlp.truncation", "nlp.dynamic_padding",
            "nlp.sdpa_attention"} <= set(found)  # fmt: skip
    context = _context(pm, pipeline, workload, tmp_path)
    current = pipeline
    for key in ("nlp.rust_tokenizer", "nlp.dynamic_padding", "nlp.sdpa_attention"):
        _, _, current = _tune_and_apply(pm, found[key], current, workload, context)
    swapped = current.stage("embed").slots
    assert swapped["tokenizer"].is_fast and swapped["padding"] == "longest"
    assert swapped["model"].config._attn_implementation == "sdpa"
    for text in texts[:5]:
        np.testing.assert_allclose(current.run(text), pipeline.run(text), atol=1e-4)
    assert pipeline.stage("embed").slots["tokenizer"] is legacy_tokenizer
