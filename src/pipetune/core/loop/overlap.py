"""Exact duplicates between the tuning and the held-out split.

A held-out input that also appears, byte for byte, in the tuning split validates nothing
a tune step did not already see: a cache tuned on it, a threshold fitted to it. The loop
checks every held-out input against the tuning split by content and reports the share
that overlaps. Content means the value itself: text, bytes, arrays and tensors by dtype,
shape and bytes, containers element by element, a file by its bytes (read only for files
whose size also occurs on the other side). Inputs with no stable content (an open
capture) are counted apart, not guessed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipetune.core.kernel.content import ContentFeeder


@dataclass(frozen=True)
class Overlap:
    """Held-out inputs whose exact content is also in the tuning split."""

    holdout: int
    duplicates: int
    unhashable: int = 0

    @property
    def share(self) -> float:
        return self.duplicates / self.holdout if self.holdout else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "holdout": self.holdout,
            "duplicates": self.duplicates,
            "share": self.share,
            "unhashable": self.unhashable,
        }

    def warning(self) -> str:
        if not self.duplicates:
            return ""
        return (
            f"{self.duplicates} of {self.holdout} held-out inputs ({self.share:.0%}) also "
            "appear, exactly, in the tuning split: the validation does not show how changes "
            "do on unseen inputs (remove duplicates, or give the workload groups= so that "
            "related inputs stay on one side)"
        )


class _Unhashable(TypeError):
    pass


def find_overlap(tune: Sequence[Any], holdout: Sequence[Any]) -> Overlap:
    """How many of ``holdout``'s inputs are exact duplicates of one in ``tune``."""
    sizes = _file_sizes(tune) & _file_sizes(holdout)
    seen = set()
    for item in tune:
        digest = _digest(item, sizes)
        if digest is not None:
            seen.add(digest)
    duplicates = unhashable = 0
    for item in holdout:
        digest = _digest(item, sizes)
        if digest is None:
            unhashable += 1
        elif digest in seen:
            duplicates += 1
    return Overlap(holdout=len(holdout), duplicates=duplicates, unhashable=unhashable)


def _file_sizes(items: Sequence[Any]) -> set[int]:
    sizes = set()
    for item in items:
        if isinstance(item, Path):
            try:
                sizes.add(item.stat().st_size)
            except OSError:
                continue
    return sizes


def _digest(value: Any, file_sizes: set[int]) -> bytes | None:
    digest = hashlib.blake2b(digest_size=16)
    feeder = ContentFeeder(
        feed_path=lambda d, path: _feed_file(d, path, file_sizes), unhashable=_unhashable
    )
    try:
        feeder.feed(digest, value)
    except _Unhashable:
        return None
    return digest.digest()


def _unhashable(value: Any, exc: Exception) -> _Unhashable:
    """The error for an input with no stable content: it is counted apart, not guessed."""
    return _Unhashable(str(exc))


def _feed_file(digest: Any, path: Path, file_sizes: set[int]) -> None:
    """A file by its bytes; a file whose size does not occur on the other side cannot
    be a duplicate, so it is keyed by its path alone (no read)."""
    try:
        size = path.stat().st_size
    except OSError:
        digest.update(f"path:{path};".encode())
        return
    if size not in file_sizes:
        digest.update(f"path:{path.resolve()};".encode())
        return
    digest.update(b"file%d:" % size)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
