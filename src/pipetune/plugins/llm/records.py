"""The llm plugin's plain records: requests, generations and the generate configuration.

No torch here: these records cross the plugin's hooks (proposal params, recipes, profile
facts) and must import and serialize without the ``llm`` extra.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from pipetune.core.kernel.errors import ConfigError

#: Values of :attr:`GenerateConfig.batching`.
BATCHING_POLICIES = ("none", "static", "continuous")
#: Values of :attr:`GenerateConfig.speculative`.
SPECULATIVE_KINDS = (None, "prompt_lookup", "draft")


@dataclass(frozen=True)
class GenerationRequest:
    """One request to a generate stage: prompt token ids and how many tokens to generate.

    ``max_new_tokens=None`` uses the stage's default. ``id`` is carried through to the
    result; ``text`` (the prompt as text, when known) is only for reports.
    """

    prompt_ids: tuple[int, ...]
    max_new_tokens: int | None = None
    id: str | None = None
    text: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt_ids", tuple(int(t) for t in self.prompt_ids))


@dataclass(frozen=True)
class Generation:
    """The result of one request: the generated token ids (prompt excluded).

    ``finish_reason``: ``eos`` (the model emitted an end-of-sequence token, which is the
    last token), ``length`` (``max_new_tokens`` reached), ``context`` (the context window
    is full) or ``error`` (the request was refused: ``error`` says why; the other requests
    of the batch are unaffected). Equality compares the tokens and how generation ended,
    never the timings in ``stats``.
    """

    tokens: tuple[int, ...]
    finish_reason: str
    error: str | None = field(default=None, compare=False)
    prompt_tokens: int = 0
    id: str | None = None
    text: str | None = field(default=None, compare=False)
    stats: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class GenerateConfig:
    """How a generate building block runs. Every transformation of the llm plugin is a
    change to one of these fields, so a recipe stores it as plain parameters.

    Args:
        max_new_tokens: default per request (a request's own value wins).
        use_cache: keep a KV cache (False re-runs the whole prefix every token: the
            classic slow loop the plugin detects and fixes).
        prefixes: token-id prefixes shared by many prompts (a system prompt, a few-shot
            header); with a KV cache, each prefix's keys and values are computed once and
            copied into every request that starts with it.
        batching: ``none`` (requests one after another), ``static`` (fixed batches run
            until their longest member finishes) or ``continuous`` (requests join and
            leave the running batch at every decode step).
        max_batch: the most sequences decoded together.
        static_evict: for ``static``: drop finished rows from the batch (a competent
            static batcher) instead of decoding them as padding until the batch ends.
        engine: ``pipetune`` (the plugin's own scheduler) or ``transformers`` (the
            installed transformers' continuous-batching manager, for ``continuous``).
        speculative: ``prompt_lookup`` (draft tokens copied from the prompt by n-gram
            match), ``draft`` (a small draft model with the same tokenizer) or None.
        num_draft_tokens: tokens proposed per speculative step.
        ngram_max / ngram_min: n-gram sizes tried by prompt lookup, longest first.
        draft_layers: for ``draft`` without a given draft model: the number of leading
            layers of the target kept in a self-speculative draft (layer-truncated copy
            sharing the target's weights).
        cuda_graph: capture one batch-1 decode step with a static KV cache in a CUDA graph
            (CUDA only).
        compile_step: run the batch-1 decode step with a static KV cache through
            ``torch.compile`` (any device; with ``cuda_graph``, compiled before capture).
            The first request pays for compiling (seconds to a minute).
        static_cache_len: the static cache's length for ``cuda_graph`` and
            ``compile_step``.
        eos_token_ids: end-of-sequence ids (default: the model's generation config).
    """

    max_new_tokens: int = 64
    use_cache: bool = True
    prefixes: tuple[tuple[int, ...], ...] = ()
    batching: str = "none"
    max_batch: int = 8
    static_evict: bool = False
    engine: str = "pipetune"
    speculative: str | None = None
    num_draft_tokens: int = 4
    ngram_max: int = 3
    ngram_min: int = 1
    draft_layers: int | None = None
    cuda_graph: bool = False
    compile_step: bool = False
    static_cache_len: int = 1024
    eos_token_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefixes", tuple(tuple(int(t) for t in p) for p in self.prefixes))
        if self.eos_token_ids is not None:
            object.__setattr__(self, "eos_token_ids", tuple(int(t) for t in self.eos_token_ids))
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 0:
            raise ConfigError(
                f"max_new_tokens must be an integer >= 0, not {self.max_new_tokens!r}"
            )
        if self.batching not in BATCHING_POLICIES:
            raise ConfigError(
                f"batching must be one of {', '.join(BATCHING_POLICIES)}, not {self.batching!r}"
            )
        if self.max_batch < 1:
            raise ConfigError("max_batch must be >= 1")
        if self.engine not in ("pipetune", "transformers"):
            raise ConfigError(f"engine must be 'pipetune' or 'transformers', not {self.engine!r}")
        if self.speculative not in SPECULATIVE_KINDS:
            raise ConfigError(
                f"speculative must be None, 'prompt_lookup' or 'draft', not {self.speculative!r}"
            )
        if self.num_draft_tokens < 1 or not 1 <= self.ngram_min <= self.ngram_max:
            raise ConfigError("num_draft_tokens >= 1 and 1 <= ngram_min <= ngram_max required")
        if self.batching != "none" and not self.use_cache:
            raise ConfigError("batched generation needs the KV cache (use_cache=True)")

    def evolve(self, **changes: Any) -> GenerateConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["prefixes"] = [list(p) for p in self.prefixes]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GenerateConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown generate option(s): {', '.join(unknown)}")
        values = dict(data)
        if values.get("prefixes") is not None:
            values["prefixes"] = tuple(tuple(p) for p in values["prefixes"])
        if values.get("eos_token_ids") is not None:
            values["eos_token_ids"] = tuple(values["eos_token_ids"])
        return cls(**values)

    def describe(self) -> dict[str, Any]:
        """A short JSON summary (prefix lengths rather than their tokens)."""
        data = self.to_dict()
        data["prefixes"] = [len(p) for p in self.prefixes]
        return data


def token_list(value: Any) -> list[int]:
    """Token ids from a Generation, a sequence of ints, or a tensor/array row."""
    if isinstance(value, Generation):
        return list(value.tokens)
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [int(t) for t in value]
    raise TypeError(f"expected token ids, got {type(value).__name__}")
