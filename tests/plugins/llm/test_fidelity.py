"""Fidelity: exact greedy tokens with the first divergence; perplexity for lossy changes."""

from __future__ import annotations

import copy

import pytest

from pipetune.core.kernel.model import Pipeline, Workload
from pipetune.core.kernel.results import Change
from pipetune.plugins.llm.blocks import generate_stage, prompt_stage
from pipetune.plugins.llm.fidelity import first_divergence, perplexity, token_match
from pipetune.plugins.llm.records import Generation


def test_token_match_reports_first_divergence():
    base = [Generation((1, 2, 3), "eos"), Generation((4, 5, 6, 7), "length"), [8, 9]]
    cand = [Generation((1, 2, 3), "eos"), Generation((4, 5, 0, 7), "length"), [8, 9]]
    fidelity = token_match(base, cand)
    assert fidelity.metric == "exact_greedy_tokens"
    assert fidelity.value == pytest.approx(2 / 3)
    first = fidelity.details["first_divergence"]
    assert first == {"request": 1, "position": 2, "baseline_token": 6, "candidate_token": 0}
    assert fidelity.details["tokens_before_divergence"] == pytest.approx(7 / 9)
    assert token_match(base, base).value == 1.0


def test_refusal_must_match_refusal():
    refused = Generation((), "error", error="request #0: empty prompt")
    assert token_match([refused], [refused]).value == 1.0
    assert token_match([refused], [Generation((), "length")]).value == 0.0
    assert first_divergence([1, 2], [1, 2, 3]) == 2
    assert first_divergence([1, 2], [1, 2]) is None


def test_the_llm_plugin_owns_the_tokens_output_kind():
    from pipetune import get_plugin_manager
    from pipetune.core.measure.fidelity import compare

    pm = get_plugin_manager(entry_points=False)
    result = compare(pm, "tokens", [Generation((1, 2), "eos")], [Generation((1, 3), "eos")])
    assert result.metric == "exact_greedy_tokens" and result.value == 0.0
    assert (result.judged_by, result.output_kind) == ("llm", "tokens")


def test_perplexity_change_for_a_lossy_model_change(llama, tokenizer, torch):
    from pipetune import get_plugin_manager
    from tests.plugins.llm.conftest import state_digest

    digest = state_digest(llama)
    noisy = copy.deepcopy(llama)
    with torch.no_grad():
        for p in noisy.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    stage = generate_stage(llama, tokenizer, max_new_tokens=4)
    baseline = Pipeline("p", [prompt_stage(tokenizer), stage], output_kind="tokens")
    candidate = baseline.replace("generate", stage.with_slots(model=noisy))
    workload = Workload(items=("hello there", "summarize this text for me"))
    change = Change(proposal="hardware.int8", plugin="hardware", stage="generate")
    pm = get_plugin_manager(entry_points=False)
    fidelity = pm.hook.assess_change(
        change=change, baseline=baseline, candidate=candidate, workload=workload
    )
    assert fidelity.metric == "perplexity"
    details = fidelity.details
    assert details["candidate_perplexity"] != details["baseline_perplexity"]
    assert fidelity.value == pytest.approx(1 - max(0.0, details["relative_delta"]))
    # the evaluation half of the held-out paragraphs + the workload's prompts
    assert details["sequences"] >= 3 + 2
    assert details["summary"].startswith(f"perplexity {details['baseline_perplexity']:.2f} -> ")
    # the same model: no change
    same = pm.hook.assess_change(
        change=change, baseline=baseline, candidate=baseline, workload=workload
    )
    assert same is None  # nothing replaced the model: exact tokens decide
    assert state_digest(llama) == digest
    # the llm plugin's own changes are lossless: it does not answer for them
    own = Change(proposal="llm.kv_cache", plugin="llm", stage="generate")
    assert (
        pm.hook.assess_change(change=own, baseline=baseline, candidate=candidate, workload=workload)
        is None
    )


def test_perplexity_of_identical_models_is_identical(llama):
    sequences = [[5, 6, 7, 8, 9, 10], [20, 21, 22]]
    assert perplexity(llama, sequences) == perplexity(llama, sequences)


def test_calibration_inputs_are_model_inputs(llama, tokenizer):
    from pipetune import get_plugin_manager

    pipeline = Pipeline(
        "p", [prompt_stage(tokenizer), generate_stage(llama, tokenizer)], output_kind="tokens"
    )
    pm = get_plugin_manager(entry_points=False)
    batches = pm.hook.calibration_inputs(
        pipeline=pipeline, stage="generate", workload=Workload(items=("a question",))
    )
    assert batches and all(b["input_ids"].shape[0] == 1 for b in batches)
    assert (
        pm.hook.calibration_inputs(
            pipeline=pipeline, stage="prompt", workload=Workload(items=("x",))
        )
        is None
    )


def test_calibration_text_is_never_the_text_the_perplexity_gate_scores(llama, tokenizer):
    from pipetune.plugins.llm.quality import calibration_batches, held_out_sequences

    stage = generate_stage(llama, tokenizer, max_new_tokens=4)
    pipeline = Pipeline("p", [prompt_stage(tokenizer), stage], output_kind="tokens")
    holdout = Workload(items=("hello there",))
    calibration = Workload(items=("summarize this text for me",))
    scored = {tuple(s) for s in held_out_sequences(pipeline, stage, holdout)}
    batches = calibration_batches(pipeline, "generate", calibration)
    calibrated = {tuple(b["input_ids"][0].tolist()) for b in batches}
    assert scored and calibrated and not scored & calibrated
