"""KV cache plumbing over transformers' ``DynamicCache``.

Every cache the plugin builds is a ``DynamicCache`` whose layers hold key and value
tensors shaped ``[batch, kv_heads, seq, head_dim]``. Its full-attention layers grow in
place (:func:`growing_layer_class`): transformers' ``DynamicLayer`` appends a step's keys
with ``torch.cat``, which allocates and copies the whole cache every step; a growing layer
keeps spare columns in a buffer and writes the new ones in place, so a step copies only
what it adds (decode steps of SmolLM2-135M on this CPU 1.05-1.18x faster at 1,000-2,000
columns, no difference at 200: ``benchmarks/llm/step_profile.py``).

Batched caches are *left-padded*: every row ends at the last column, and an attention
mask marks which columns hold real tokens. That layout lets rows of different lengths
decode together (one new column per step for every row), join a running batch (pad the
shorter side on the left) and leave it (select the remaining rows, then drop columns
that are padding for all of them).

torch and transformers are imported inside the functions (the plugin imports without
them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Spare columns a growing layer allocates when it must reallocate: half its length, at
#: least this many (so a decode reallocates a logarithmic number of times).
MIN_SPARE_COLUMNS = 64

_growing_layer: type | None = None


class _GrowingBuffers:
    """The buffer bookkeeping of :class:`GrowingLayer` (see :func:`growing_layer_class`):
    whether ``keys``/``values`` still front the buffers, whether a step's columns fit, and
    the reallocation when they do not. A mixin, so that it needs no transformers import."""

    keys: Any
    values: Any
    _key_buffer: Any
    _value_buffer: Any

    def _owns_keys(self) -> bool:
        """``keys``/``values`` are still the front columns of the buffers."""
        buffer, keys, values = self._key_buffer, self.keys, self.values
        return (
            buffer is not None
            and keys is not None
            and values is not None
            and keys.dim() == 4
            and keys.data_ptr() == buffer.data_ptr()
            and keys.stride() == buffer.stride()
            and keys.shape[:2] == buffer.shape[:2]
            and values.data_ptr() == self._value_buffer.data_ptr()
            and values.stride() == self._value_buffer.stride()
        )

    def _in_place(self, key_states: Any) -> bool:
        """The step's columns can be written into the buffers' spare columns."""
        keys = self.keys
        return (
            keys is not None
            and self._owns_keys()
            and key_states.shape[:2] == self._key_buffer.shape[:2]
            and keys.shape[-2] + key_states.shape[-2] <= self._key_buffer.shape[-2]
        )

    def _reallocate(self, key_states: Any, value_states: Any) -> None:
        """New buffers holding the current columns, with room for the step's and spare."""
        assert self.keys is not None, "update initializes the layer first"
        held = self.keys.shape[-2] if self.keys.dim() == 4 else 0
        length = held + key_states.shape[-2]
        capacity = length + max(MIN_SPARE_COLUMNS, length // 2)
        self._key_buffer = _buffer(self.keys, key_states, held, capacity)
        self._value_buffer = _buffer(self.values, value_states, held, capacity)
        self.keys = self._key_buffer[..., :held, :]
        self.values = self._value_buffer[..., :held, :]

    def buffer_bytes(self) -> int:
        """Memory the buffers hold, spare columns included (0: none in use)."""
        if not self._owns_keys():
            return 0
        return sum(b.numel() * b.element_size() for b in (self._key_buffer, self._value_buffer))


def growing_layer_class() -> type:
    """:class:`GrowingLayer`, defined on first use (it subclasses transformers'
    ``DynamicLayer``, and transformers is imported lazily)."""
    global _growing_layer
    if _growing_layer is None:
        from transformers.cache_utils import DynamicLayer

        class GrowingLayer(_GrowingBuffers, DynamicLayer):
            """A ``DynamicLayer`` whose keys and values are views of buffers with spare
            columns: ``update`` writes the new columns in place while they fit.

            Anything that replaces ``keys``/``values`` (the helpers below pad, select
            rows, drop or crop columns) is noticed at the next ``update``: the layer keeps
            writing in place only while ``keys`` is still the front of its buffer
            (cropping from the right keeps it so); otherwise it copies into a new buffer.
            Views handed out earlier stay valid, except columns past a crop, which the
            next update overwrites (their owner, speculative decoding, has dropped them).
            """

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self._key_buffer: Any = None
                self._value_buffer: Any = None

            def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> Any:
                if not self.is_initialized:
                    self.lazy_initialization(key_states, value_states)
                if not self._in_place(key_states):
                    self._reallocate(key_states, value_states)
                assert self.keys is not None, "initialized above"
                start = self.keys.shape[-2]
                end = start + key_states.shape[-2]
                self._key_buffer[..., start:end, :].copy_(key_states)
                self._value_buffer[..., start:end, :].copy_(value_states)
                self.keys = self._key_buffer[..., :end, :]
                self.values = self._value_buffer[..., :end, :]
                return self.keys, self.values

            def reset(self) -> None:
                self._key_buffer = self._value_buffer = None
                super().reset()

        _growing_layer = GrowingLayer
    return _growing_layer


def _buffer(held: Any, states: Any, columns: int, capacity: int) -> Any:
    """A ``[batch, heads, capacity, dim]`` buffer whose first ``columns`` hold ``held``."""
    import torch

    shape = (*states.shape[:2], capacity, states.shape[-1])
    buffer = torch.empty(shape, dtype=states.dtype, device=states.device)
    if columns:
        buffer[..., :columns, :].copy_(held)
    return buffer


def new_cache(model: Any, growing: bool = True) -> Any:
    """An empty ``DynamicCache`` laid out for ``model`` (one layer per decoder layer),
    its full-attention layers growing in place (:func:`growing_layer_class`) unless
    ``growing=False`` (transformers' own layers, for comparison)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    config = getattr(model, "config", None)
    try:
        cache = DynamicCache(config=config) if config is not None else DynamicCache()
    except (TypeError, ValueError):  # a config DynamicCache cannot read: lazy layers
        return DynamicCache()
    if growing:
        layer_class = growing_layer_class()
        # exact type: sliding-window layers (subclasses) keep transformers' own behaviour
        cache.layers = [
            layer_class() if type(layer) is DynamicLayer else layer for layer in cache.layers
        ]
    return cache


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
    """Memory held by the cache's tensors (a growing layer's spare columns included)."""
    total = 0
    for layer in cache.layers:
        k, v = getattr(layer, "keys", None), getattr(layer, "values", None)
        if k is None or v is None or k.numel() == 0:
            continue
        held = layer.buffer_bytes() if hasattr(layer, "buffer_bytes") else 0
        total += held or k.numel() * k.element_size() + v.numel() * v.element_size()
    return total
