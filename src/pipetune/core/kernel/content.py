"""Feeding a value's *content* into a hash: equal content, equal byte stream.

The result cache (keys) and the loop's overlap check (duplicate inputs) hash values the
same way: scalars by type and repr, text and bytes with their length, arrays and tensors
by dtype, shape and bytes, containers element by element, dataclasses field by field,
anything else by its pickle. They differ only in how a file is keyed and in the error a
value with no content raises, so a :class:`ContentFeeder` takes those two from its caller.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ContentFeeder:
    """Feeds a value's content into a hash; files and unpicklable values are the caller's."""

    feed_path: Callable[[Any, Path], None]
    """Feed a :class:`~pathlib.Path` into the digest (by bytes, or by identity and version)."""
    unhashable: Callable[[Any, Exception], Exception]
    """The exception to raise for a value that cannot be pickled (given it and the error)."""

    def feed(self, digest: Any, value: Any) -> None:
        """Feed ``value`` into ``digest``: a leaf, a container, or else its pickle."""
        if not (self._feed_leaf(digest, value) or self._feed_container(digest, value)):
            self._feed_pickled(digest, value)

    def _feed_leaf(self, digest: Any, value: Any) -> bool:
        """Feed a scalar, text, bytes, array or path; False when ``value`` is none of those."""
        if value is None or isinstance(value, bool | int | float | complex):
            digest.update(f"{type(value).__name__}:{value!r};".encode())
        elif isinstance(value, str):
            digest.update(b"s%d:" % len(value))
            digest.update(value.encode("utf-8", "surrogatepass"))
        elif isinstance(value, bytes | bytearray | memoryview):
            digest.update(b"b%d:" % len(value))
            digest.update(bytes(value))
        elif isinstance(value, np.ndarray):
            _feed_array(digest, value)
        elif isinstance(value, np.generic):
            self.feed(digest, value.item())
        elif isinstance(value, Path):
            self.feed_path(digest, value)
        else:
            return False
        return True

    def _feed_container(self, digest: Any, value: Any) -> bool:
        """Feed a sequence, mapping, tensor or dataclass part by part; False for others."""
        if isinstance(value, tuple | list):
            digest.update(b"(" if isinstance(value, tuple) else b"[")
            for part in value:
                self.feed(digest, part)
            digest.update(b")")
        elif isinstance(value, Mapping):
            digest.update(b"{")
            for key in sorted(value, key=repr):
                self.feed(digest, key)
                self.feed(digest, value[key])
            digest.update(b"}")
        elif hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
            self.feed(digest, value.detach().cpu().numpy())
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            digest.update(type(value).__qualname__.encode())
            for f in dataclasses.fields(value):
                self.feed(digest, getattr(value, f.name))
        else:
            return False
        return True

    def _feed_pickled(self, digest: Any, value: Any) -> None:
        """Feed any other value by its pickle; one that cannot be pickled has no content."""
        try:
            digest.update(pickle.dumps(value, protocol=5))
        except Exception as exc:
            raise self.unhashable(value, exc) from None


def _feed_array(digest: Any, value: np.ndarray) -> None:
    """Feed an array by dtype, shape and bytes, so a reshape or a cast is a new content."""
    array = np.ascontiguousarray(value)
    digest.update(f"nd{array.dtype.str}{array.shape}:".encode())
    digest.update(array.view(np.uint8).reshape(-1) if array.size else b"")
