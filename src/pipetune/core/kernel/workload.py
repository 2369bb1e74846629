"""The workload: realistic inputs for a pipeline, how to replay them, and how to split them.

It owns :class:`Workload`'s checks, its loaders (a sequence, a JSON Lines file, a folder),
the timing sample, and the (tune, held-out) split, which keeps items of one group (frames
of one clip, requests of one user) on one side.
"""

from __future__ import annotations

import json
import math
import operator
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.trace import Trace


@dataclass(frozen=True)
class Workload:
    """Realistic inputs for a pipeline, and how to replay them.

    Args:
        items: the inputs, in order.
        labels: optional ground truth, one per item (accuracy is reported when given).
        name: shown in reports.
        concurrency: the concurrency levels the profiler sweeps.
        warmup: runs discarded before measuring.
        repeats: measured passes (the validator's rounds).
        mode: ``offline`` (a batch job: throughput), ``online`` (open-loop arrivals at
            ``rate`` or from ``trace``: latency as users see it), ``stream`` (generation).
        rate: online arrival rate, requests per second (Poisson).
        trace: a recorded arrival process to replay in online mode.
        seed: for splits and generated arrivals.
        timing_items: measure speed on at most this many inputs, evenly spaced through the
            workload (a slow baseline with a large fidelity set); outputs and fidelity
            always use every input. ``None``: time them all.
        groups: items that belong together (revisions of one document, frames of one
            clip, requests of one user), so that a split never puts one in the tuning
            split and another in the held-out one: a key per item (hashable), or a
            function ``key(item)``. Stored as the tuple of keys. ``evolve(items=...)``
            without new groups drops them (the keys would no longer line up).
    """

    items: tuple[Any, ...]
    labels: tuple[Any, ...] | None = None
    name: str = "workload"
    concurrency: tuple[int, ...] = (1,)
    warmup: int = 1
    repeats: int = 3
    mode: str = "offline"
    rate: float | None = None
    trace: Trace | None = None
    seed: int = 0
    timing_items: int | None = None
    groups: Sequence[Any] | Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        items = tuple(self.items)
        object.__setattr__(self, "items", items)
        if self.groups is not None:
            object.__setattr__(self, "groups", _group_keys(self.name, items, self.groups))
        if self.labels is not None:
            labels = tuple(self.labels)
            if len(labels) != len(items):
                raise ConfigError(
                    f"workload {self.name!r}: {len(labels)} labels for {len(items)} items"
                )
            object.__setattr__(self, "labels", labels)
        levels = _whole_numbers(self.concurrency)  # "16" is an error, never (1, 6)
        if not levels or any(c < 1 for c in levels):
            raise ConfigError(
                f"workload {self.name!r}: concurrency must be whole numbers >= 1, like "
                f"(1, 4, 16), not {self.concurrency!r}"
            )
        object.__setattr__(self, "concurrency", levels)
        if self.mode not in ("offline", "online", "stream"):
            raise ConfigError(
                f"workload {self.name!r}: mode must be offline, online or stream, not {self.mode!r}"
            )
        seed = _whole_numbers(self.seed)
        if seed is None or seed[0] < 0:  # numpy's generators take no negative seed
            raise ConfigError(
                f"workload {self.name!r}: seed must be a whole number >= 0, not {self.seed!r}"
            )
        counts = _whole_numbers((self.warmup, self.repeats))
        if counts is None or counts[0] < 0 or counts[1] < 1:
            raise ConfigError(
                f"workload {self.name!r}: warmup must be a whole number >= 0 and repeats one "
                f">= 1, not {self.warmup!r} and {self.repeats!r}"
            )
        rate = self.rate
        numeric = isinstance(rate, int | float) and not isinstance(rate, bool)
        if rate is not None and not (numeric and rate > 0 and math.isfinite(rate)):
            raise ConfigError(
                f"workload {self.name!r}: rate must be a positive number, not {self.rate!r}"
            )
        if self.timing_items is not None and (
            not isinstance(self.timing_items, int) or self.timing_items < 1
        ):
            raise ConfigError(f"workload {self.name!r}: timing_items must be an integer >= 1")

    def __len__(self) -> int:
        return len(self.items)

    def require_items(self) -> None:
        if not self.items:
            raise ConfigError(f"workload {self.name!r} is empty: give it at least one input")

    # -- deriving --------------------------------------------------------------------------
    def evolve(self, **changes: Any) -> Workload:
        if "items" in changes and "groups" not in changes:
            changes["groups"] = None  # the keys no longer line up with the items
        return replace(self, **changes)

    def subset(self, indices: Sequence[int], name: str | None = None) -> Workload:
        items = tuple(self.items[i] for i in indices)
        labels = tuple(self.labels[i] for i in indices) if self.labels is not None else None
        groups = self.groups
        if isinstance(groups, tuple):
            groups = tuple(groups[i] for i in indices)
        return replace(self, items=items, labels=labels, name=name or self.name, groups=groups)

    def split(self, fraction: float = 0.5, seed: int | None = None) -> tuple[Workload, Workload]:
        """A shuffled (tune, held-out) split: tune on the first, validate on the second.
        With ``groups``, every group lands on one side."""
        tune, holdout = self.split_indices(fraction, seed)
        return (
            self.subset(tune, name=f"{self.name}[tune]"),
            self.subset(holdout, name=f"{self.name}[holdout]"),
        )

    def split_indices(
        self, fraction: float = 0.5, seed: int | None = None
    ) -> tuple[list[int], list[int]]:
        """The item indices of :meth:`split`'s (tune, held-out) workloads, each sorted.

        Without groups, items are shuffled one by one. With groups, whole groups are
        shuffled and the tuning side takes groups until it holds the share of items
        nearest ``fraction``; each side keeps at least one group."""
        if not 0 < fraction < 1:
            raise ConfigError("split fraction must be between 0 and 1")
        rng = random.Random(self.seed if seed is None else seed)
        if isinstance(self.groups, tuple):
            return _group_split(self.name, self.groups, fraction, rng)
        order = list(range(len(self.items)))
        rng.shuffle(order)
        cut = max(1, min(len(order) - 1, round(len(order) * fraction)))
        return sorted(order[:cut]), sorted(order[cut:])

    @property
    def group_count(self) -> int | None:
        """Distinct groups, or ``None`` without groups."""
        return len(set(self.groups)) if isinstance(self.groups, tuple) else None

    def timing_sample(self) -> tuple[Any, ...]:
        """The inputs speed is measured on: all of them, or ``timing_items`` evenly spaced."""
        n = len(self.items)
        if self.timing_items is None or self.timing_items >= n:
            return self.items
        step = n / self.timing_items
        return tuple(self.items[int(i * step)] for i in range(self.timing_items))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "items": len(self.items),
            "labelled": self.labels is not None,
            "concurrency": list(self.concurrency),
            "warmup": self.warmup,
            "repeats": self.repeats,
            "mode": self.mode,
            "rate": self.rate,
            "trace": None if self.trace is None else len(self.trace.arrivals_s),
            "timing_items": self.timing_items,
            "groups": self.group_count,
        }

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def from_sequence(cls, items: Iterable[Any], **options: Any) -> Workload:
        return cls(items=tuple(items), **options)

    @classmethod
    def from_jsonl(
        cls,
        path: str | Path,
        *,
        field: str | None = None,
        label_field: str | None = None,
        group_field: str | None = None,
        **options: Any,
    ) -> Workload:
        """One input per line. ``field`` picks a key from each object (else the whole
        value is the input); ``label_field`` picks the label; ``group_field`` the group
        key (a case id, a user id: see ``groups``). A malformed line is an error that
        names the line."""
        path = Path(path)
        items: list[Any] = []
        labels: list[Any] = []
        groups: list[Any] = []
        for value in _jsonl_values(path, (field, label_field, group_field)):
            items.append(value[field] if field is not None else value)
            if label_field is not None:
                labels.append(value[label_field])
            if group_field is not None:
                group = value[group_field]
                groups.append(tuple(group) if isinstance(group, list) else group)
        options.setdefault("name", path.stem)
        if group_field is not None:
            options["groups"] = groups
        return cls(items=tuple(items), labels=tuple(labels) if label_field else None, **options)

    @classmethod
    def from_folder(cls, path: str | Path, pattern: str = "*", **options: Any) -> Workload:
        """Every file under ``path`` matching ``pattern``, as paths, in sorted order."""
        path = Path(path)
        if not path.is_dir():
            raise ConfigError(f"workload folder {path} does not exist or is not a folder")
        files = tuple(sorted(p for p in path.rglob(pattern) if p.is_file()))
        options.setdefault("name", path.name)
        return cls(items=files, **options)


def _jsonl_values(path: Path, keys: Sequence[str | None]) -> list[Any]:
    """The value of each non-blank line of ``path``; a line that is not JSON, or that lacks
    one of ``keys`` (``None``: not asked for), is an error that names the line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read workload {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"workload {path} is not UTF-8: {exc.reason}") from None
    values = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        for key in keys:
            if key is not None and (not isinstance(value, dict) or key not in value):
                raise ConfigError(f"{path}:{number}: no field {key!r} in this line")
        values.append(value)
    return values


def _group_keys(name: str, items: tuple[Any, ...], groups: Any) -> tuple[Any, ...]:
    """One hashable key per item, from a sequence of keys or a key function."""
    if callable(groups):
        keys = []
        for position, item in enumerate(items):
            try:
                keys.append(groups(item))
            except Exception as exc:
                raise ConfigError(
                    f"workload {name!r}: the groups function raised on item {position}: "
                    f"{type(exc).__name__}: {exc}"
                ) from None
    elif isinstance(groups, str | bytes | Mapping | set | frozenset) or not (
        hasattr(groups, "__len__") and hasattr(groups, "__iter__")
    ):
        raise ConfigError(
            f"workload {name!r}: groups must be a sequence of keys (one per item) or a "
            f"function of an item, not {type(groups).__name__}"
        )
    else:
        keys = list(groups)
        if len(keys) != len(items):
            raise ConfigError(
                f"workload {name!r}: {len(keys)} group keys for {len(items)} items "
                "(give one key per item)"
            )
    for position, key in enumerate(keys):
        try:
            hash(key)
        except TypeError:
            raise ConfigError(
                f"workload {name!r}: group key of item {position} is a "
                f"{type(key).__name__}, which is not hashable (use a string, a number or a "
                "tuple)"
            ) from None
    return tuple(keys)


def _group_split(
    name: str, keys: tuple[Any, ...], fraction: float, rng: random.Random
) -> tuple[list[int], list[int]]:
    members: dict[Any, list[int]] = {}
    for index, key in enumerate(keys):
        members.setdefault(key, []).append(index)
    if len(members) < 2:
        raise ConfigError(
            f"workload {name!r}: all {len(keys)} items are in one group, so no split can "
            "keep groups apart (give at least two groups)"
        )
    order = list(members.values())
    rng.shuffle(order)
    target = len(keys) * fraction
    taken, best_cut, best_gap = 0, 1, math.inf
    for cut in range(1, len(order)):  # each side keeps at least one group
        taken += len(order[cut - 1])
        gap = abs(taken - target)
        if gap < best_gap:
            best_cut, best_gap = cut, gap
    tune = sorted(i for group in order[:best_cut] for i in group)
    holdout = sorted(i for group in order[best_cut:] for i in group)
    return tune, holdout


def _whole_numbers(values: Any) -> tuple[int, ...] | None:
    """``values`` as whole numbers (an int alone is one), or ``None`` when any is not one:
    a string is never a sequence of digits here."""
    if isinstance(values, str | bytes | Mapping):
        return None
    if not isinstance(values, Iterable):
        values = (values,)
    found = []
    for value in values:
        if isinstance(value, bool):
            return None
        try:
            found.append(operator.index(value))
        except TypeError:
            return None
    return tuple(found)
