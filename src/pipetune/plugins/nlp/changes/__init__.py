"""The nlp plugin's change types, one module each (its id, params dataclass, tune and
materialize); :mod:`.common` holds what they share. :func:`change_types` is what
``register_changes`` returns. (``nlp.distillation`` is advice, not a change type.)"""

from __future__ import annotations

from pipetune.core.kernel.registry import ChangeType


def change_types() -> list[ChangeType]:
    from pipetune.plugins.nlp.changes import (
        cross_input_batching,
        dynamic_padding,
        inference_mode,
        length_bucketing,
        rust_tokenizer,
        sdpa_attention,
        truncation,
    )

    return [
        rust_tokenizer.CHANGE,
        truncation.CHANGE,
        dynamic_padding.CHANGE,
        length_bucketing.CHANGE,
        sdpa_attention.CHANGE,
        inference_mode.CHANGE,
        cross_input_batching.CHANGE,
    ]
