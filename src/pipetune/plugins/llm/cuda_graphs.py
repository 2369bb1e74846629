"""Static KV cache + CUDA graph capture of the batch-1 decode step (GPU only).

Batch-1 decoding of a small model launches hundreds of small kernels per token; on a GPU
the launches, not the arithmetic or the memory traffic, set the speed. With a *static*
cache (``transformers.StaticCache``: fixed-size key/value buffers updated in place) and
static input buffers (token, position, a 4-D attention mask), one decode step has fixed
shapes and addresses, so it can be captured once in a CUDA graph and replayed for every
token: one launch per token.

* :class:`StaticDecoder` runs the static-cache decode eagerly; it works on any device (the
  CPU tests check it gives the same tokens as the dynamic cache) and is the fallback.
* :class:`GraphDecoder` captures the step in a ``torch.cuda.CUDAGraph`` (CUDA only). The
  greedy argmax is captured too: after a replay the host reads one integer.

Compiling the step with ``torch.compile`` before capturing it (fewer, fused kernels) is
not done: on an H200 with torch 2.11 inductor failed on the rotary embedding's buffer
under ``inference_mode`` (see docs/benchmarks/llm.md).

The prompt's prefill runs eagerly (its length varies); only the decode step is captured.
A request that would not fit in the static cache (prompt + max_new_tokens >
``static_cache_len``) falls back to the dynamic-cache path, and its stats say so.
"""

from __future__ import annotations

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

    def __init__(self, engine: Any, max_len: int = 1024):
        import torch
        from transformers import StaticCache

        self.engine = engine
        self.max_len = max_len
        model = engine.model
        device = engine.device
        self.cache = StaticCache(config=model.config, max_cache_len=max_len)
        self.ids = torch.zeros((1, 1), dtype=torch.long, device=device)
        self.pos = torch.zeros((1, 1), dtype=torch.long, device=device)
        # True = may attend. 4-D masks are used by transformers as given.
        self.mask = torch.zeros((1, 1, 1, max_len), dtype=torch.bool, device=device)
        self.logits: Any = None
        self.fallbacks = 0

    def _step(self) -> Any:
        return self.engine.forward(
            self.ids, cache=self.cache, attention_mask=self.mask, position_ids=self.pos
        )

    def _decode_once(self) -> Any:
        return self._step()

    def _next(self) -> int:
        """One decode step; the greedy next token."""
        return int(self._decode_once()[0, -1].argmax())

    def _ready(self) -> None:
        """Prepare before a request's prefill (the graph decoder captures here)."""

    def _prefill(self, prompt: list[int]) -> Any:
        import torch

        n = len(prompt)
        device = self.engine.device
        mask = torch.zeros((1, 1, n, self.max_len), dtype=torch.bool, device=device)
        mask[0, 0, :, :n] = torch.tril(torch.ones((n, n), dtype=torch.bool, device=device))
        positions = torch.arange(n, device=device).unsqueeze(0)
        return self.engine.forward(
            self.engine._tensor([prompt]),
            cache=self.cache,
            attention_mask=mask,
            position_ids=positions,
        )

    def run(self, seq: Any) -> None:
        """Generate ``seq`` to the end."""
        for _ in self.steps(seq):
            pass

    def steps(self, seq: Any) -> Iterator[int]:
        """Generate ``seq``, yielding after each pass (the number of new tokens)."""
        import torch

        if len(seq.prompt) + seq.max_new > self.max_len:
            self.fallbacks += 1
            cache = self.engine.prefill(seq)
            yield 1
            yield from self.engine.decode_steps(seq, cache)
            return
        self._ready()
        with torch.inference_mode():
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
    """:class:`StaticDecoder` with the decode step captured once in a CUDA graph."""

    def __init__(self, engine: Any, max_len: int = 1024):
        super().__init__(engine, max_len)
        self.graph: Any = None
        self.next_token: Any = None

    def _graph_step(self) -> Any:
        logits = self._step()
        return logits, logits[0, -1].argmax()

    def _capture(self) -> None:
        import torch

        # Initialize the static cache buffers with an eager step, warm up on a side
        # stream (as torch.cuda.graphs requires), capture, then clear what warm-up wrote.
        with torch.inference_mode():
            self.cache.reset()
            self.mask.zero_()
            self.mask[..., 0] = True
            self._step()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    self._graph_step()
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.logits, self.next_token = self._graph_step()
            self.graph = graph
            self.cache.reset()
        torch.cuda.synchronize()

    def _ready(self) -> None:
        if self.graph is None:
            self._capture()

    def _decode_once(self) -> Any:
        self.graph.replay()
        return self.logits

    def _next(self) -> int:
        self.graph.replay()
        return int(self.next_token)
