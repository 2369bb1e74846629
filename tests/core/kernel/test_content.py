"""ContentFeeder: equal content feeds equal bytes; files and unpicklables are the caller's."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipetune.core.kernel.content import ContentFeeder


class _NoContent(TypeError):
    pass


def _hash(value: Any) -> bytes:
    feeder = ContentFeeder(
        feed_path=lambda digest, path: digest.update(f"file:{path.name};".encode()),
        unhashable=lambda value, exc: _NoContent(type(value).__name__),
    )
    digest = hashlib.blake2b(digest_size=16)
    feeder.feed(digest, value)
    return digest.digest()


def test_equal_content_feeds_equal_bytes():
    a = np.arange(6).reshape(2, 3)
    assert _hash(a) == _hash(a.copy())
    assert _hash(a) != _hash(a.reshape(3, 2))
    assert _hash({"x": 1, "y": [1, 2]}) == _hash({"y": [1, 2], "x": 1})
    assert _hash((1, 2)) != _hash([1, 2])
    assert _hash("ab") != _hash(b"ab")
    assert _hash(np.int64(3)) != _hash(np.float64(3))


def test_paths_and_unpicklable_values_go_to_the_caller():
    assert _hash(Path("/nowhere/a.txt")) == _hash(Path("/elsewhere/a.txt"))
    with pytest.raises(_NoContent, match="generator"):
        _hash(x for x in ())
