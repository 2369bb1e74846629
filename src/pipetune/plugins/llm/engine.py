"""The greedy decode engine behind the generate building block.

One :class:`Engine` wraps a causal LM (a transformers model, never modified) and a
:class:`~pipetune.plugins.llm.records.GenerateConfig`. It checks each request (empty
prompt, prompt longer than the context window, ``max_new_tokens=0``, ids outside the
vocabulary: a :class:`Generation` with ``error`` set, never an exception that would take
the batch down), runs one request at a time with or without a KV cache, reuses a shared
prefix's KV, drafts speculatively, and hands batches to the schedulers in
:mod:`pipetune.plugins.llm.scheduler`.

Decoding is greedy (argmax), which is what makes "the optimized pipeline produces exactly
the same tokens" a checkable promise for every lossless change.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipetune.plugins.llm import kv_cache
from pipetune.plugins.llm.records import GenerateConfig, Generation, GenerationRequest

_CACHE_KWARG: dict[type, str] = {}


def cache_kwarg(model: Any) -> str:
    """The forward argument that takes a cache: ``cache`` (transformers 5) or
    ``past_key_values`` (4.x)."""
    kind = type(model)
    if kind not in _CACHE_KWARG:
        params: Mapping[str, inspect.Parameter]
        try:
            params = inspect.signature(model.forward).parameters
        except (TypeError, ValueError):
            params = {}
        _CACHE_KWARG[kind] = "cache" if "cache" in params else "past_key_values"
    return _CACHE_KWARG[kind]


def context_window(model: Any) -> int | None:
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def eos_ids(model: Any, tokenizer: Any = None, override: Sequence[int] | None = None) -> set[int]:
    if override is not None:
        return {int(t) for t in override}
    found: set[int] = set()
    for source in (getattr(model, "generation_config", None), getattr(model, "config", None)):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            found.add(value)
        elif isinstance(value, list | tuple):
            found.update(int(v) for v in value)
        if found:
            return found
    value = getattr(tokenizer, "eos_token_id", None)
    return {int(value)} if isinstance(value, int) else set()


def vocab_size(model: Any) -> int | None:
    value = getattr(getattr(model, "config", None), "vocab_size", None)
    return int(value) if isinstance(value, int) else None


@dataclass
class Active:
    """One request in flight: its prompt, what it generated and its timestamps."""

    index: int
    prompt: list[int]
    max_new: int
    limit_reason: str  # "length", or "context" when the window capped max_new
    request: GenerationRequest
    eos: set[int]
    tokens: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    arrival: float = 0.0
    started: float | None = None
    first_token: float | None = None
    finished: float | None = None
    drafted: int = 0
    accepted: int = 0
    verify_steps: int = 0
    prefix_hit: int = 0

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    @property
    def length(self) -> int:
        """Tokens whose KV the model has seen or will see next: prompt + generated."""
        return len(self.prompt) + len(self.tokens)

    def push(self, token: int, now: float | None = None) -> bool:
        """Append a generated token; True when the request is finished."""
        if self.done:
            return True
        self.tokens.append(int(token))
        if self.first_token is None:
            self.first_token = time.perf_counter() if now is None else now
        if token in self.eos:
            self.finish_reason = "eos"
        elif len(self.tokens) >= self.max_new:
            self.finish_reason = self.limit_reason
        if self.done:
            self.finished = time.perf_counter() if now is None else now
        return self.done

    def result(self, decode: Callable[[list[int]], str | None] | None = None) -> Generation:
        stats: dict[str, Any] = {}
        if self.started is not None and self.first_token is not None:
            stats["ttft_s"] = self.first_token - self.started
        if self.first_token is not None and self.finished is not None and len(self.tokens) > 1:
            stats["itl_s"] = (self.finished - self.first_token) / (len(self.tokens) - 1)
        if self.drafted:
            stats.update(
                drafted=self.drafted, accepted=self.accepted, verify_steps=self.verify_steps
            )
        if self.prefix_hit:
            stats["prefix_tokens_reused"] = self.prefix_hit
        if self.max_new == 0:
            stats["note"] = "max_new_tokens=0: nothing to generate"
        return Generation(
            tokens=tuple(self.tokens),
            finish_reason=self.finish_reason or "length",
            prompt_tokens=len(self.prompt),
            id=self.request.id,
            text=decode(self.tokens) if decode is not None else None,
            stats=stats,
        )


def refuse(request: GenerationRequest, message: str, index: int | None = None) -> Generation:
    where = f"request #{index}" if index is not None else "request"
    if request.id is not None:
        where += f" ({request.id})"
    return Generation(
        tokens=(),
        finish_reason="error",
        error=f"{where}: {message}",
        prompt_tokens=len(request.prompt_ids),
        id=request.id,
    )


class Engine:
    """Greedy generation for one model and one configuration.

    Args:
        model: a causal LM with a transformers-style ``forward`` (``input_ids``,
            ``attention_mask``, ``position_ids``, a cache, ``logits_to_keep``).
        config: how to generate.
        tokenizer: optional; decodes results to text and supplies the EOS id.
        draft_model: for ``speculative="draft"``: a smaller model with the same tokenizer.
        prefix_cache: a :class:`~pipetune.plugins.llm.prefix_cache.PrefixCache` shared
            across calls (its KV is computed once per prefix).
    """

    def __init__(
        self,
        model: Any,
        config: GenerateConfig,
        *,
        tokenizer: Any = None,
        draft_model: Any = None,
        prefix_cache: Any = None,
    ):
        self.model = model
        self.config = config
        self.tokenizer = tokenizer
        self.draft_model = draft_model
        self.prefix_cache = prefix_cache
        self.eos = eos_ids(model, tokenizer, config.eos_token_ids)
        self.context = context_window(model)
        self.vocab = vocab_size(model)
        self.cache_arg = cache_kwarg(model)
        self._static_runner: Any = None

    # -- requests --------------------------------------------------------------------------
    def prepare(self, request: GenerationRequest, index: int | None = None) -> Active | Generation:
        """Check a request; an :class:`Active` ready to run, or a refusal saying why."""
        prompt = list(request.prompt_ids)
        wanted = (
            self.config.max_new_tokens if request.max_new_tokens is None else request.max_new_tokens
        )
        if not isinstance(wanted, int) or isinstance(wanted, bool) or wanted < 0:
            return refuse(request, f"max_new_tokens must be an integer >= 0, got {wanted!r}", index)
        if not prompt:
            return refuse(
                request, "empty prompt (0 tokens): give the model at least one token", index
            )
        if self.vocab is not None:
            bad = [t for t in prompt if not 0 <= t < self.vocab]
            if bad:
                return refuse(
                    request,
                    f"token id {bad[0]} is outside the model's vocabulary (0..{self.vocab - 1})",
                    index,
                )
        limit = "length"
        if self.context is not None:
            if len(prompt) >= self.context:
                return refuse(
                    request,
                    f"prompt has {len(prompt)} tokens but the model's context window is "
                    f"{self.context}: shorten it by at least {len(prompt) - self.context + 1} "
                    "tokens",
                    index,
                )
            room = self.context - len(prompt)
            if wanted > room:
                wanted, limit = room, "context"
        return Active(
            index=index or 0,
            prompt=prompt,
            max_new=wanted,
            limit_reason=limit,
            request=request,
            eos=self.eos,
        )

    def decode_text(self, tokens: list[int]) -> str | None:
        if self.tokenizer is None or not hasattr(self.tokenizer, "decode"):
            return None
        try:
            return str(self.tokenizer.decode(tokens, skip_special_tokens=True))
        except Exception:  # decoding is cosmetic: never lose a result over it
            return None

    # -- model calls ---------------------------------------------------------------------
    def forward(
        self,
        input_ids: Any,
        *,
        cache: Any = None,
        attention_mask: Any = None,
        position_ids: Any = None,
        logits_to_keep: int = 1,
        model: Any = None,
    ) -> Any:
        """Logits ``[batch, kept, vocab]`` for ``input_ids``; updates ``cache`` in place.

        Runs in inference mode per call (never across a generator's ``yield``, where the
        thread-local mode would leak into the caller)."""
        import torch

        model = self.model if model is None else model
        kwargs: dict[str, Any] = {"use_cache": cache is not None, "logits_to_keep": logits_to_keep}
        if cache is not None:
            kwargs[cache_kwarg(model)] = cache
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        with torch.inference_mode():
            return model(input_ids, **kwargs).logits

    def _tensor(self, rows: list[list[int]]) -> Any:
        import torch

        return torch.tensor(rows, dtype=torch.long, device=self.device)

    @property
    def device(self) -> Any:
        device = getattr(self.model, "device", None)
        if device is None:
            import torch

            params = getattr(self.model, "parameters", None)
            device = next(params()).device if callable(params) else torch.device("cpu")
        return device

    def prefill(self, seq: Active) -> Any:
        """Run the prompt (reusing a cached prefix), push the first token, return the
        request's batch-1 cache (holding KV for every prompt token)."""
        prompt = seq.prompt
        cache, start = None, 0
        if self.prefix_cache is not None:
            start, cache = self.prefix_cache.lookup(self, prompt)
            seq.prefix_hit = start
        if cache is None:
            cache, start = kv_cache.new_cache(self.model), 0
        logits = self.forward(self._tensor([prompt[start:]]), cache=cache)
        seq.push(int(logits[0, -1].argmax()))
        return cache

    # -- one request at a time -------------------------------------------------------------
    def generate(self, request: GenerationRequest, index: int | None = None) -> Generation:
        """Generate for one request (batch 1), per this engine's configuration."""
        prepared = self.prepare(request, index)
        if isinstance(prepared, Generation):
            return prepared
        seq = prepared
        seq.started = seq.arrival = time.perf_counter()
        for _ in self.steps(seq):
            pass
        return seq.result(self.decode_text)

    def steps(self, seq: Active) -> Iterator[int]:
        """Run ``seq`` to the end (batch 1), yielding the number of new tokens after every
        model pass, so a stream server can report each token as it is produced."""
        if seq.max_new == 0:
            seq.finish_reason = "length"
            seq.finished = time.perf_counter()
            return
        if not self.config.use_cache:
            yield from self._steps_without_cache(seq)
        elif (runner := self._static_decoder()) is not None:
            yield from runner.steps(seq)
        elif self.config.speculative:
            from pipetune.plugins.llm.speculative import speculative_steps

            yield from speculative_steps(self, seq)
        else:
            cache = self.prefill(seq)
            yield 1
            yield from self.decode_steps(seq, cache)

    def generate_many(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Outputs for ``requests`` under the configured batching policy."""
        if self.config.batching == "none":
            return [self.generate(r, i) for i, r in enumerate(requests)]
        from pipetune.plugins.llm.scheduler import run_requests

        return [record.generation for record in run_requests(self, requests)]

    def decode_steps(self, seq: Active, cache: Any) -> Iterator[int]:
        """Plain batch-1 decoding with a KV cache until the request finishes."""
        while not seq.done:
            last = seq.tokens[-1]
            logits = self.forward(self._tensor([[last]]), cache=cache)
            seq.push(int(logits[0, -1].argmax()))
            yield 1

    def decode_loop(self, seq: Active, cache: Any) -> None:
        for _ in self.decode_steps(seq, cache):
            pass

    def _steps_without_cache(self, seq: Active) -> Iterator[int]:
        """The slow loop: every token re-runs the whole prefix (no KV cache)."""
        while not seq.done:
            logits = self.forward(self._tensor([seq.prompt + seq.tokens]))
            seq.push(int(logits[0, -1].argmax()))
            yield 1

    def _static_decoder(self) -> Any:
        """The static-cache decoder the configuration asks for, built once: a CUDA graph
        when ``cuda_graph`` and the model is on CUDA (compiled first with
        ``compile_step``), else a compiled step with ``compile_step``; None otherwise."""
        config = self.config
        if self._static_runner is None and (config.cuda_graph or config.compile_step):
            from pipetune.plugins.llm.cuda_graphs import (
                GraphDecoder,
                StaticDecoder,
                cuda_graph_available,
            )

            if config.cuda_graph and cuda_graph_available(self.model):
                self._static_runner = GraphDecoder(
                    self, max_len=config.static_cache_len, compile=config.compile_step
                )
            elif config.compile_step:
                self._static_runner = StaticDecoder(
                    self, max_len=config.static_cache_len, compile=True
                )
        return self._static_runner
