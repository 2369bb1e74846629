"""What the nlp plugin proposes, from the profile's facts.

Every proposal names the stage whose *time* it changes (the model stage for truncation and
padding, whose settings live in the tokenize stage: ``params["slot_stage"]`` says where),
its estimate, and the evidence behind the estimate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipetune.core.kernel.model import Pipeline, Requirements, Stage
from pipetune.core.kernel.registry import Dependency
from pipetune.core.kernel.results import Profile, Proposal
from pipetune.plugins.generic.crossbatch import batching_pays_here, measured_in_flight
from pipetune.plugins.nlp import recognize
from pipetune.plugins.nlp.blocks import BLOCK_EMBED, BLOCK_TOKENIZE
from pipetune.plugins.nlp.changes.cross_input_batching import ID as CROSS_BATCHING
from pipetune.plugins.nlp.changes.dynamic_padding import ID as DYNAMIC_PADDING
from pipetune.plugins.nlp.changes.inference_mode import ID as INFERENCE_MODE
from pipetune.plugins.nlp.changes.length_bucketing import ID as LENGTH_BUCKETING
from pipetune.plugins.nlp.changes.rust_tokenizer import ID as RUST_TOKENIZER
from pipetune.plugins.nlp.changes.sdpa_attention import ID as SDPA
from pipetune.plugins.nlp.changes.truncation import ID as TRUNCATION
from pipetune.plugins.nlp.facts import interpolate_ms
from pipetune.plugins.nlp.padding import PAD_MAX_LENGTH

PLUGIN = "nlp"

DISTILLATION = "nlp.distillation"  # advice only: no change type

DEPENDENCIES = (
    Dependency("tokenizers", "nlp", "Rust tokenizers"),
    Dependency("transformers", "nlp", "tokenizers and text models"),
    Dependency("torch", "nlp", "text models"),
)
_DEPS = {dep.module: dep for dep in DEPENDENCIES}


def _availability(*modules: str) -> dict[str, Any]:
    for module in modules:
        check = _DEPS[module].check()
        if not check:
            return {"status": "unavailable", "reason": check.reason, "install": check.install}
    return {}


def propose(
    pipeline: Pipeline, profile: Profile, requirements: Requirements | None = None
) -> list[Proposal]:
    facts: Mapping[str, Any] = profile.facts.get(PLUGIN, {})
    requirements = requirements or Requirements()
    proposals: list[Proposal] = []
    for stage in pipeline.stages:
        found = recognize.recognize_stage(stage)
        if found.tokenizer is not None and found.tokenizer_slot is not None:
            proposals.extend(_tokenizer_proposals(pipeline, stage, found, facts))
        if found.model is not None and found.model_slot is not None:
            proposals.extend(_model_proposals(pipeline, stage, found, facts, profile))
            batching = _cross_batching(stage, found, facts, profile, requirements)
            if batching is not None:
                proposals.append(batching)
    return proposals


def _cross_batching(
    stage: Stage,
    found: recognize.StageRecognition,
    facts: Mapping[str, Any],
    profile: Profile,
    requirements: Requirements,
) -> Proposal | None:
    """Batch a one-at-a-time text stage's model calls across inputs, with the Rust
    tokenizer and inference mode tried as parts of the same change."""
    slot = found.model_slot or "model"
    if stage.batch_fn is not None or stage.meta.get("block") or not stage.injects(slot):
        return None
    if not batching_pays_here(profile.mode, requirements.metric):
        return None
    measured = (profile.facts.get("generic", {}).get("coalesce", {}) or {}).get(stage.name)
    if not isinstance(measured, Mapping) or not measured.get("speedup"):
        return None
    single = float(measured["per_item_ms_single"])
    # where batching does not pay, the change keeps one input at a time and its parts
    batched = min(single, float(measured["per_item_ms_batched"]))
    tokenizer_slot = None
    tok = found.tokenizer
    if tok is not None and tok.slow and stage.injects(found.tokenizer_slot or ""):
        tokenizer_slot = found.tokenizer_slot
    est = single / batched if batched > 0 else 1.0
    tokenizer_ms = facts.get("tokenizer_ms_per_text")
    rust = facts.get("rust_tokenizer_speedup")
    if tokenizer_slot and isinstance(tokenizer_ms, float) and rust and batched > tokenizer_ms:
        texts = max(1.0, float(facts.get("texts_per_call", 1.0)))
        spent = tokenizer_ms * texts
        est = single / max(1e-6, batched - spent + spent / float(rust))
    if est < 1.05:
        return None
    model_name = found.model.type.rsplit(".", 1)[-1] if found.model else "its model"
    parts = ("the Rust tokenizer (verified id for id) and " if tokenizer_slot else "") + (
        "`torch.inference_mode`"
    )
    return Proposal(
        id=CROSS_BATCHING,
        plugin=PLUGIN,
        stage=stage.name,
        title=f"Batch {stage.name}'s text model across inputs, ordered by length",
        rationale=(
            f"{stage.name!r} runs {model_name} one input at a time; run its own function per "
            "input and make their model calls "
            f"one batched call per group of similar length (padded to the group's longest, "
            f"masked; outputs in the original order): measured on {measured['inputs']} observed "
            f"inputs, {batched:.2f} ms per input against {single:.2f} ms. Tried with it and kept "
            f"only where each holds: {parts}. Group size and window are tuned on "
            f"{requirements.metric}"
        ),
        est_stage_speedup=max(1.0, est),
        effort="minutes",
        accuracy_risk="low",
        params={"slots": [slot], "tokenizer_slot": tokenizer_slot},
        conflicts=("generic.cross_input_batching",),
        in_flight=measured_in_flight(measured, profile.mode) if batched < single else None,
        evidence={
            "coalesce": dict(measured),
            **_pick(facts, "tokenizer_ms_per_text", "rust_tokenizer_speedup"),
        },
        **_availability("torch"),
    )


# -- tokenizer stage ---------------------------------------------------------------------------


def _tokenizer_proposals(
    pipeline: Pipeline, stage: Stage, found: recognize.StageRecognition, facts: Mapping[str, Any]
) -> list[Proposal]:
    out: list[Proposal] = []
    slot = found.tokenizer_slot or "tokenizer"
    info = found.tokenizer
    assert info is not None
    model_stage = _model_stage_after(pipeline, stage)
    if info.slow and stage.injects(slot):
        measured = facts.get("rust_tokenizer_speedup")
        token_share = facts.get("tokenization_share")
        stage_share = facts.get("tokenize_stage_share")
        est = float(measured) if measured else 5.0
        if not facts.get("tokenize_stage_dedicated", True) and token_share and stage_share:
            inside = min(1.0, token_share / stage_share)
            est = 1.0 / (1.0 - inside + inside / est)
        share_text = f"{token_share:.1%}" if isinstance(token_share, float) else "unknown"
        out.append(
            Proposal(
                id=RUST_TOKENIZER,
                plugin=PLUGIN,
                stage=stage.name,
                title=f"Swap the pure-Python tokenizer ({info.type.rsplit('.', 1)[-1]}) for a "
                "Rust tokenizer built from the same vocabulary",
                rationale=(
                    f"tokenization is {share_text} of end-to-end time; a HF `tokenizers` "
                    "tokenizer built from the same vocabulary and normalization "
                    + (
                        f"measured {measured:.1f}x faster on the workload's texts"
                        if measured
                        else "is typically several times faster"
                    )
                    + "; it is verified id-for-id on the workload and rejected on any difference"
                ),
                est_stage_speedup=max(1.0, est),
                effort="minutes",
                accuracy_risk="none",
                params={"slot": slot, "block": stage.meta.get("block") == BLOCK_TOKENIZE},
                evidence=_pick(
                    facts,
                    "tokenizer_kind",
                    "tokenizer_ms_per_text",
                    "rust_tokenizer_speedup",
                    "tokenization_share",
                ),
                **_availability("tokenizers"),
            )
        )
    max_length = stage.slots.get("max_length")
    if isinstance(max_length, int) and stage.injects("max_length") and max_length > 32:
        out.append(_truncation(stage, model_stage, max_length, facts))
    if stage.slots.get("padding") == PAD_MAX_LENGTH and stage.injects("padding"):
        proposal = _dynamic_padding(stage, model_stage, facts)
        if proposal is not None:
            out.append(proposal)
    return out


def _truncation(
    stage: Stage, model_stage: Stage | None, max_length: int, facts: Mapping[str, Any]
) -> Proposal:
    counts = facts.get("token_counts") or {}
    timings = facts.get("model_ms_by_length") or {}
    lengths = facts.get("sequence_lengths") or []
    padded = stage.slots.get("padding") == PAD_MAX_LENGTH
    probe = min(256, max_length // 2)
    est = 1.0
    if timings:
        if padded:
            est = interpolate_ms(timings, max_length) / interpolate_ms(timings, probe)
        elif lengths:
            now = sum(interpolate_ms(timings, min(n, max_length)) for n in lengths)
            cut = sum(interpolate_ms(timings, min(n, probe)) for n in lengths)
            est = now / cut if cut else 1.0
    over = counts.get("histogram", {})
    return Proposal(
        id=TRUNCATION,
        plugin=PLUGIN,
        stage=(model_stage or stage).name,
        title=f"Truncate inputs to the shortest max length that keeps the answers "
        f"(now {max_length}; searched on a ladder)",
        rationale=(
            f"token counts: median {counts.get('p50', '?')}, p90 {counts.get('p90', '?')}, "
            f"p99 {counts.get('p99', '?')}; model time grows with length "
            f"({_timing_text(timings)}). The shortest length on the ladder whose label "
            "agreement with the full-length baseline meets the threshold on a calibration "
            "split, confirmed on a held-out split, is chosen; the estimate assumes "
            f"{probe} tokens"
        ),
        est_stage_speedup=max(1.0, est),
        effort="minutes",
        accuracy_risk="medium",
        params={"slot_stage": stage.name, "current": max_length},
        evidence={"token_histogram": over, "model_ms_by_length": dict(timings)},
    )


def _dynamic_padding(
    stage: Stage, model_stage: Stage | None, facts: Mapping[str, Any]
) -> Proposal | None:
    waste = facts.get("padding_waste") or {}
    share = waste.get("pad_share")
    if share is not None and share < 0.05:
        return None
    timings = facts.get("model_ms_by_length") or {}
    lengths = facts.get("sequence_lengths") or []
    max_length = stage.slots.get("max_length", 512)
    est = 1.0 / (1.0 - share) if share else 2.0
    if timings and lengths and isinstance(max_length, int):
        now = interpolate_ms(timings, max_length) * len(lengths)
        dynamic = sum(interpolate_ms(timings, min(n, max_length)) for n in lengths)
        est = now / dynamic if dynamic else est
    share_text = f"{share:.0%}" if isinstance(share, float) else "most"
    return Proposal(
        id=DYNAMIC_PADDING,
        plugin=PLUGIN,
        stage=(model_stage or stage).name,
        title="Pad each forward batch to its own longest sequence instead of max_length",
        rationale=(
            f"{share_text} of the tokens the model computes are padding (every sequence is "
            f"padded to {max_length}); pad tokens are masked out, so dropping them changes "
            "nothing but the time"
        ),
        est_stage_speedup=max(1.0, est),
        effort="minutes",
        accuracy_risk="low",
        params={"slot_stage": stage.name},
        evidence={"padding_waste": dict(waste), "model_ms_by_length": dict(timings)},
    )


# -- model stage ----------------------------------------------------------------------------


def _model_proposals(
    pipeline: Pipeline,
    stage: Stage,
    found: recognize.StageRecognition,
    facts: Mapping[str, Any],
    profile: Profile,
) -> list[Proposal]:
    """The model stage's changes: SDPA for eager attention in an injected transformers
    model, length-bucketed batches and inference mode for an embed block run one section at
    a time or under no_grad, and distillation advice where the stage dominates the time."""
    out: list[Proposal] = []
    slot = found.model_slot or "model"
    info = found.model
    assert info is not None
    block = stage.meta.get("block") == BLOCK_EMBED
    if info.attention == "eager" and info.transformers and stage.injects(slot):
        out.append(_sdpa(stage, info, slot))
    if block and stage.slots.get("batch_size") == 1:
        out.append(_length_bucketing(stage, facts))
    if block and stage.slots.get("grad_mode") == "no_grad":
        out.append(_inference_mode(stage))
    share = profile.share(stage.name)
    if share >= 0.2:
        out.append(_distillation(stage, info, share))
    return out


def _sdpa(stage: Stage, info: recognize.TextModelInfo, slot: str) -> Proposal:
    """Switching a copy of the model from eager attention to PyTorch SDPA."""
    return Proposal(
        id=SDPA,
        plugin=PLUGIN,
        stage=stage.name,
        title="Run attention with PyTorch SDPA instead of the eager implementation",
        rationale=(
            f"{info.type.rsplit('.', 1)[-1]} runs eager attention; SDPA fuses "
            "softmax(QK^T)V into one kernel (a copy of the model is switched, the "
            "original is not touched)"
        ),
        est_stage_speedup=1.15,
        effort="minutes",
        accuracy_risk="low",
        params={"slot": slot},
        evidence={"attention": info.attention},
        **_availability("torch", "transformers"),
    )


def _length_bucketing(stage: Stage, facts: Mapping[str, Any]) -> Proposal:
    """Embedding an embed block's sections in length-bucketed batches, not one at a time."""
    return Proposal(
        id=LENGTH_BUCKETING,
        plugin=PLUGIN,
        stage=stage.name,
        title="Embed sections in length-bucketed batches instead of one at a time",
        rationale=(
            "each section is a separate forward pass; sorting sections by length and "
            "batching similar lengths amortizes per-call overhead without adding "
            "padding. The batch size is chosen by timing candidates"
        ),
        est_stage_speedup=1.2,
        effort="minutes",
        accuracy_risk="low",
        params={"candidates": [4, 8, 16, 32]},
        evidence=_pick(facts, "padding_waste"),
        **_availability("torch"),
    )


def _inference_mode(stage: Stage) -> Proposal:
    """Running an embed block's encoder under ``torch.inference_mode`` instead of no_grad."""
    return Proposal(
        id=INFERENCE_MODE,
        plugin=PLUGIN,
        stage=stage.name,
        title="Run the encoder under torch.inference_mode() instead of no_grad()",
        rationale=(
            "inference_mode also skips version counting and view tracking; a small, "
            "free gain for inference-only code"
        ),
        est_stage_speedup=1.03,
        effort="minutes",
        accuracy_risk="none",
        evidence={"grad_mode": "no_grad"},
    )


def _distillation(stage: Stage, info: recognize.TextModelInfo, share: float) -> Proposal:
    """Advice (not applied) to distill a model stage that takes ``share`` of the time."""
    return Proposal(
        id=DISTILLATION,
        plugin=PLUGIN,
        stage=stage.name,
        title="Distill the encoder into a smaller student model",
        rationale=(
            f"the model stage is {share:.0%} of the time; a student with half the "
            "layers is roughly 2x faster, but needs training data, a training run and "
            "a new accuracy evaluation: weeks of work, not applied automatically"
        ),
        est_stage_speedup=2.0,
        effort="weeks",
        accuracy_risk="high",
        applicable=False,
        evidence={"parameters": info.parameters, "stage_share": share},
    )


# -- helpers --------------------------------------------------------------------------------


def _model_stage_after(pipeline: Pipeline, stage: Stage) -> Stage | None:
    """The stage holding the text model, at or after ``stage``."""
    start = pipeline.index(stage.name)
    for candidate in pipeline.stages[start:]:
        if recognize.recognize_stage(candidate).model is not None:
            return candidate
    return None


def _pick(facts: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {k: facts[k] for k in keys if k in facts}


def _timing_text(timings: Mapping[str, float]) -> str:
    if not timings:
        return "not timed"
    return ", ".join(f"{k}: {v:.0f} ms" for k, v in sorted(timings.items(), key=_num))


def _num(item: tuple[str, Any]) -> int:
    return int(item[0])


def all_ids() -> Sequence[str]:
    return (
        RUST_TOKENIZER,
        TRUNCATION,
        DYNAMIC_PADDING,
        LENGTH_BUCKETING,
        SDPA,
        INFERENCE_MODE,
        CROSS_BATCHING,
        DISTILLATION,
    )
