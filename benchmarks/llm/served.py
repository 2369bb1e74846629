"""What the llm benchmarks share to put two ways of serving through ``compare``: a stage
that serves one input and keeps what it produced, and the comparison itself.

Decoding on a CPU takes seconds an input, so the comparisons here are few rounds of few
inputs, each sized by the caller, and ``compare`` is told how long an input takes (so its
probe runs one input, not four). The outputs and per-input statistics (time to first
token, a stream's latencies) come from every call ``compare`` made, its probe and
warm-up included: they are real runs of the same code on the same inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Served:
    """A stage function over ``(key, payload)`` inputs: ``serve(payload)`` returns
    ``(tokens, stats)``; the tokens per key and every call's stats are kept."""

    serve: Callable[[Any], tuple[Any, dict[str, Any]]]
    outputs: dict[Any, Any] = field(default_factory=dict)
    stats: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, item: tuple[Any, Any]) -> Any:
        key, payload = item
        tokens, stats = self.serve(payload)
        self.outputs[key] = tokens
        self.stats.append(stats)
        return tokens


def engine_served(engine: Any) -> Served:
    """A :class:`Served` around an llm :class:`~pipetune.plugins.llm.engine.Engine`."""
    return Served(lambda request: (engine.generate(request).tokens, {}))


def generate_exactly(model: Any, request: Any, new: int, device: str | None = None) -> Any:
    """transformers' ``generate`` with its own cache, greedy, exactly ``new`` tokens after
    ``request``'s prompt (the competent reference): the new token ids on the host."""
    import torch

    ids = torch.tensor([request.prompt_ids], device=device)
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=new,
        min_new_tokens=new,
        do_sample=False,
        pad_token_id=0,
    )
    return tuple(out[0, ids.shape[1] :].tolist())


def pipeline(name: str, served: Served) -> Any:
    """A one-stage pipeline around ``served`` (its outputs are token ids)."""
    from pipetune import Pipeline, Stage

    return Pipeline(name, [Stage("generate", served, kind="generate")], output_kind="tokens")


def keyed(payloads: Sequence[Any]) -> list[tuple[int, Any]]:
    """``(index, payload)`` inputs, so a :class:`Served` can tell them apart."""
    return list(enumerate(payloads))


def through_compare(
    reference: Any,
    candidate: Any,
    items: Sequence[Any],
    *,
    rounds: int,
    per_round: int,
    expected_s: float,
) -> dict[str, Any]:
    """``candidate`` against ``reference`` on ``items`` in ``rounds`` ABBA rounds of
    ``per_round`` inputs (``rounds * per_round`` distinct inputs where there are that
    many); ``expected_s``: about how long the slower side takes an input (the probe's size
    and the hang deadline, ten times it). A results row
    (:func:`benchmarks.common.comparison_row`)."""
    from benchmarks.common import side_by_side
    from pipetune.core.measure.comparison import CompareSettings

    settings = CompareSettings(
        rounds=rounds,
        items_per_round=per_round,
        min_inputs=min(len(items), rounds * per_round),
        round_target_s=0.0,
    )
    return side_by_side(reference, candidate, items, settings=settings, expected_s=expected_s)


def identical(a: Served, b: Served) -> float:
    """The share of inputs both sides served whose tokens are the same, id for id."""
    keys = sorted(set(a.outputs) & set(b.outputs))
    if not keys:
        return 0.0
    return sum(list(a.outputs[k]) == list(b.outputs[k]) for k in keys) / len(keys)
