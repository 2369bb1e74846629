"""Speculative decoding, greedy and lossless: a cheap proposer drafts ``k`` tokens, the
target model checks them all in one forward pass, and the longest prefix that matches the
target's own argmax is kept, plus the target's token at the first mismatch. The output is
the target's greedy output; only the number of target passes changes.

Proposers:

* :class:`PromptLookupProposer` copies the tokens that followed the last occurrence of the
  current n-gram in the prompt (or earlier output): free to run, and very good when the
  output copies the input (edit, extract, summarize).
* :class:`DraftModelProposer` runs a smaller model with the same tokenizer. Without one,
  :func:`truncated_draft` makes a *self-speculative* draft from the target's first layers
  (sharing its weights: nothing is copied or changed).

Whether speculation pays is measured on the workload (acceptance rate, speedup) and the
change is rejected when it does not.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence
from typing import Any

from pipetune.core.kernel.errors import ConfigError
from pipetune.plugins.llm import kv_cache


class PromptLookupProposer:
    """Draft by n-gram lookup in the sequence so far (prompt + output)."""

    def __init__(self, num_tokens: int = 4, ngram_max: int = 3, ngram_min: int = 1):
        self.num_tokens = num_tokens
        self.ngram_max = ngram_max
        self.ngram_min = ngram_min

    def propose(self, tokens: Sequence[int], k: int) -> list[int]:
        k = min(k, self.num_tokens)
        if k <= 0:
            return []
        size = len(tokens)
        for n in range(self.ngram_max, self.ngram_min - 1, -1):
            if size <= n:
                continue
            tail = list(tokens[size - n :])
            first = tail[0]
            # latest earlier occurrence first: in a copy, it is the freshest context
            for start in range(size - n - 1, -1, -1):
                if tokens[start] == first and list(tokens[start : start + n]) == tail:
                    follow = list(tokens[start + n : start + n + k])
                    if follow:
                        return follow
        return []


class DraftModelProposer:
    """Draft with a smaller model; keeps its own KV cache in step with the sequence."""

    def __init__(self, engine: Any, draft_model: Any, num_tokens: int = 4):
        self.engine = engine
        self.model = draft_model
        self.num_tokens = num_tokens
        self.cache = kv_cache.new_cache(draft_model)
        self.seen: list[int] = []  # tokens whose KV is in self.cache

    def propose(self, tokens: Sequence[int], k: int) -> list[int]:
        k = min(k, self.num_tokens)
        if k <= 0:
            return []
        tokens = list(tokens)
        keep = 0
        for a, b in zip(self.seen, tokens, strict=False):
            if a != b:
                break
            keep += 1
        keep = min(keep, len(tokens) - 1)  # at least one token must run to get logits
        kv_cache.crop_right(self.cache, len(self.seen) - keep)
        engine = self.engine
        logits = engine.forward(engine._tensor([tokens[keep:]]), cache=self.cache, model=self.model)
        self.seen = tokens
        out = [int(logits[0, -1].argmax())]
        while len(out) < k:
            logits = engine.forward(engine._tensor([[out[-1]]]), cache=self.cache, model=self.model)
            self.seen.append(out[-1])
            out.append(int(logits[0, -1].argmax()))
        return out


def make_proposer(engine: Any) -> Any:
    config = engine.config
    if config.speculative == "prompt_lookup":
        return PromptLookupProposer(config.num_draft_tokens, config.ngram_max, config.ngram_min)
    if config.speculative == "draft":
        draft = engine.draft_model
        if draft is None:
            if not config.draft_layers:
                raise ConfigError(
                    "speculative='draft' needs a draft model (the stage's draft_model slot) "
                    "or draft_layers for a self-speculative draft"
                )
            draft = truncated_draft(engine.model, config.draft_layers)
            engine.draft_model = draft  # built once per engine, shares the target's weights
        return DraftModelProposer(engine, draft, config.num_draft_tokens)
    raise ConfigError(f"unknown speculative kind {config.speculative!r}")


def speculative_steps(engine: Any, seq: Any, proposer: Any = None) -> Iterator[int]:
    """Generate ``seq`` to the end with draft-and-verify passes (batch 1, KV cache),
    yielding the number of tokens each target pass produced."""
    proposer = proposer or make_proposer(engine)
    cache = engine.prefill(seq)
    yield 1
    while not seq.done:
        remaining = seq.max_new - len(seq.tokens)
        # the verify pass always yields one token of its own, so draft at most remaining - 1
        draft = proposer.propose(seq.prompt + seq.tokens, remaining - 1) if remaining > 1 else []
        if not draft:
            logits = engine.forward(engine._tensor([[seq.tokens[-1]]]), cache=cache)
            seq.push(int(logits[0, -1].argmax()))
            yield 1
            continue
        inputs = [seq.tokens[-1], *draft]
        logits = engine.forward(engine._tensor([inputs]), cache=cache, logits_to_keep=len(inputs))
        targets = logits[0].argmax(-1).tolist()
        accepted = 0
        while accepted < len(draft) and draft[accepted] == targets[accepted]:
            accepted += 1
        seq.drafted += len(draft)
        seq.accepted += accepted
        seq.verify_steps += 1
        before = len(seq.tokens)
        for token in [*draft[:accepted], targets[accepted]]:
            if seq.push(token):
                break
        yield len(seq.tokens) - before
        # the cache now holds every input; keep the last token and the accepted drafts
        kv_cache.crop_right(cache, len(draft) - accepted)


def truncated_draft(model: Any, layers: int) -> Any:
    """A self-speculative draft: the target's embeddings, first ``layers`` decoder layers,
    final norm and LM head, *sharing* the target's modules (no weights copied, nothing in
    the target changed). Supports Llama-style (``model.layers``) and GPT-2-style
    (``transformer.h``) causal LMs."""
    import torch

    layouts = (("model", "layers", "num_hidden_layers"), ("transformer", "h", "n_layer"))
    found: tuple[tuple[str, str, str], Any, torch.nn.ModuleList] | None = None
    for names in layouts:
        base = getattr(model, names[0], None)
        blocks = getattr(base, names[1], None)
        if isinstance(blocks, torch.nn.ModuleList):
            found = names, base, blocks
            break
    if found is None:
        raise ConfigError(
            f"cannot build a layer-truncated draft of {type(model).__name__}: "
            "give a draft model with the same tokenizer instead"
        )
    (base_name, list_name, count_name), base, blocks = found
    total = len(blocks)
    if not 1 <= layers < total:
        raise ConfigError(f"draft_layers must be between 1 and {total - 1}, got {layers}")
    config = copy.deepcopy(model.config)
    setattr(config, count_name, layers)
    if count_name != "num_hidden_layers" and hasattr(config, "num_hidden_layers"):
        with contextlib.suppress(AttributeError):  # GPT-2 maps it to n_layer
            config.num_hidden_layers = layers
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list):
        config.layer_types = layer_types[:layers]

    new_base = copy.copy(base)
    new_base._modules = dict(base._modules)
    new_base._modules[list_name] = torch.nn.ModuleList(list(blocks)[:layers])
    new_base.config = config
    draft = copy.copy(model)
    draft._modules = dict(model._modules)
    draft._modules[base_name] = new_base
    draft.config = config
    return draft
