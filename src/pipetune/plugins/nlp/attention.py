"""Efficient attention: run a transformers model with PyTorch's fused
``scaled_dot_product_attention`` (SDPA) instead of the eager softmax(QK^T)V.

Many deployments still load models with ``attn_implementation="eager"`` (older
transformers defaulted to it for BERT; some code pins it to read attention weights). The
change builds a *copy* of the model and switches the copy; the user's model, its weights
and its config are never touched.
"""

from __future__ import annotations

import copy
from typing import Any

from pipetune.core.kernel.errors import PipelineError
from pipetune.plugins.nlp.recognize import attention_implementation

EFFICIENT = ("sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")


def runs_eager(model: Any) -> bool:
    return attention_implementation(model) == "eager"


def sdpa_copy(model: Any) -> Any:
    """A deep copy of ``model`` running SDPA attention."""
    if attention_implementation(model) is None:
        raise PipelineError(
            f"{type(model).__name__} does not declare an attention implementation "
            "(not a transformers model): cannot switch it to SDPA"
        )
    clone = copy.deepcopy(model)  # the config is copied with it
    setter = getattr(clone, "set_attn_implementation", None)
    try:
        if callable(setter):
            setter("sdpa")
        else:  # older transformers read the config at forward time
            clone.config._attn_implementation = "sdpa"
    except (ValueError, ImportError) as exc:
        raise PipelineError(f"{type(model).__name__} cannot run SDPA attention: {exc}") from None
    if attention_implementation(clone) != "sdpa":
        raise PipelineError(f"{type(model).__name__} did not switch to SDPA attention")
    clone.eval()
    return clone
