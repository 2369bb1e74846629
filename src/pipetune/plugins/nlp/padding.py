"""Token sequences, padding and length bucketing (numpy only).

A tokenized section is an :class:`Encoded`: its ids (possibly already padded) and its real
length. Padding to a fixed length wastes model time on pad tokens: a 40-token section
padded to 512 spends over 90 % of the forward pass on nothing. *Dynamic padding* pads each
forward batch only to its own longest sequence; *length bucketing* sorts sequences by length
before cutting batches, so each batch holds sequences of similar length and pads little.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Padding modes of the tokenize building block.
PAD_MAX_LENGTH = "max_length"  # pad every sequence to max_length (the classic slow setup)
PAD_DYNAMIC = "dynamic"  # no padding at tokenization; each forward batch pads to its longest
PADDING_MODES = (PAD_MAX_LENGTH, PAD_DYNAMIC)


@dataclass(frozen=True, eq=False)
class Encoded:
    """One tokenized sequence: ``ids`` (int64, possibly padded) of which the first
    ``length`` are real tokens. Equal and hashable by content, so a content-hash cache can
    key on it."""

    ids: np.ndarray
    length: int
    pad_id: int = 0

    def __post_init__(self) -> None:
        ids = np.ascontiguousarray(self.ids, dtype=np.int64)
        ids.setflags(write=False)
        object.__setattr__(self, "ids", ids)
        if not 0 <= self.length <= len(ids):
            raise ValueError(f"length {self.length} outside 0..{len(ids)}")

    @property
    def padded_length(self) -> int:
        return len(self.ids)

    @property
    def tokens(self) -> np.ndarray:
        """The real ids, without padding."""
        return self.ids[: self.length]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Encoded):
            return NotImplemented
        return self.length == other.length and np.array_equal(self.ids, other.ids)

    def __hash__(self) -> int:
        return hash((self.length, self.ids.tobytes()))

    def __repr__(self) -> str:
        return f"Encoded(length={self.length}, padded_length={self.padded_length})"


def encode_ids(ids: Sequence[int], pad_to: int | None, pad_id: int) -> Encoded:
    """An :class:`Encoded` from real ids, padded to ``pad_to`` when given."""
    length = len(ids)
    if pad_to is None or pad_to <= length:
        return Encoded(np.asarray(ids, dtype=np.int64), length, pad_id)
    padded = np.full(pad_to, pad_id, dtype=np.int64)
    padded[:length] = ids
    return Encoded(padded, length, pad_id)


#: A length bucket closes when adding the next (longer) sequence would make more than this
#: share of the batch's computed tokens padding.
MAX_BUCKET_WASTE = 0.2


def plan_batches(
    lengths: Sequence[int], batch_size: int, bucket: bool, max_waste: float = MAX_BUCKET_WASTE
) -> list[list[int]]:
    """Indices of each forward batch; batches never exceed ``batch_size``.

    Without ``bucket``, consecutive runs of ``batch_size``. With it, sequences are sorted by
    length (stably) and cut into buckets of similar length: a bucket also closes when the
    next sequence would raise its padding share above ``max_waste``. So a handful of very
    different sections (a 20-token letterhead and a 300-token paragraph) run separately,
    while many documents' sections pooled together fill batches of near-equal length.
    """
    size = max(1, int(batch_size))
    if not bucket:
        return [list(range(i, min(i + size, len(lengths)))) for i in range(0, len(lengths), size)]
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches: list[list[int]] = []
    current: list[int] = []
    real = 0
    for index in order:
        length = max(1, lengths[index])
        if current:
            width = length  # sorted: the newcomer is the longest
            waste = 1.0 - (real + length) / (width * (len(current) + 1))
            if len(current) >= size or waste > max_waste:
                batches.append(current)
                current, real = [], 0
        current.append(index)
        real += length
    if current:
        batches.append(current)
    return batches


def collate(sequences: Sequence[Encoded]) -> tuple[np.ndarray, np.ndarray]:
    """Input ids and attention mask for one forward batch, padded to the longest
    *padded* length in the batch (a sequence padded at tokenization stays padded)."""
    width = max((s.padded_length for s in sequences), default=0)
    width = max(width, 1)
    ids = np.empty((len(sequences), width), dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        n = seq.padded_length
        ids[row, :n] = seq.ids
        ids[row, n:] = seq.pad_id
        mask[row, : seq.length] = 1
    return ids, mask


def padding_waste(batches: Iterable[Sequence[Encoded]]) -> dict[str, Any]:
    """Real and padded token counts over forward batches: the share of pad tokens."""
    real = padded = 0
    for batch in batches:
        if not batch:
            continue
        width = max(s.padded_length for s in batch)
        real += sum(s.length for s in batch)
        padded += width * len(batch)
    return {
        "real_tokens": real,
        "computed_tokens": padded,
        "pad_share": 1.0 - real / padded if padded else 0.0,
    }


def waste_of_plan(sequences: Sequence[Encoded], batch_size: int, bucket: bool) -> dict[str, Any]:
    """Padding waste of running ``sequences`` with a given batching plan."""
    plan = plan_batches([s.padded_length for s in sequences], batch_size, bucket)
    return padding_waste([[sequences[i] for i in batch] for batch in plan])


def length_histogram(lengths: Iterable[int], edges: Sequence[int]) -> dict[str, int]:
    """Counts of lengths in ``(previous edge, edge]`` buckets, and ``>last`` above."""
    counts = {f"<={edge}": 0 for edge in edges}
    counts[f">{edges[-1]}"] = 0
    for length in lengths:
        for edge in edges:
            if length <= edge:
                counts[f"<={edge}"] += 1
                break
        else:
            counts[f">{edges[-1]}"] += 1
    return counts
