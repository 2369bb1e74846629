"""The Rust tokenizer swap: a HF ``tokenizers.Tokenizer`` built from the *same* vocabulary
and normalization as a pure-Python tokenizer, verified id-for-id before it is used.

Three sources are handled:

* a transformers pure-Python tokenizer (``BertTokenizerLegacy`` and other ``PythonBackend``
  tokenizers in transformers 5): WordPiece tokenizers are rebuilt here from the vocabulary
  and the basic tokenizer's settings (lower-casing, accent stripping, Chinese characters,
  special tokens); others go through transformers' own slow-to-fast converters;
* another Python tokenizer with a WordPiece vocabulary (a ``vocab`` mapping and a
  ``tokenize`` / ``encode`` method): rebuilt with the BERT normalizer, whose settings are
  probed from the tokenizer's own behaviour;
* anything already Rust-backed is left alone.

A conversion is never trusted: :func:`first_mismatch` compares the ids of both tokenizers
on every text of the workload, and the swap is rejected with the first differing input.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipetune.core.kernel.errors import PipelineError, short_repr
from pipetune.core.kernel.registry import require
from pipetune.plugins.nlp import recognize

#: Pad tokens tried, in order, when a Rust tokenizer does not say which id pads.
_PAD_TOKENS = ("[PAD]", "<pad>", "<|pad|>", "<PAD>", "[pad]")


class ConversionError(PipelineError):
    """No Rust tokenizer can be built from this tokenizer."""


# -- building ---------------------------------------------------------------------------


def build_rust_tokenizer(tokenizer: Any) -> Any:
    """A new ``tokenizers.Tokenizer`` equivalent to ``tokenizer`` (never the same object:
    the user's tokenizer is not touched)."""
    tokenizers = require("tokenizers", "nlp", "the Rust tokenizer swap")
    info = recognize.tokenizer_info(tokenizer)
    if info is None:
        raise ConversionError(f"{type(tokenizer).__name__} is not a recognized tokenizer")
    if info.kind == recognize.RUST_TOKENIZERS:
        return tokenizers.Tokenizer.from_str(tokenizer.to_str())
    if info.kind == recognize.RUST_TRANSFORMERS:
        return tokenizers.Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    if info.kind == recognize.PYTHON_TRANSFORMERS:
        if _is_wordpiece_bert(tokenizer):
            return _from_bert_python(tokenizer)
        return _from_transformers_converter(tokenizer)
    if info.kind == recognize.PYTHON_VOCAB:
        return _from_python_vocab(tokenizer)
    raise ConversionError(f"cannot convert a {info.kind} tokenizer")


def _is_wordpiece_bert(tok: Any) -> bool:
    return (
        getattr(tok, "wordpiece_tokenizer", None) is not None
        and isinstance(getattr(tok, "vocab", None), Mapping)
        and (getattr(tok, "basic_tokenizer", None) is not None or not tok.do_basic_tokenize)
    )


def _from_bert_python(tok: Any) -> Any:
    """Mirror of transformers' ``BertConverter`` that also accepts ``BertTokenizerLegacy``
    (the converters are keyed by class name) and carries the special tokens over, so a
    literal ``[SEP]`` in the text is matched as the slow tokenizer matches it."""
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    wordpiece = tok.wordpiece_tokenizer
    rust = Tokenizer(
        WordPiece(
            dict(tok.vocab),
            unk_token=str(tok.unk_token),
            max_input_chars_per_word=int(getattr(wordpiece, "max_input_chars_per_word", 100)),
        )
    )
    basic = getattr(tok, "basic_tokenizer", None)
    if basic is not None:
        if basic.never_split or not getattr(basic, "do_split_on_punc", True):
            # The Rust pre-tokenizer has no never_split list and always splits punctuation.
            raise ConversionError(
                "the Python tokenizer uses never_split / do_split_on_punc=False, which the "
                "Rust BERT pre-tokenizer cannot reproduce"
            )
        rust.normalizer = normalizers.BertNormalizer(
            clean_text=True,
            handle_chinese_chars=bool(basic.tokenize_chinese_chars),
            strip_accents=basic.strip_accents,
            lowercase=bool(basic.do_lower_case),
        )
        rust.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = str(tok.cls_token), str(tok.sep_token)
    rust.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, tok.cls_token_id), (sep, tok.sep_token_id)],
    )
    rust.decoder = decoders.WordPiece(prefix="##")
    specials = [str(t) for t in getattr(tok, "all_special_tokens", ())]
    if specials:
        rust.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return rust


def _from_transformers_converter(tok: Any) -> Any:
    try:
        from transformers.convert_slow_tokenizer import (
            SLOW_TO_FAST_CONVERTERS,
            convert_slow_tokenizer,
        )
    except ImportError as exc:  # pragma: no cover - transformers always has it
        raise ConversionError(f"transformers has no slow-to-fast converter: {exc}") from None
    name = type(tok).__name__
    base = name.removesuffix("Legacy")
    converter = SLOW_TO_FAST_CONVERTERS.get(name) or SLOW_TO_FAST_CONVERTERS.get(base)
    try:
        if converter is not None:
            return converter(tok).converted()
        return convert_slow_tokenizer(tok)
    except Exception as exc:
        raise ConversionError(
            f"transformers cannot convert {name} to a Rust tokenizer: {type(exc).__name__}: {exc}"
        ) from None


def _from_python_vocab(tok: Any) -> Any:
    """A WordPiece vocabulary with BERT-style normalization. Lower-casing and accent
    stripping are probed from the tokenizer itself; the result is verified on the
    workload anyway, so a wrong guess is rejected, never used."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordPiece

    vocab = recognize.python_vocab(tok)
    if vocab is None:
        raise ConversionError(f"{type(tok).__name__} exposes no vocabulary")
    if not any(token.startswith("##") for token in vocab):
        raise ConversionError(
            f"{type(tok).__name__}: only WordPiece vocabularies (with ## continuations) "
            "can be rebuilt from a vocabulary alone"
        )
    unk = next((u for u in ("[UNK]", "<unk>", "[unk]") if u in vocab), None)
    if unk is None:
        raise ConversionError(f"{type(tok).__name__}: the vocabulary has no unknown token")
    lowercase = _probe_lowercase(tok)
    rust = Tokenizer(WordPiece(dict(vocab), unk_token=unk))
    rust.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    rust.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return rust


def _probe_lowercase(tok: Any) -> bool:
    declared = recognize.tokenizer_info(tok)
    if declared is not None and declared.lowercase is not None:
        return declared.lowercase
    tokenize = getattr(tok, "tokenize", None)
    if callable(tokenize):
        try:
            pieces = tokenize("The")
        except Exception:
            return True
        return not any(any(ch.isupper() for ch in piece) for piece in pieces)
    return True


# -- wrapping for the slot the tokenizer came from ---------------------------------------


def as_slot_replacement(rust: Any, original: Any, *, prefer_raw: bool) -> Any:
    """What goes into the stage's slot in place of ``original``.

    ``prefer_raw``: the stage is a pipetune nlp building block, which calls
    ``encode_batch`` on a raw ``tokenizers.Tokenizer`` directly. Otherwise the user's code
    calls the original's API, so the Rust tokenizer is wrapped to keep it: a transformers
    fast tokenizer for a transformers one, an adapter with ``tokenize``/``encode`` for
    another Python tokenizer.
    """
    if prefer_raw:
        return rust
    info = recognize.tokenizer_info(original)
    if info is not None and info.kind == recognize.PYTHON_TRANSFORMERS:
        return _transformers_fast(rust, original)
    return RustVocabTokenizer(rust, original)


def _transformers_fast(rust: Any, original: Any) -> Any:
    from transformers import PreTrainedTokenizerFast

    special = {
        name: str(getattr(original, name))
        for name in ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token", "bos_token")
        if getattr(original, name, None) is not None
    }
    kwargs: dict[str, Any] = {
        "tokenizer_object": rust,
        **special,
        "padding_side": getattr(original, "padding_side", "right"),
        "truncation_side": getattr(original, "truncation_side", "right"),
    }
    max_length = getattr(original, "model_max_length", None)
    if isinstance(max_length, int):
        kwargs["model_max_length"] = max_length
    return PreTrainedTokenizerFast(**kwargs)


class RustVocabTokenizer:
    """A Rust tokenizer with the calling convention of a plain Python vocabulary tokenizer:
    ``tokenize(text) -> tokens``, ``convert_tokens_to_ids``, ``encode(text) -> ids`` (with
    the same leading/trailing ids the original's ``encode`` adds), plus ``encode_batch``.
    """

    def __init__(self, rust: Any, original: Any):
        self.rust = rust
        self.vocab = dict(recognize.python_vocab(original) or rust.get_vocab())
        self._prefix, self._suffix = _probe_affixes(original, self.vocab)

    def tokenize(self, text: str) -> list[str]:
        return list(self.rust.encode(text, add_special_tokens=False).tokens)

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        unk: Any = self.vocab.get("[UNK]", self.vocab.get("<unk>", 0))
        return [self.vocab.get(t, unk) for t in tokens]

    def encode(self, text: str) -> list[int]:
        ids = self.rust.encode(text, add_special_tokens=False).ids
        return [*self._prefix, *ids, *self._suffix]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [
            [*self._prefix, *e.ids, *self._suffix]
            for e in self.rust.encode_batch_fast(list(texts), add_special_tokens=False)
        ]

    def __call__(self, text: str) -> list[int]:
        return self.encode(text)

    def __repr__(self) -> str:
        return f"RustVocabTokenizer(vocab_size={len(self.vocab)})"


def _probe_affixes(original: Any, vocab: Mapping[str, int]) -> tuple[list[int], list[int]]:
    """The ids the original's ``encode`` puts around the content ids (e.g. [CLS] .. [SEP])."""
    encode, tokenize = getattr(original, "encode", None), getattr(original, "tokenize", None)
    if not (callable(encode) and callable(tokenize)):
        return [], []
    try:
        full = list(encode("probe text"))
        core = [vocab.get(t) for t in tokenize("probe text")]
    except Exception:
        return [], []
    for start in range(len(full) - len(core) + 1):
        if full[start : start + len(core)] == core:
            return full[:start], full[start + len(core) :]
    return [], []


# -- ids, as each kind of tokenizer gives them -------------------------------------------


_UNCONFIGURED: dict[int, tuple[Any, Any]] = {}


def unconfigured(rust: Any) -> Any:
    """``rust`` (a ``tokenizers.Tokenizer``) without the padding and truncation its
    ``tokenizer.json`` may configure (sentence-transformers models ship ``Fixed(128)``
    padding and truncation at 128): those would pad every text to a fixed length, with the
    pads counted as content, and cut texts silently. A clone is returned when either is
    set, once per tokenizer; the tokenizer itself, which may be the user's, is never
    reconfigured."""
    if getattr(rust, "padding", None) is None and getattr(rust, "truncation", None) is None:
        return rust
    cached = _UNCONFIGURED.get(id(rust))
    if cached is not None and cached[0] is rust:
        return cached[1]
    clone = type(rust).from_str(rust.to_str())
    clone.no_padding()
    clone.no_truncation()
    _UNCONFIGURED[id(rust)] = (rust, clone)  # holds rust: its id is never reused meanwhile
    return clone


def ids_of(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """The full (untruncated) ids with special tokens, the way each kind is normally called."""
    info = recognize.tokenizer_info(tokenizer)
    kind = info.kind if info is not None else None
    texts = list(texts)
    if kind == recognize.RUST_TOKENIZERS:
        return [list(e.ids) for e in unconfigured(tokenizer).encode_batch_fast(texts)]
    if kind in (recognize.RUST_TRANSFORMERS, recognize.PYTHON_TRANSFORMERS):
        if kind == recognize.RUST_TRANSFORMERS:
            return [list(x) for x in tokenizer(texts, truncation=False)["input_ids"]]
        return [list(tokenizer(text, truncation=False)["input_ids"]) for text in texts]
    encode_batch = getattr(tokenizer, "encode_batch", None)
    if isinstance(tokenizer, RustVocabTokenizer) and callable(encode_batch):
        return encode_batch(texts)
    encode = getattr(tokenizer, "encode", None)
    if callable(encode):
        return [list(encode(text)) for text in texts]
    convert = getattr(tokenizer, "convert_tokens_to_ids", None)
    if callable(convert):
        return [list(convert(tokenizer.tokenize(text))) for text in texts]
    vocab = recognize.python_vocab(tokenizer) or {}
    return [[vocab.get(t, -1) for t in tokenizer.tokenize(text)] for text in texts]


@dataclass(frozen=True)
class Mismatch:
    """The first input on which two tokenizers disagree."""

    index: int
    text: str
    position: int
    expected: tuple[int, ...]
    got: tuple[int, ...]

    def describe(self) -> str:
        window = slice(max(0, self.position - 2), self.position + 3)
        return (
            f"input #{self.index} ({short_repr(self.text, 70)}): ids differ at token "
            f"{self.position}: expected {list(self.expected[window])}, "
            f"got {list(self.got[window])} (lengths {len(self.expected)} vs {len(self.got)})"
        )


def first_mismatch(
    reference: Any, candidate: Any, texts: Sequence[str], chunk: int = 256
) -> Mismatch | None:
    """The first text on which ``candidate`` gives different ids from ``reference``."""
    texts = list(texts)
    for start in range(0, len(texts), chunk):
        part = texts[start : start + chunk]
        expected = ids_of(reference, part)
        got = ids_of(candidate, part)
        for offset, (a, b) in enumerate(zip(expected, got, strict=True)):
            if a != b:
                position = next(
                    (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                    min(len(a), len(b)),
                )
                return Mismatch(start + offset, part[offset], position, tuple(a), tuple(b))
    return None


def pad_id(tokenizer: Any) -> int:
    """The id that pads sequences for ``tokenizer``."""
    value = getattr(tokenizer, "pad_token_id", None)
    if isinstance(value, int):
        return value
    padding = getattr(tokenizer, "padding", None)
    if isinstance(padding, Mapping) and isinstance(padding.get("pad_id"), int):
        return int(padding["pad_id"])
    token_to_id = getattr(tokenizer, "token_to_id", None)
    rust = getattr(tokenizer, "rust", None)
    if token_to_id is None and rust is not None:
        token_to_id = rust.token_to_id
    if callable(token_to_id):
        for token in _PAD_TOKENS:
            found = token_to_id(token)
            if found is not None:
                return int(found)
    vocab = recognize.python_vocab(tokenizer) or {}
    for token in _PAD_TOKENS:
        if token in vocab:
            return int(vocab[token])
    return 0
