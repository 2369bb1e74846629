"""Merging several one-prompt ``generate`` calls into one batched call, and splitting the
generated rows back.

A request served one at a time calls ``model.generate(input_ids=ids, attention_mask=mask,
max_new_tokens=n)`` with ids of shape ``(1, L)``. :func:`merge_generate_calls` stacks a
group of such calls, padded on the *left* to the group's longest prompt (a decoder-only
model continues from the last column, so padding goes before the prompt, masked out), when
every other argument is the same and decoding is greedy with an explicit
``max_new_tokens``. Budgets may differ: the batch decodes to the largest, and greedy
decoding makes a row's first ``n`` tokens the same whatever comes after them, so each row
is cut back to its own. :func:`split_generated` gives each call its own row back without
the left padding and without what the batch appended after the row finished (its budget
spent, or the padding after its end-of-sequence token), so each caller gets the tensor it
would have got alone.

Calls that sample, search beams, ask for several sequences or a dict output, stop on
strings or time, or draft speculatively (which ``generate`` runs one prompt at a time) are
not merged: the coalescer then makes them one at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipetune.plugins.generic.batchcalls import values_equal

#: Options under which a batched call cannot give each row what a call of its own gives.
UNMERGEABLE = (
    "stopping_criteria",
    "stop_strings",
    "max_time",
    "prompt_lookup_num_tokens",
    "assistant_model",
    "streamer",
    "prefix_allowed_tokens_fn",
    "logits_processor",
    "negative_prompt_ids",
)


@dataclass(frozen=True)
class MergedGenerate:
    """A batched ``generate`` call, each prompt's length and the padded width."""

    kwargs: dict[str, Any]
    lengths: tuple[int, ...]
    width: int
    stop_ids: frozenset[int]
    budgets: tuple[int, ...] | None = None  # each call's max_new_tokens


def _setting(kwargs: dict[str, Any], config: Any, name: str) -> Any:
    if name in kwargs:
        return kwargs[name]
    given = kwargs.get("generation_config")
    if given is not None and getattr(given, name, None) is not None:
        return getattr(given, name)
    return getattr(config, name, None) if config is not None else None


def _ids(values: Any) -> frozenset[int]:
    if values is None:
        return frozenset()
    if isinstance(values, int):
        return frozenset({values})
    return frozenset(int(v) for v in values)


def _prompt(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any] | None:
    """The call's ``(input_ids, attention_mask)``, or None when it is not one prompt."""
    import torch

    if len(args) > 1 or (args and "input_ids" in kwargs):
        return None
    ids = args[0] if args else kwargs.get("input_ids")
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.shape[0] != 1:
        return None
    mask = kwargs.get("attention_mask")
    if mask is None:
        mask = torch.ones_like(ids)
    if not isinstance(mask, torch.Tensor) or mask.shape != ids.shape or not bool(mask.all()):
        return None  # a prompt already padded: its own padding is not ours to move
    return ids, mask


def merge_generate_calls(
    calls: Sequence[tuple[tuple[Any, ...], dict[str, Any]]], model: Any
) -> MergedGenerate | None:
    """One left-padded batched call for ``calls`` to ``model.generate``, or ``None`` when
    they cannot be merged (see the module docstring)."""
    import torch

    if len(calls) < 2:
        return None
    prompts = [_prompt(args, kwargs) for args, kwargs in calls]
    if any(p is None for p in prompts):
        return None
    config = getattr(model, "generation_config", None)
    budgets = [_setting(kwargs, config, "max_new_tokens") for _, kwargs in calls]
    if any(not isinstance(b, int) or isinstance(b, bool) for b in budgets):
        return None  # a max_length would count the padding and cut short prompts short
    first = _shared_options(calls)
    if first is None or not _decodes_row_by_row(first, config, model):
        return None
    stop_ids = _ids(_setting(first, config, "eos_token_id"))
    pad = _pad_id(first, config, stop_ids)
    if pad is None:
        return None
    lengths = tuple(int(ids.shape[1]) for ids, _ in prompts)  # type: ignore[misc]
    width = max(lengths)
    rows, masks = _left_padded(prompts, width, pad)  # type: ignore[arg-type]
    kwargs = dict(first)
    kwargs.update(
        input_ids=torch.cat(rows, dim=0),
        attention_mask=torch.cat(masks, dim=0),
        pad_token_id=pad,
        max_new_tokens=max(budgets),
    )
    return MergedGenerate(kwargs, lengths, width, stop_ids, tuple(budgets))


def _shared_options(
    calls: Sequence[tuple[tuple[Any, ...], dict[str, Any]]],
) -> dict[str, Any] | None:
    """The options besides the prompt and budget, when every call passes the same ones."""
    own = ("input_ids", "attention_mask", "max_new_tokens")
    rest = [{k: v for k, v in kwargs.items() if k not in own} for _, kwargs in calls]
    first = rest[0]
    if any(set(r) != set(first) or any(not values_equal(r[k], first[k]) for k in r) for r in rest):
        return None
    return first


def _decodes_row_by_row(options: dict[str, Any], config: Any, model: Any) -> bool:
    """Whether a batch gives each row what a call of its own gives: greedy, one sequence,
    plain token ids, and none of the options or drafting that ``generate`` cannot batch."""
    if any(options.get(name) is not None for name in UNMERGEABLE):
        return False
    if getattr(model, "prompt_lookup_num_tokens", None) or _setting(
        options, config, "prompt_lookup_num_tokens"
    ):
        return False  # a proxy that drafts by prompt lookup, or a config that does
    if _setting(options, config, "do_sample") or (_setting(options, config, "num_beams") or 1) > 1:
        return False
    if (_setting(options, config, "num_return_sequences") or 1) > 1:
        return False
    return not _setting(options, config, "return_dict_in_generate")


def _pad_id(options: dict[str, Any], config: Any, stop_ids: frozenset[int]) -> Any:
    """The token to pad with: the pad token, else the lowest end-of-sequence id, else None."""
    pad = _setting(options, config, "pad_token_id")
    if pad is None:
        pad = min(stop_ids) if stop_ids else None
    return pad


def _left_padded(
    prompts: Sequence[tuple[Any, Any]], width: int, pad: Any
) -> tuple[list[Any], list[Any]]:
    """Each prompt's ids and mask padded on the left to ``width`` (masked out), since a
    decoder-only model continues from the last column."""
    import torch

    rows, masks = [], []
    for ids, mask in prompts:
        extra = width - ids.shape[1]
        rows.append(torch.cat([ids.new_full((1, extra), int(pad)), ids], dim=1))
        masks.append(torch.cat([mask.new_zeros((1, extra)), mask], dim=1))
    return rows, masks


def split_generated(output: Any, merged: MergedGenerate) -> list[Any]:
    """Each call's ``(1, L + new)`` tensor from the batched output: its left padding
    removed, and cut after its first end-of-sequence token among the new ones."""
    import torch

    if not isinstance(output, torch.Tensor) or output.dim() != 2:
        raise ValueError("a batched generate returned something other than token ids")
    if output.shape[0] != len(merged.lengths):
        raise ValueError(f"{output.shape[0]} rows came back for {len(merged.lengths)} prompts")
    parts = []
    budgets = merged.budgets or (None,) * len(merged.lengths)
    for row, length, budget in zip(output, merged.lengths, budgets, strict=True):
        own = row[merged.width - length :]
        if budget is not None:
            own = own[: length + budget]
        new = own[length:]
        if merged.stop_ids:
            stops = [i for i, token in enumerate(new.tolist()) if token in merged.stop_ids]
            if stops:
                own = own[: length + stops[0] + 1]
        parts.append(own.unsqueeze(0).clone())
    return parts
