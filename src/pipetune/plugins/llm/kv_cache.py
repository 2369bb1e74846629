"""KV cache plumbing over transformers' ``DynamicCache``.

Every cache the plugin builds is a ``DynamicCache`` whose layers hold key and value
tensors shaped ``[batch, kv_heads, seq, head_dim]``. Batched caches are *left-padded*:
every row ends at the last column, and an attention mask marks which columns hold real
tokens. That layout lets rows of different lengths decode together (one new column per
step for every row), join a running batch (pad the shorter side on the left) and leave
it (select the remaining rows, then drop columns that are padding for all of them).

torch and transformers are imported inside the functions (the plugin imports without
them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def new_cache(model: Any) -> Any:
    """An empty ``DynamicCache`` laid out for ``model`` (one layer per decoder layer)."""
    from transformers import DynamicCache

    config = getattr(model, "config", None)
    try:
        return DynamicCache(config=config) if config is not None else DynamicCache()
    except (TypeError, ValueError):  # a config DynamicCache cannot read: lazy layers
        return DynamicCache()


def layer_tensors(cache: Any) -> list[tuple[Any, Any]]:
    """``[(keys, values), ...]`` per layer (uninitialized layers are skipped)."""
    layers = getattr(cache, "layers", None)
    if layers is None:
        raise TypeError(
            f"{type(cache).__name__} has no 'layers': pipetune's llm plugin needs "
            "transformers >= 4.56 (the layered Cache API)"
        )
    pairs = []
    for layer in layers:
        keys = getattr(layer, "keys", None)
        values = getattr(layer, "values", None)
        if keys is not None and values is not None and keys.numel() > 0:
            pairs.append((keys, values))
    return pairs


def _set_layers(cache: Any, pairs: Sequence[tuple[Any, Any]]) -> Any:
    for layer, (keys, values) in zip(cache.layers, pairs, strict=False):
        if not getattr(layer, "is_initialized", True):
            layer.lazy_initialization(keys, values)
        layer.keys = keys
        layer.values = values
    return cache


def from_tensors(model: Any, pairs: Sequence[tuple[Any, Any]]) -> Any:
    """A new cache holding ``pairs`` (one ``(keys, values)`` per layer)."""
    cache = new_cache(model)
    if len(cache.layers) < len(pairs):  # a cache built without a config: grow it lazily
        for index, (keys, values) in enumerate(pairs):
            cache.update(keys, values, index)
        return cache
    return _set_layers(cache, pairs)


def seq_length(cache: Any) -> int:
    pairs = layer_tensors(cache)
    return int(pairs[0][0].shape[-2]) if pairs else 0


def batch_size(cache: Any) -> int:
    pairs = layer_tensors(cache)
    return int(pairs[0][0].shape[0]) if pairs else 0


def clone(model: Any, cache: Any) -> Any:
    """A deep copy (new tensors): a shared prefix's KV is copied into each request."""
    return from_tensors(model, [(k.clone(), v.clone()) for k, v in layer_tensors(cache)])


def crop_right(cache: Any, remove: int) -> None:
    """Drop the last ``remove`` columns in place (rejected speculative tokens)."""
    if remove <= 0:
        return
    _set_layers(
        cache, [(k[..., :-remove, :], v[..., :-remove, :]) for k, v in layer_tensors(cache)]
    )


def pad_left(cache: Any, columns: int) -> None:
    """Add ``columns`` zero columns on the left of every row, in place."""
    if columns <= 0:
        return
    import torch

    def pad(t: Any) -> Any:
        shape = (*t.shape[:-2], columns, t.shape[-1])
        return torch.cat([t.new_zeros(shape), t], dim=-2)

    _set_layers(cache, [(pad(k), pad(v)) for k, v in layer_tensors(cache)])


def drop_left(cache: Any, columns: int) -> None:
    """Remove the first ``columns`` columns in place (padding no remaining row needs)."""
    if columns <= 0:
        return
    _set_layers(
        cache, [(k[..., columns:, :], v[..., columns:, :]) for k, v in layer_tensors(cache)]
    )


def select_rows(cache: Any, rows: Sequence[int]) -> None:
    """Keep only ``rows`` (batch indices), in place."""
    import torch

    index = torch.as_tensor(list(rows), dtype=torch.long)
    _set_layers(
        cache,
        [
            (k.index_select(0, index.to(k.device)), v.index_select(0, index.to(v.device)))
            for k, v in layer_tensors(cache)
        ],
    )


def append_rows(cache: Any, other: Any) -> None:
    """Stack ``other``'s rows under ``cache``'s (same column count), in place."""
    import torch

    mine, theirs = layer_tensors(cache), layer_tensors(other)
    if not mine:
        _set_layers(cache, theirs)
        return
    _set_layers(
        cache,
        [
            (torch.cat([k, ok], dim=0), torch.cat([v, ov], dim=0))
            for (k, v), (ok, ov) in zip(mine, theirs, strict=True)
        ],
    )


def nbytes(cache: Any) -> int:
    """Memory held by the cache's tensors."""
    return sum(
        k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in layer_tensors(cache)
    )
