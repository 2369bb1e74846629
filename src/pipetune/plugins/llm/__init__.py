"""The llm plugin: generate steps over causal LMs.

Building blocks and helpers are exported lazily, so ``import pipetune.plugins.llm`` needs
neither torch nor transformers::

    from pipetune.plugins.llm import generate_stage, prompt_stage, GenerateConfig
"""

from __future__ import annotations

from pipetune.plugins._lazy import lazy_exports

_EXPORTS = {
    "GenerateConfig": "pipetune.plugins.llm.records",
    "Generation": "pipetune.plugins.llm.records",
    "GenerationRequest": "pipetune.plugins.llm.records",
    "generate_stage": "pipetune.plugins.llm.blocks",
    "prompt_stage": "pipetune.plugins.llm.blocks",
    "encode_request": "pipetune.plugins.llm.blocks",
    "Engine": "pipetune.plugins.llm.engine",
    "PrefixCache": "pipetune.plugins.llm.prefix_cache",
    "serve_stream": "pipetune.plugins.llm.scheduler",
    "load_smollm2": "pipetune.plugins.llm.model_loading",
    "load_reference_model": "pipetune.plugins.llm.model_loading",
    "config_model": "pipetune.plugins.llm.model_loading",
    "ByteTokenizer": "pipetune.plugins.llm.model_loading",
    "CachedGenerate": "pipetune.plugins.llm.recognize",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
