"""Recognition: which objects in a stage's slots are tokenizers and text models, and what
kind they are.

Nothing here imports torch, transformers or tokenizers: a type is recognized only through
modules the user already imported (``sys.modules``) or by duck typing, so inspecting a
pipeline never pulls in a heavy library.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from pipetune.core.kernel.model import Pipeline, Stage

#: Tokenizer kinds.
PYTHON_TRANSFORMERS = "transformers-python"  # e.g. BertTokenizerLegacy (transformers 5)
RUST_TRANSFORMERS = "transformers-rust"  # e.g. BertTokenizer (transformers 5), *TokenizerFast
RUST_TOKENIZERS = "hf-tokenizers"  # tokenizers.Tokenizer
PYTHON_VOCAB = "python-vocab"  # another pure-Python tokenizer with a vocabulary

SLOW_KINDS = (PYTHON_TRANSFORMERS, PYTHON_VOCAB)


@dataclass(frozen=True)
class TokenizerInfo:
    """What a tokenizer in a slot is."""

    kind: str
    type: str
    vocab_size: int | None = None
    lowercase: bool | None = None
    model_max_length: int | None = None
    algorithm: str | None = None  # WordPiece, BPE, Unigram... when known

    @property
    def slow(self) -> bool:
        return self.kind in SLOW_KINDS

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "slow": self.slow}


@dataclass(frozen=True)
class TextModelInfo:
    """What a text model in a slot is."""

    type: str
    parameters: int
    attention: str | None  # "eager", "sdpa", "flash_attention_2"... or None when unknown
    max_positions: int | None
    hidden_size: int | None
    dtype: str | None
    device: str | None
    transformers: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _type_name(value: Any) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


def _module_class(module: str, name: str) -> Any:
    loaded = sys.modules.get(module)
    return getattr(loaded, name, None) if loaded is not None else None


# -- tokenizers -------------------------------------------------------------------------


def tokenizer_info(obj: Any) -> TokenizerInfo | None:
    """Recognize ``obj`` as a tokenizer, or return ``None``."""
    if obj is None or isinstance(obj, str | bytes | int | float | bool | Mapping):
        return None
    rust_cls = _module_class("tokenizers", "Tokenizer")
    if rust_cls is not None and isinstance(obj, rust_cls):
        return TokenizerInfo(
            kind=RUST_TOKENIZERS,
            type=_type_name(obj),
            vocab_size=_safe(lambda: obj.get_vocab_size(with_added_tokens=True)),
            lowercase=_rust_lowercase(obj),
            algorithm=type(_safe(lambda: obj.model)).__name__ or None,
        )
    base = _module_class("transformers", "PreTrainedTokenizerBase")
    if base is not None and isinstance(obj, base):
        fast = bool(getattr(obj, "is_fast", False))
        backend = _safe(lambda: obj.backend_tokenizer) if fast else None
        return TokenizerInfo(
            kind=RUST_TRANSFORMERS if fast else PYTHON_TRANSFORMERS,
            type=_type_name(obj),
            vocab_size=_safe(lambda: len(obj)),
            lowercase=_transformers_lowercase(obj, backend),
            model_max_length=_sane_length(getattr(obj, "model_max_length", None)),
            algorithm=(
                type(_safe(lambda: backend.model)).__name__
                if backend is not None
                else _python_algorithm(obj)
            ),
        )
    vocab = python_vocab(obj)
    if vocab is not None and (
        callable(getattr(obj, "tokenize", None)) or callable(getattr(obj, "encode", None))
    ):
        return TokenizerInfo(
            kind=PYTHON_VOCAB,
            type=_type_name(obj),
            vocab_size=len(vocab),
            lowercase=_attr_bool(obj, "do_lower_case", "lowercase", "lower_case"),
            algorithm="WordPiece" if any(t.startswith("##") for t in vocab) else None,
        )
    return None


def python_vocab(obj: Any) -> Mapping[str, int] | None:
    """The token -> id vocabulary of a Python tokenizer (``vocab``, ``get_vocab()``,
    ``token_to_id`` mapping), or ``None``."""
    for name in ("vocab", "token_to_id", "encoder"):
        value = getattr(obj, name, None)
        if isinstance(value, Mapping) and value and _looks_like_vocab(value):
            return value
    getter = getattr(obj, "get_vocab", None)
    if callable(getter):
        value = _safe(getter)
        if isinstance(value, Mapping) and value and _looks_like_vocab(value):
            return value
    return None


def _looks_like_vocab(value: Mapping[Any, Any]) -> bool:
    for key, index in list(value.items())[:20]:
        if not isinstance(key, str) or not isinstance(index, int):
            return False
    return True


def _rust_lowercase(tok: Any) -> bool | None:
    normalizer = _safe(lambda: tok.normalizer)
    if normalizer is None:
        return None
    text = _safe(lambda: normalizer.normalize_str("A"))
    return None if text is None else text == "a"


def _transformers_lowercase(tok: Any, backend: Any) -> bool | None:
    if backend is not None:
        return _rust_lowercase(backend)
    basic = getattr(tok, "basic_tokenizer", None)
    if basic is not None and hasattr(basic, "do_lower_case"):
        return bool(basic.do_lower_case)
    return _attr_bool(tok, "do_lower_case")


def _python_algorithm(tok: Any) -> str | None:
    if getattr(tok, "wordpiece_tokenizer", None) is not None:
        return "WordPiece"
    if getattr(tok, "bpe_ranks", None) is not None:
        return "BPE"
    if getattr(tok, "sp_model", None) is not None:
        return "SentencePiece"
    return None


def _attr_bool(obj: Any, *names: str) -> bool | None:
    for name in names:
        value = getattr(obj, name, None)
        if isinstance(value, bool):
            return value
    return None


def _sane_length(value: Any) -> int | None:
    # transformers uses a huge sentinel (1e30) when the model has no limit.
    return int(value) if isinstance(value, int) and 0 < value < 1_000_000 else None


# -- text models ------------------------------------------------------------------------


def text_model_info(obj: Any) -> TextModelInfo | None:
    """Recognize ``obj`` as a torch text model (a transformers model, or any torch module
    with an embedding table), or return ``None``."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(obj, torch.nn.Module):
        return None
    config = getattr(obj, "config", None)
    is_transformers = config is not None and hasattr(config, "model_type")
    if not is_transformers and not any(
        isinstance(m, torch.nn.Embedding) for m in _limited_modules(obj)
    ):
        return None
    parameters = _safe(lambda: sum(p.numel() for p in obj.parameters())) or 0
    first = _safe(lambda: next(obj.parameters()))
    return TextModelInfo(
        type=_type_name(obj),
        parameters=int(parameters),
        attention=attention_implementation(obj),
        max_positions=_sane_length(getattr(config, "max_position_embeddings", None)),
        hidden_size=getattr(config, "hidden_size", None),
        dtype=str(first.dtype).replace("torch.", "") if first is not None else None,
        device=str(first.device) if first is not None else None,
        transformers=is_transformers,
    )


def attention_implementation(model: Any) -> str | None:
    """The attention implementation a transformers model runs (``eager``, ``sdpa``...)."""
    config = getattr(model, "config", None)
    if config is None:
        return None
    value = getattr(config, "_attn_implementation", None)
    return value if isinstance(value, str) else None


def _limited_modules(module: Any, limit: int = 64) -> Iterator[Any]:
    for count, child in enumerate(module.modules()):
        if count >= limit:
            return
        yield child


# -- stages -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StageRecognition:
    """The NLP components of one stage."""

    stage: str
    tokenizer_slot: str | None = None
    tokenizer: TokenizerInfo | None = None
    model_slot: str | None = None
    model: TextModelInfo | None = None
    block: str | None = None

    @property
    def empty(self) -> bool:
        return self.tokenizer is None and self.model is None and self.block is None


def recognize_stage(stage: Stage) -> StageRecognition:
    """Find the tokenizer and text model among a stage's slots (the first of each)."""
    tok_slot = tok = model_slot = model = None
    for name, value in stage.slots.items():
        if tok is None:
            info = tokenizer_info(value)
            if info is not None:
                tok_slot, tok = name, info
                continue
        if model is None:
            minfo = text_model_info(value)
            if minfo is not None:
                model_slot, model = name, minfo
    block = stage.meta.get("block")
    return StageRecognition(
        stage=stage.name,
        tokenizer_slot=tok_slot,
        tokenizer=tok,
        model_slot=model_slot,
        model=model,
        block=block if isinstance(block, str) and block.startswith("nlp.") else None,
    )


def recognize_pipeline(pipeline: Pipeline) -> list[StageRecognition]:
    return [r for r in (recognize_stage(s) for s in pipeline.stages) if not r.empty]


def iter_texts(value: Any, limit: int = 10_000) -> Iterator[str]:
    """The strings inside a stage input (a text, a tuple of sections, a dict with a text
    field), depth-first, at most ``limit``. Bytes that are UTF-8 text are decoded; other
    bytes (an image, an audio clip) are binary data, not text, and are skipped."""
    stack = [value]
    seen = 0
    while stack and seen < limit:
        item = stack.pop()
        if isinstance(item, str):
            seen += 1
            yield item
        elif isinstance(item, bytes | bytearray):
            try:
                text = bytes(item).decode("utf-8")
            except UnicodeDecodeError:
                continue
            seen += 1
            yield text
        elif isinstance(item, Mapping):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list | tuple):
            stack.extend(reversed(item))


def _safe(fn: Any) -> Any:
    try:
        return fn()
    except Exception:  # recognition must never break profiling
        return None


#: Stage-name words that say "text" on their own, and words every domain uses (an image
#: encoder embeds too): those hint at a text model only in a pipeline that holds text.
_TEXT_WORDS = ("token", "bert", "sentence", "text", "nlp")
_SHARED_WORDS = ("embed", "encode", "transformer")


def text_pipeline(pipeline: Pipeline | None) -> bool:
    """Whether ``pipeline`` holds a text component: a tokenizer, a text model, an nlp
    block, or a stage of kind ``tokenize``."""
    if pipeline is None:
        return False
    return any(
        stage.kind == "tokenize" or not recognize_stage(stage).empty for stage in pipeline.stages
    )


def hints_for(stage: Stage, pipeline: Pipeline | None = None) -> list[str]:
    """How to declare ``stage`` more fully so the nlp changes can apply to it: only where
    the stage or the pipeline holds text components, or the stage's name says text."""
    found = recognize_stage(stage)
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
    name = stage.name.lower()
    if (
        found.model is None
        and stage.kind == "inference"
        and (
            any(word in name for word in _TEXT_WORDS)
            or (any(word in name for word in _SHARED_WORDS) and text_pipeline(pipeline))
        )
    ):
        hints.append(
            f"stage {stage.name!r} looks like a text model but declares none: declare its "
            "`model` slot (a torch / transformers model) to unlock the nlp plugin's "
            "padding, truncation and attention changes"
        )
    return hints
