"""The nlp plugin's change types, one module each (its id, params dataclass, tune and
materialize); :mod:`.common` holds what they share. :func:`change_types` is what
``register_changes`` returns. (``nlp.distillation`` is advice, not a change type.)"""

from __future__ import annotations

from importlib import import_module

from pipetune.core.kernel.registry import ChangeType

#: The change modules, in the order ``register_changes`` lists their change types.
MODULES = (
    "rust_tokenizer",
    "truncation",
    "dynamic_padding",
    "length_bucketing",
    "sdpa_attention",
    "inference_mode",
    "cross_input_batching",
)


def change_types() -> list[ChangeType]:
    return [import_module(f"{__name__}.{name}").CHANGE for name in MODULES]
