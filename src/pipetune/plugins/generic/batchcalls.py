"""Merging several one-input calls to a component into one batched call, and splitting
its result back.

A model called one input at a time receives arrays whose first dimension is 1 (``input_ids``
of shape ``(1, L)``, an image of shape ``(1, 3, 224, 224)``). :func:`merge_calls` stacks
the calls of a group along that dimension when their other arguments are equal; calls
whose sequences differ in length are padded on the right to the group's longest when they
carry an ``attention_mask`` (or ``input_ids`` alone, then a mask is added), so padded
positions are masked out. :func:`split_output` slices the batched result back into one
result per call: rows along the first dimension, and every sequence dimension cut back to
that call's own length, so each caller gets the shapes it would have got alone.

torch tensors and numpy arrays are handled alike; anything else must be equal across the
calls (an ``output_hidden_states=True`` flag) or the calls are not merged.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Keyword arguments padded with this value beyond a sequence's own length (masked out).
PAD_VALUE = 0


@dataclass(frozen=True)
class Merged:
    """A batched call and how to cut its result back: ``rows[i]`` is call ``i``'s first-
    dimension count; ``lengths[i]`` its sequence length, when the calls were padded to
    ``width``."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    rows: tuple[int, ...]
    lengths: tuple[int, ...] | None = None
    width: int | None = None


def _torch() -> Any:
    return sys.modules.get("torch")


def is_array(value: Any) -> bool:
    torch = _torch()
    if torch is not None and isinstance(value, torch.Tensor):
        return value.dim() >= 1
    return isinstance(value, np.ndarray) and value.ndim >= 1


def _concat(parts: Sequence[Any]) -> Any:
    torch = _torch()
    if torch is not None and isinstance(parts[0], torch.Tensor):
        return torch.cat(list(parts), dim=0)
    return np.concatenate(list(parts), axis=0)


def _pad_dim1(value: Any, width: int) -> Any:
    """``value`` padded on the right of its second dimension to ``width``."""
    extra = width - value.shape[1]
    if extra <= 0:
        return value
    torch = _torch()
    if torch is not None and isinstance(value, torch.Tensor):
        pad = value.new_full((value.shape[0], extra, *value.shape[2:]), PAD_VALUE)
        return torch.cat([value, pad], dim=1)
    pad = np.full((value.shape[0], extra, *value.shape[2:]), PAD_VALUE, dtype=value.dtype)
    return np.concatenate([value, pad], axis=1)


def _ones_like_ids(ids: Any) -> Any:
    torch = _torch()
    if torch is not None and isinstance(ids, torch.Tensor):
        return torch.ones_like(ids)
    return np.ones_like(ids)


def values_equal(a: Any, b: Any) -> bool:
    """``a == b`` as one bool; False where the comparison raises or is ambiguous (two
    arrays of several elements)."""
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:
        return False


def _sequence_lengths(calls: Sequence[tuple[tuple, dict]]) -> list[int] | None:
    """Each call's sequence length, from its attention mask (or its input ids)."""
    lengths = []
    for _, kwargs in calls:
        mask = kwargs.get("attention_mask")
        ids = kwargs.get("input_ids")
        source: Any = mask if is_array(mask) else ids
        if not is_array(source) or len(source.shape) != 2:
            return None
        lengths.append(int(source.shape[1]))
    return lengths


def merge_calls(
    calls: Sequence[tuple[tuple, dict]], avoid: frozenset[int] = frozenset()
) -> Merged | None:
    """One batched call for ``calls`` (each ``(args, kwargs)``), or ``None`` when they
    cannot be merged. ``avoid``: widths that must not be the padded width (a hidden size
    or a class count), so that no output dimension is mistaken for a sequence one."""
    if not calls:
        return None
    first_args, first_kwargs = calls[0]
    if any(len(a) != len(first_args) or set(k) != set(first_kwargs) for a, k in calls):
        return None
    rows = _row_counts(calls)
    if rows is None:
        return None
    lengths = _sequence_lengths(calls)
    width = _padded_width(lengths, avoid)
    positions = [[a[position] for a, _ in calls] for position in range(len(first_args))]
    merged_args = _merge_columns(positions, width, lengths)
    if merged_args is None:
        return None
    by_key = _merge_columns([[k[key] for _, k in calls] for key in first_kwargs], width, lengths)
    if by_key is None:
        return None
    merged_kwargs = dict(zip(first_kwargs, by_key, strict=True))
    if width is not None and "attention_mask" not in merged_kwargs:
        if "input_ids" not in first_kwargs:
            return None  # sequences of different lengths and no way to mask the padding
        merged_kwargs["attention_mask"] = _padding_mask(calls, width, lengths)
    return Merged(
        tuple(merged_args),
        merged_kwargs,
        tuple(rows),
        tuple(lengths) if width is not None and lengths else None,
        width,
    )


def _row_counts(calls: Sequence[tuple[tuple, dict]]) -> list[int] | None:
    """Each call's first-dimension count, which all its arrays must share; else None."""
    rows = []
    for args, kwargs in calls:
        counts = {v.shape[0] for v in (*args, *kwargs.values()) if is_array(v)}
        if len(counts) != 1:
            return None
        rows.append(counts.pop())
    return rows


def _padded_width(lengths: list[int] | None, avoid: frozenset[int]) -> int | None:
    """The width to pad sequences to, when their lengths differ: the longest, moved past
    any width in ``avoid``; None when no padding is needed or possible."""
    padded = lengths is not None and len(set(lengths)) > 1
    width = max(lengths) if lengths and padded else None
    while width is not None and width in avoid:
        width += 1  # one more masked column rather than an ambiguous dimension
    return width


def _merge_columns(
    columns: list[list[Any]], width: int | None, lengths: list[int] | None
) -> list[Any] | None:
    """Each argument merged across the calls (:func:`_merge_values`), in order; None at
    the first that cannot be."""
    merged = []
    for values in columns:
        ok, value = _merge_values(values, width, lengths)
        if not ok:
            return None
        merged.append(value)
    return merged


def _merge_values(
    values: list[Any], width: int | None, lengths: list[int] | None
) -> tuple[bool, Any]:
    """One argument's values across the calls as one: a non-array once when all are equal,
    arrays stacked (sequences padded to ``width`` first); ``(False, None)`` when they
    cannot be."""
    if not all(is_array(v) for v in values):
        same = all(values_equal(values[0], v) for v in values)
        return (True, values[0]) if same else (False, None)
    shapes = [tuple(v.shape[1:]) for v in values]
    if width is None or lengths is None:
        return (True, _concat(values)) if len(set(shapes)) == 1 else (False, None)
    if any(len(s) < 1 or s[0] != n for s, n in zip(shapes, lengths, strict=True)):
        return (True, _concat(values)) if len(set(shapes)) == 1 else (False, None)
    if len({s[1:] for s in shapes}) != 1:
        return False, None
    return True, _concat([_pad_dim1(v, width) for v in values])


def _padding_mask(
    calls: Sequence[tuple[tuple, dict]], width: int, lengths: list[int] | None
) -> Any:
    """An attention mask for calls that passed ``input_ids`` alone: ones over each call's
    own length, zeros over its padding to ``width``."""
    masks = [_pad_dim1(_ones_like_ids(k["input_ids"]), width) for _, k in calls]
    for mask, n in zip(masks, lengths or (), strict=True):
        mask[:, n:] = 0
    return _concat(masks)


def split_output(output: Any, merged: Merged) -> list[Any]:
    """One result per merged call: rows along the first dimension, and sequence
    dimensions (those of the padded width) cut back to each call's own length."""
    count = len(merged.rows)
    total = sum(merged.rows)
    offsets = np.cumsum([0, *merged.rows])

    def cut(value: Any) -> list[Any]:
        if is_array(value) and value.shape[0] == total:
            parts = []
            for i in range(count):
                part = value[offsets[i] : offsets[i + 1]]
                if merged.width is not None and merged.lengths is not None:
                    index = [slice(None)] * len(part.shape)
                    for dim in range(1, len(part.shape)):
                        if part.shape[dim] == merged.width:
                            index[dim] = slice(0, merged.lengths[i])
                    part = part[tuple(index)]
                parts.append(part)
            return parts
        if isinstance(value, Mapping):
            by_key = {key: cut(item) for key, item in value.items()}
            return [
                _rebuild_mapping(value, {k: v[i] for k, v in by_key.items()}) for i in range(count)
            ]
        if isinstance(value, tuple | list) and not isinstance(value, str):
            pieces = [cut(item) for item in value]
            return [_rebuild_sequence(value, [p[i] for p in pieces]) for i in range(count)]
        if is_array(value):
            raise ValueError(
                f"a batched call returned an array of {value.shape[0]} rows for {total} inputs"
            )
        return [value] * count  # None, a scalar setting: the same for every call

    return cut(output)


def _rebuild_mapping(original: Mapping[str, Any], values: dict[str, Any]) -> Any:
    try:
        return type(original)(**values)  # a transformers ModelOutput, a plain dict
    except Exception:
        return dict(values)


def _rebuild_sequence(original: Sequence[Any], values: list[Any]) -> Any:
    if isinstance(original, list):
        return values
    if hasattr(original, "_fields"):  # a namedtuple
        return type(original)(*values)
    sequence_type: Any = type(original)
    try:
        return sequence_type(values)
    except Exception:
        return tuple(values)


def known_widths(component: Any) -> frozenset[int]:
    """Sizes of a transformers model's non-sequence dimensions (hidden size, classes...)
    that a padded width must not take."""
    config = getattr(component, "config", None)
    if config is None:
        inner = getattr(component, "__pipetune_wrapped__", None)
        config = getattr(inner, "config", None)
    if config is None:
        return frozenset()
    names = ("hidden_size", "intermediate_size", "num_attention_heads", "num_labels", "vocab_size")
    values = {getattr(config, name, None) for name in names}
    return frozenset(v for v in values if isinstance(v, int) and v > 0)
