"""Building blocks for text pipelines that the nlp plugin knows how to optimize.

A document classifier built from them::

    sections -> tokenize -> embed -> classify

* :func:`sections_stage`: a document (``str``, or ``bytes`` decoded as UTF-8 with invalid
  bytes replaced) to its sections (blocks separated by blank lines).
* :func:`tokenize_stage`: sections to :class:`~pipetune.plugins.nlp.padding.Encoded` ids.
  Slots: ``tokenizer`` (a transformers tokenizer, pure-Python or Rust-backed, a HF
  ``tokenizers.Tokenizer``, or a Python tokenizer with ``encode``), ``max_length``
  (truncation), ``padding`` (``"max_length"`` or ``"dynamic"``).
* :func:`embed_stage`: ids to one mean-pooled, L2-normalized embedding per section.
  Slots: ``model`` (a torch text encoder returning token states), ``batch_size``
  (sequences per forward pass), ``bucket`` (sort by length before batching),
  ``grad_mode`` (``"no_grad"`` or ``"inference_mode"``).
* :func:`classify_stage`: section embeddings to a label: their mean through a linear head.

Every stage has a ``batch_fn`` (several documents per call: their sections are pooled into
the same forward batches) and marks itself in ``meta["block"]``; the tokenize and embed
stages are ``meta["elementwise"]``: their output for a document is one entry per section,
each depending only on that section, so a cache may key on single sections.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.plugins.nlp import recognize
from pipetune.plugins.nlp.padding import (
    PAD_DYNAMIC,
    PAD_MAX_LENGTH,
    PADDING_MODES,
    Encoded,
    collate,
    encode_ids,
    plan_batches,
)
from pipetune.plugins.nlp.tokenizers_swap import RustVocabTokenizer, pad_id, unconfigured

GRAD_MODES = ("no_grad", "inference_mode")

BLOCK_SECTIONS = "nlp.sections"
BLOCK_TOKENIZE = "nlp.tokenize"
BLOCK_EMBED = "nlp.embed"
BLOCK_CLASSIFY = "nlp.classify"


# -- sections ---------------------------------------------------------------------------


def as_text(document: Any) -> str:
    """A document as text: ``bytes`` are decoded as UTF-8, invalid bytes replaced (U+FFFD,
    which BERT-style normalizers drop), so a bad byte never loses the whole document."""
    if isinstance(document, str):
        return document
    if isinstance(document, bytes | bytearray | memoryview):
        return bytes(document).decode("utf-8", errors="replace")
    raise TypeError(f"expected a document as str or bytes, got {type(document).__name__}")


def split_sections(document: Any) -> tuple[str, ...]:
    """Sections of a document (blocks separated by blank lines). An empty document is one
    empty section, so every input still gets a prediction."""
    text = as_text(document)
    parts = tuple(p.strip() for p in re.split(r"\n[ \t]*\n", text) if p.strip())
    return parts or ("",)


def sections_stage(name: str = "sections") -> Stage:
    return Stage(
        name,
        split_sections,
        kind="preprocess",
        batch_fn=lambda documents: [split_sections(d) for d in documents],
        meta={"block": BLOCK_SECTIONS},
    )


# -- tokenize ---------------------------------------------------------------------------


def tokenize_texts(
    texts: Sequence[str], tokenizer: Any, max_length: int, padding: str
) -> list[Encoded]:
    """Token ids of ``texts``, truncated to ``max_length`` (special tokens included),
    padded to ``max_length`` when ``padding == "max_length"``."""
    if padding not in PADDING_MODES:
        raise ConfigError(f"padding must be one of {', '.join(PADDING_MODES)}, not {padding!r}")
    if not isinstance(max_length, int) or max_length < 2:
        raise ConfigError(f"max_length must be an integer >= 2, got {max_length!r}")
    texts = list(texts)
    if not texts:
        return []
    pad_to = max_length if padding == PAD_MAX_LENGTH else None
    info = recognize.tokenizer_info(tokenizer)
    kind = info.kind if info is not None else None
    pad = pad_id(tokenizer)

    if kind == recognize.RUST_TOKENIZERS:
        return _rust_encode(tokenizer, texts, max_length, pad_to, pad)
    if kind == recognize.RUST_TRANSFORMERS:
        return _rust_encode(tokenizer.backend_tokenizer, texts, max_length, pad_to, pad)
    if kind == recognize.PYTHON_TRANSFORMERS:
        # The classic call, one text at a time; the tokenizer pads when asked to.
        out = []
        for text in texts:
            enc = tokenizer(
                text,
                truncation=True,
                max_length=max_length,
                padding="max_length" if pad_to else False,
            )
            ids = enc["input_ids"]
            length = int(sum(enc["attention_mask"])) if "attention_mask" in enc else len(ids)
            out.append(Encoded(np.asarray(ids, dtype=np.int64), length, pad))
        return out
    if isinstance(tokenizer, RustVocabTokenizer):
        return [encode_ids(ids[:max_length], pad_to, pad) for ids in tokenizer.encode_batch(texts)]
    encode = getattr(tokenizer, "encode", None)
    if callable(encode):
        return [encode_ids(list(encode(t))[:max_length], pad_to, pad) for t in texts]
    raise ConfigError(
        f"the tokenize block cannot call a {type(tokenizer).__name__}: give it a transformers "
        "tokenizer, a tokenizers.Tokenizer or an object with encode(text) -> ids"
    )


def _rust_encode(
    rust: Any, texts: list[str], max_length: int, pad_to: int | None, pad: int
) -> list[Encoded]:
    # One batch call with special tokens; the few texts longer than max_length are encoded
    # again without them, truncated, and finished by the post-processor — exactly what
    # transformers does with truncation=True. The tokenizer object is never reconfigured
    # (enable_truncation would mutate a tokenizer that may be shared, or the user's own);
    # padding or truncation configured in its tokenizer.json is left out on a clone.
    rust = unconfigured(rust)
    specials = rust.post_processor.num_special_tokens_to_add(False) if rust.post_processor else 0
    budget = max(0, max_length - specials)
    out = []
    for text, enc in zip(texts, rust.encode_batch_fast(texts), strict=True):
        ids = enc.ids
        if len(ids) > max_length:
            content = rust.encode(text, add_special_tokens=False)
            content.truncate(budget)
            ids = rust.post_process(content).ids if specials else content.ids
        out.append(encode_ids(ids, pad_to, pad))
    return out


def tokenize_sections(
    sections: Sequence[str],
    *,
    tokenizer: Any,
    max_length: int = 512,
    padding: str = PAD_MAX_LENGTH,
) -> tuple[Encoded, ...]:
    return tuple(tokenize_texts(sections, tokenizer, max_length, padding))


def tokenize_sections_batch(
    documents: Sequence[Sequence[str]],
    *,
    tokenizer: Any,
    max_length: int = 512,
    padding: str = PAD_MAX_LENGTH,
) -> list[tuple[Encoded, ...]]:
    flat = [section for doc in documents for section in doc]
    encoded = tokenize_texts(flat, tokenizer, max_length, padding)
    return _unflatten(encoded, [len(doc) for doc in documents])


def tokenize_stage(
    tokenizer: Any,
    *,
    max_length: int = 512,
    padding: str = PAD_MAX_LENGTH,
    name: str = "tokenize",
) -> Stage:
    return Stage(
        name,
        tokenize_sections,
        kind="tokenize",
        slots={"tokenizer": tokenizer, "max_length": max_length, "padding": padding},
        batch_fn=tokenize_sections_batch,
        meta={"block": BLOCK_TOKENIZE, "elementwise": True},
    )


# -- embed ------------------------------------------------------------------------------


def embed_encoded(
    sequences: Sequence[Encoded],
    model: Any,
    *,
    batch_size: int = 1,
    bucket: bool = False,
    grad_mode: str = "no_grad",
    normalize: bool = True,
) -> np.ndarray:
    """Mean-pooled (and L2-normalized) token states of ``model``, one row per sequence.

    Forward batches are planned by :func:`plan_batches` and padded by :func:`collate` to
    their longest member, so sequences that were not padded at tokenization are padded
    dynamically.
    """
    import torch

    if grad_mode not in GRAD_MODES:
        raise ConfigError(f"grad_mode must be one of {', '.join(GRAD_MODES)}, not {grad_mode!r}")
    sequences = list(sequences)
    if not sequences:
        size = getattr(getattr(model, "config", None), "hidden_size", None)
        return np.zeros((0, size if isinstance(size, int) else 0), dtype=np.float32)
    context = torch.inference_mode if grad_mode == "inference_mode" else torch.no_grad
    plan = plan_batches([s.padded_length for s in sequences], batch_size, bucket)
    rows: list[np.ndarray] = [np.empty(0, np.float32)] * len(sequences)
    device = _device(model)
    with context():
        for batch in plan:
            ids, mask = collate([sequences[i] for i in batch])
            attention = torch.from_numpy(mask).to(device)
            input_ids = torch.from_numpy(ids).to(device)
            states = _token_states(model(input_ids=input_ids, attention_mask=attention))
            weights = attention.unsqueeze(-1).to(device=states.device, dtype=states.dtype)
            pooled = ((states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)).float()
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            for row, index in zip(pooled.cpu().numpy(), batch, strict=True):
                rows[index] = row
    return np.stack(rows).astype(np.float32, copy=False)


def _device(model: Any) -> Any:
    """Where the model's weights live (inputs go there); CPU for anything else."""
    parameters = getattr(model, "parameters", None)
    if callable(parameters):
        try:
            return next(parameters()).device
        except (StopIteration, TypeError):
            pass
    return "cpu"


def _token_states(output: Any) -> Any:
    """Token states from whatever the model returns (a ModelOutput, a tuple, a dict, a
    tensor): compiled or exported models keep the calling convention but not the class."""
    import torch

    states = getattr(output, "last_hidden_state", None)
    if states is None and isinstance(output, dict):
        states = output.get("last_hidden_state")
    if states is None and isinstance(output, list | tuple):
        states = output[0]
    if states is None:
        states = output
    if isinstance(states, np.ndarray):
        states = torch.from_numpy(states)
    return states


def embed_sections(
    encoded: Sequence[Encoded],
    *,
    model: Any,
    batch_size: int = 1,
    bucket: bool = False,
    grad_mode: str = "no_grad",
) -> np.ndarray:
    return embed_encoded(encoded, model, batch_size=batch_size, bucket=bucket, grad_mode=grad_mode)


def embed_sections_batch(
    documents: Sequence[Sequence[Encoded]],
    *,
    model: Any,
    batch_size: int = 1,
    bucket: bool = False,
    grad_mode: str = "no_grad",
) -> list[np.ndarray]:
    flat = [seq for doc in documents for seq in doc]
    rows = embed_encoded(flat, model, batch_size=batch_size, bucket=bucket, grad_mode=grad_mode)
    counts = [len(doc) for doc in documents]
    bounds = np.cumsum([0, *counts])
    return [rows[bounds[i] : bounds[i + 1]] for i in range(len(counts))]


def embed_stage(
    model: Any,
    *,
    batch_size: int = 1,
    bucket: bool = False,
    grad_mode: str = "no_grad",
    name: str = "embed",
) -> Stage:
    return Stage(
        name,
        embed_sections,
        kind="inference",
        slots={"model": model, "batch_size": batch_size, "bucket": bucket, "grad_mode": grad_mode},
        batch_fn=embed_sections_batch,
        meta={"block": BLOCK_EMBED, "elementwise": True},
    )


# -- classify ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LinearHead:
    """A linear classifier over the mean of section embeddings (numpy: no torch needed)."""

    weights: np.ndarray  # (classes, dim)
    bias: np.ndarray  # (classes,)
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        weights = np.asarray(self.weights, dtype=np.float32)
        bias = np.asarray(self.bias, dtype=np.float32)
        if weights.ndim != 2 or bias.shape != (weights.shape[0],):
            raise ConfigError("a linear head needs weights (classes, dim) and bias (classes,)")
        if len(self.classes) != weights.shape[0]:
            raise ConfigError(f"{len(self.classes)} class names for {weights.shape[0]} outputs")
        for array in (weights, bias):
            array.setflags(write=False)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "bias", bias)
        object.__setattr__(self, "classes", tuple(self.classes))

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim == 1:
            embeddings = embeddings[None, :]
        document = (
            embeddings.mean(axis=0)
            if len(embeddings)
            else np.zeros(self.weights.shape[1], np.float32)
        )
        return self.weights @ document + self.bias

    def predict(self, embeddings: np.ndarray) -> str:
        return self.classes[int(np.argmax(self.logits(embeddings)))]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        np.savez(path, weights=self.weights, bias=self.bias, classes=np.array(self.classes))
        return path

    @classmethod
    def load(cls, path: str | Path) -> LinearHead:
        with np.load(Path(path), allow_pickle=False) as data:
            return cls(data["weights"], data["bias"], tuple(str(c) for c in data["classes"]))


def classify_document(embeddings: np.ndarray, *, head: LinearHead) -> str:
    return head.predict(embeddings)


def classify_stage(head: LinearHead, name: str = "classify") -> Stage:
    return Stage(
        name,
        classify_document,
        kind="postprocess",
        slots={"head": head},
        batch_fn=lambda docs, head: [head.predict(d) for d in docs],
        output_kind="labels",
        meta={"block": BLOCK_CLASSIFY},
    )


def document_classifier(
    tokenizer: Any,
    model: Any,
    head: LinearHead,
    *,
    max_length: int = 512,
    padding: str = PAD_MAX_LENGTH,
    batch_size: int = 1,
    bucket: bool = False,
    grad_mode: str = "no_grad",
    name: str = "document-classifier",
) -> Pipeline:
    """sections -> tokenize -> embed -> classify, with the given settings."""
    return Pipeline(
        name,
        (
            sections_stage(),
            tokenize_stage(tokenizer, max_length=max_length, padding=padding),
            embed_stage(model, batch_size=batch_size, bucket=bucket, grad_mode=grad_mode),
            classify_stage(head),
        ),
        output_kind="labels",
    )


def _unflatten(values: Sequence[Any], counts: Sequence[int]) -> list[tuple[Any, ...]]:
    out, start = [], 0
    for count in counts:
        out.append(tuple(values[start : start + count]))
        start += count
    return out


__all__ = [
    "BLOCK_CLASSIFY",
    "BLOCK_EMBED",
    "BLOCK_SECTIONS",
    "BLOCK_TOKENIZE",
    "PAD_DYNAMIC",
    "PAD_MAX_LENGTH",
    "Encoded",
    "LinearHead",
    "classify_stage",
    "document_classifier",
    "embed_encoded",
    "embed_stage",
    "sections_stage",
    "split_sections",
    "tokenize_stage",
    "tokenize_texts",
]
