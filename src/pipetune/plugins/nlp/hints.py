"""Hints for stages the nlp plugin could optimize if they were declared more fully."""

from __future__ import annotations

from pipetune.core.kernel.model import Stage
from pipetune.plugins.nlp import recognize

_TEXT_WORDS = ("token", "embed", "encode", "bert", "transformer", "sentence", "text")


def hints_for(stage: Stage) -> list[str]:
    found = recognize.recognize_stage(stage)
    hints: list[str] = []
    if found.tokenizer is None and stage.kind == "tokenize":
        hints.append(
            f"stage {stage.name!r} tokenizes but declares no tokenizer: declare its "
            "`tokenizer` slot (Stage(..., slots={'tokenizer': tok}) with `tokenizer` as a "
            "keyword argument of its function) to unlock the Rust tokenizer swap"
        )
    if found.tokenizer is not None and not stage.injects(found.tokenizer_slot or ""):
        hints.append(
            f"stage {stage.name!r} holds a {found.tokenizer.kind} tokenizer in slot "
            f"{found.tokenizer_slot!r}, but its function does not take it as a keyword "
            "argument (it uses a captured one): take it as a parameter so the Rust tokenizer "
            "swap can replace it"
        )
    if (
        found.tokenizer is not None
        and found.tokenizer.slow
        and stage.batch_fn is None
        and stage.meta.get("block") is None
    ):
        hints.append(
            f"stage {stage.name!r} tokenizes one input per call: give it a batch_fn that "
            "tokenizes a list in one call, so a Rust tokenizer can use encode_batch"
        )
    if found.model is not None and not stage.injects(found.model_slot or ""):
        hints.append(
            f"stage {stage.name!r} holds a text model in slot {found.model_slot!r} that its "
            "function does not take as a keyword argument: take it as a parameter to unlock "
            "the SDPA attention change and the hardware plugin's compilation"
        )
    if (
        found.model is None
        and stage.kind == "inference"
        and any(word in stage.name.lower() for word in _TEXT_WORDS)
    ):
        hints.append(
            f"stage {stage.name!r} looks like a text model but declares none: declare its "
            "`model` slot (a torch / transformers model) to unlock the nlp plugin's "
            "padding, truncation and attention changes"
        )
    return hints
