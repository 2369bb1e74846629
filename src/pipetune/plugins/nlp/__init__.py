"""The nlp plugin: Rust tokenizers, truncation search, dynamic padding and
length bucketing, efficient attention, and the headline document-processing demo.

The building blocks are exported lazily, so importing this package pulls in neither torch
nor transformers nor tokenizers.
"""

from __future__ import annotations

from pipetune.plugins._lazy import lazy_exports

_EXPORTS = {
    "Encoded": "pipetune.plugins.nlp.padding",
    "LinearHead": "pipetune.plugins.nlp.blocks",
    "classify_stage": "pipetune.plugins.nlp.blocks",
    "document_classifier": "pipetune.plugins.nlp.blocks",
    "embed_stage": "pipetune.plugins.nlp.blocks",
    "sections_stage": "pipetune.plugins.nlp.blocks",
    "tokenize_stage": "pipetune.plugins.nlp.blocks",
    "build_rust_tokenizer": "pipetune.plugins.nlp.tokenizers_swap",
    "tokenizer_info": "pipetune.plugins.nlp.recognize",
    "text_model_info": "pipetune.plugins.nlp.recognize",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
