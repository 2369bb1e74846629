"""Static KV cache + CUDA graph capture of the batch-1 decode step (GPU), optionally
compiled first (any device).

Batch-1 decoding of a small model launches hundreds of small kernels per token; on a GPU
the launches, not the arithmetic or the memory traffic, set the speed. With a *static*
cache (``transformers.StaticCache``: fixed-size key/value buffers updated in place) and
static input buffers (token, position, a 4-D attention mask), one decode step has fixed
shapes and addresses, so it can be captured once in a CUDA graph and replayed for every
token: one launch per token.

* :class:`StaticDecoder` runs the static-cache decode step eagerly on any device (the CPU
  tests check it gives the same tokens as the dynamic cache) and is the fallback.
  With ``compile=True`` the step (the forward pass and the greedy argmax) goes through
  ``torch.compile`` (inductor) first: fewer, fused kernels. On this CPU that is
  1.06-1.14x the dynamic-cache loop on SmolLM2-135M (docs/benchmarks/llm.md).
* :class:`GraphDecoder` captures the step in a ``torch.cuda.CUDAGraph`` (CUDA only),
  compiled first when asked. The greedy argmax is captured too: after a replay the host
  reads one integer.

A compiled step runs under ``torch.no_grad``, never ``inference_mode``: inductor failed
on the rotary embedding's buffer under ``inference_mode`` (H200, torch 2.11), and the
static cache's buffers must then be allocated outside ``inference_mode`` too (an
inference tensor cannot be updated in place outside it), so a compiling decoder runs the
prefill under ``no_grad`` as well. A step that fails to compile falls back to the eager
step for good; ``compile_error`` says why.

The prompt's prefill runs eagerly (its length varies); only the decode step is captured.
A request that would not fit in the static cache (prompt + max_new_tokens >
``static_cache_len``) falls back to the dynamic-cache path, and its stats say so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def cuda_graph_available(model: Any) -> bool:
    """True when torch has CUDA and ``model`` lives on a CUDA device."""
    try:
        import torch
    except ImportError:
        return False
    if not torch.cuda.is_available():
        return False
    device = getattr(model, "device", None)
    return getattr(device, "type", None) == "cuda"


class StaticDecoder:
    """Greedy batch-1 decoding with a static KV cache and static input buffers."""

    def __init__(self, engine: Any, max_len: int = 1024, compile: bool = False):
        import torch
        from transformers import StaticCache

        self.engine = engine
        self.max_len = max_len
        self.compile = compile
        self.compile_error: str | None = None
        self._compiled: Any = None
        model = engine.model
        device = engine.device
        self.cache = StaticCache(config=model.config, max_cache_len=max_len)
        self.ids = torch.zeros((1, 1), dtype=torch.long, device=device)
        self.pos = torch.zeros((1, 1), dtype=torch.long, device=device)
        # True = may attend. 4-D masks are used by transformers as given.
        self.mask = torch.zeros((1, 1, 1, max_len), dtype=torch.bool, device=device)
        self.logits: Any = None
        self.fallbacks = 0

    def _grad_mode(self) -> contextlib.AbstractContextManager[Any]:
        """``no_grad`` for a compiling decoder (see the module docstring), else
        ``inference_mode``."""
        import torch

        return torch.no_grad() if self.compile else torch.inference_mode()

    def _forward(self, ids: Any, mask: Any, positions: Any) -> Any:
        model = self.engine.model
        kwargs = {self.engine.cache_arg: self.cache, "use_cache": True, "logits_to_keep": 1}
        with self._grad_mode():
            return model(ids, attention_mask=mask, position_ids=positions, **kwargs).logits

    def _step(self) -> Any:
        return self._forward(self.ids, self.mask, self.pos)

    def _step_and_argmax(self) -> tuple[Any, Any]:
        logits = self._step()
        return logits, logits[0, -1].argmax()

    def _compiled_step(self) -> Any | None:
        """The compiled step, compiled on first use; None when compiling failed."""
        if self._compiled is None and self.compile_error is None:
            import torch

            try:
                self._compiled = torch.compile(self._step_and_argmax, dynamic=False)
            except Exception as exc:  # torch without inductor, a platform it lacks
                self.compile_error = f"{type(exc).__name__}: {exc}"
        return self._compiled

    def _decode_once(self) -> tuple[Any, Any]:
        """One decode step: ``(logits, greedy next token)`` as tensors."""
        compiled = self._compiled_step() if self.compile else None
        if compiled is not None:
            try:
                with self._grad_mode():
                    return compiled()
            except Exception as exc:  # inductor failed on this model: eager from now on
                self.compile_error = f"{type(exc).__name__}: {str(exc)[:500]}"
                self._compiled = None
        # the static cache writes each step's keys at its position: rerunning a step that
        # failed part-way writes the same values again
        return self._step_and_argmax()

    def _next(self) -> int:
        """One decode step; the greedy next token."""
        return int(self._decode_once()[1])

    def _ready(self) -> None:
        """Prepare before a request's prefill (the graph decoder captures here)."""

    def _prefill(self, prompt: list[int]) -> Any:
        import torch

        n = len(prompt)
        device = self.engine.device
        mask = torch.zeros((1, 1, n, self.max_len), dtype=torch.bool, device=device)
        mask[0, 0, :, :n] = torch.tril(torch.ones((n, n), dtype=torch.bool, device=device))
        positions = torch.arange(n, device=device).unsqueeze(0)
        return self._forward(self.engine._tensor([prompt]), mask, positions)

    def run(self, seq: Any) -> None:
        """Generate ``seq`` to the end."""
        for _ in self.steps(seq):
            pass

    def steps(self, seq: Any) -> Iterator[int]:
        """Generate ``seq``, yielding after each pass (the number of new tokens)."""
        if len(seq.prompt) + seq.max_new > self.max_len:
            self.fallbacks += 1
            cache = self.engine.prefill(seq)
            yield 1
            yield from self.engine.decode_steps(seq, cache)
            return
        self._ready()
        with self._grad_mode():
            self.cache.reset()
        logits = self._prefill(seq.prompt)
        seq.push(int(logits[0, -1].argmax()))
        yield 1
        self.mask.zero_()
        self.mask[..., : len(seq.prompt)] = True
        while not seq.done:
            position = seq.length - 1
            self.ids.fill_(seq.tokens[-1])
            self.pos.fill_(position)
            self.mask[..., position] = True
            seq.push(self._next())
            yield 1


class GraphDecoder(StaticDecoder):
    """:class:`StaticDecoder` with the decode step captured once in a CUDA graph
    (compiled before capture when ``compile=True``)."""

    def __init__(self, engine: Any, max_len: int = 1024, compile: bool = False):
        super().__init__(engine, max_len, compile)
        self.graph: Any = None
        self.next_token: Any = None

    def _capture(self) -> None:
        import torch

        # Initialize the static cache buffers with an eager step, warm up on a side
        # stream (as torch.cuda.graphs requires; compiling happens here, and a step that
        # fails to compile falls back to eager here, outside the capture), capture, then
        # clear what warm-up wrote.
        with self._grad_mode():
            self.cache.reset()
            self.mask.zero_()
            self.mask[..., 0] = True
            self._step()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    self._decode_once()
            torch.cuda.current_stream().wait_stream(stream)
            try:
                self.graph = self._record()
            except Exception as exc:
                if self._compiled is None:
                    raise
                # compiled kernels that cannot be captured: capture the eager step
                self.compile_error = f"capture of the compiled step failed: {exc}"[:500]
                self._compiled = None
                self.graph = self._record()
            self.cache.reset()
        torch.cuda.synchronize()

    def _record(self) -> Any:
        import torch

        graph = torch.cuda.CUDAGraph()
        step = self._compiled if self._compiled is not None else self._step_and_argmax
        with torch.cuda.graph(graph):
            self.logits, self.next_token = step()
        return graph

    def _ready(self) -> None:
        if self.graph is None:
            self._capture()

    def _next(self) -> int:
        self.graph.replay()
        return int(self.next_token)
