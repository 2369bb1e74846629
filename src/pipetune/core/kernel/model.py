"""The pipeline model: stages with typed component slots, pipelines, workloads, requirements.

A :class:`Stage` is a named step: a function plus the *components* it is built from, held in
named slots (``tokenizer=``, ``model=``, ``index=``, ``items=``, ``capture=``,
``max_length=``...). The function receives its slots as keyword arguments::

    def embed(text, *, tokenizer, model):
        return model(**tokenizer(text, return_tensors="pt"))

    Stage("embed", embed, kind="inference", slots={"tokenizer": tok, "model": model})

Because the slots are passed in rather than captured in a closure, a plugin can transform a
stage by replacing a slot (a Rust tokenizer for a Python one, a compiled model for an eager
one) and plain user code runs the replacement. Everything here is immutable: changing a
stage or a pipeline returns a new object, and the user's objects are never touched.
"""

from __future__ import annotations

import inspect
import itertools
import json
import math
import operator
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pipetune.core.kernel.errors import ConfigError, PipelineError

#: Stage kinds the built-in plugins know. Any other string is allowed.
STAGE_KINDS = (
    "preprocess",
    "tokenize",
    "decode",
    "retrieval",
    "features",
    "inference",
    "ranking",
    "generate",
    "postprocess",
    "other",
)

#: The built-in output kinds; each selects the fidelity metric of the one plugin that
#: registers it: labels -> agreement, ranked_ids -> recall@k, tokens / token_ids -> exact
#: greedy match, tensor -> 1 - normalized error, frame_labels -> per-frame agreement plus
#: event detection, image -> PSNR, masks -> IoU, any -> equality. A plugin may register a
#: kind of its own (``register_output_kinds``).
OUTPUT_KINDS = (
    "labels",
    "ranked_ids",
    "tokens",
    "token_ids",
    "tensor",
    "frame_labels",
    "image",
    "masks",
    "any",
)


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


def accepted_slots(fn: Callable[..., Any], slots: Mapping[str, Any]) -> tuple[str, ...]:
    """Which slots ``fn`` takes as keyword arguments (all of them if it has ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: pass nothing
        return ()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return tuple(slots)
    names = {
        p.name
        for p in params
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }
    return tuple(name for name in slots if name in names)


@dataclass(frozen=True, eq=False)
class Stage:
    """A named pipeline step.

    Args:
        name: unique within the pipeline.
        fn: ``fn(item, **slots) -> output``; it receives the slots whose names it accepts.
        kind: what the step does (see :data:`STAGE_KINDS`); plugins use it as a hint.
        slots: the components the stage is built from (a tokenizer, a torch module, a faiss
            index, an item matrix, a capture, a max length...). Plugins recognize library
            types here and transform the stage by replacing them.
        batch_fn: optional ``batch_fn(items, **slots) -> list`` computing the same outputs
            for a list of inputs in one call; batching proposals need it.
        output_kind: the kind of this stage's output, when it matters for fidelity.
        meta: JSON-serializable notes: the building block that made the stage, the changes
            applied to it. Not used to compute anything.
    """

    name: str
    fn: Callable[..., Any]
    kind: str = "other"
    slots: Mapping[str, Any] = field(default_factory=dict)
    batch_fn: Callable[..., Sequence[Any]] | None = None
    output_kind: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise PipelineError(f"a stage needs a non-empty string name, got {self.name!r}")
        if not callable(self.fn):
            raise PipelineError(f"stage {self.name!r}: fn must be callable, got {self.fn!r}")
        if self.batch_fn is not None and not callable(self.batch_fn):
            raise PipelineError(f"stage {self.name!r}: batch_fn must be callable")
        object.__setattr__(self, "slots", _frozen_mapping(self.slots))
        object.__setattr__(self, "meta", _frozen_mapping(self.meta))
        object.__setattr__(self, "_fn_slots", accepted_slots(self.fn, self.slots))
        batch_slots = accepted_slots(self.batch_fn, self.slots) if self.batch_fn else ()
        object.__setattr__(self, "_batch_slots", batch_slots)

    # -- running -----------------------------------------------------------------------
    def __call__(self, item: Any) -> Any:
        return self.fn(item, **{name: self.slots[name] for name in self._fn_slots})  # type: ignore[attr-defined]

    def call_batch(self, items: Sequence[Any]) -> list[Any]:
        """Outputs for ``items``: one ``batch_fn`` call when the stage has one."""
        if self.batch_fn is None:
            return [self(item) for item in items]
        kwargs = {name: self.slots[name] for name in self._batch_slots}  # type: ignore[attr-defined]
        outputs = list(self.batch_fn(list(items), **kwargs))
        if len(outputs) != len(items):
            raise PipelineError(
                f"stage {self.name!r}: batch_fn returned {len(outputs)} outputs "
                f"for {len(items)} inputs"
            )
        return outputs

    @property
    def batchable(self) -> bool:
        return self.batch_fn is not None

    def injects(self, slot: str) -> bool:
        """True when ``fn`` receives ``slot``, so replacing the slot changes what runs.

        A slot the function does not take (the object is captured in a closure instead) is
        still useful for recognition, but a plugin must not claim to transform it.
        """
        return slot in self._fn_slots  # type: ignore[attr-defined]

    # -- deriving new stages -------------------------------------------------------------
    def with_slots(self, **changes: Any) -> Stage:
        """A copy with some slots replaced (or added). The original is untouched."""
        return replace(self, slots={**self.slots, **changes})

    def evolve(self, **changes: Any) -> Stage:
        """A copy with dataclass fields replaced (``fn=``, ``batch_fn=``, ``meta=``...)."""
        return replace(self, **changes)

    def noted(self, **notes: Any) -> Stage:
        """A copy with entries added to ``meta``."""
        return replace(self, meta={**self.meta, **notes})

    def describe(self) -> dict[str, Any]:
        """A JSON-serializable description (slot *types*, not their values)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "fn": _qualname(self.fn),
            "batchable": self.batchable,
            "slots": {name: _type_name(value) for name, value in self.slots.items()},
            "output_kind": self.output_kind,
            "meta": _jsonable(dict(self.meta)),
        }


@dataclass(frozen=True, eq=False)
class Pipeline:
    """An ordered, immutable tuple of stages with a name.

    ``output_kind`` says what the final output is (see :data:`OUTPUT_KINDS`); it chooses
    the fidelity metric when a change is validated.
    """

    name: str
    stages: tuple[Stage, ...]
    output_kind: str = "any"
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        stages = tuple(self.stages) if isinstance(self.stages, Iterable) else None
        if not stages:
            raise PipelineError(f"pipeline {self.name!r} has no stages")
        for position, stage in enumerate(stages):
            if not isinstance(stage, Stage):
                raise PipelineError(
                    f"pipeline {self.name!r}: item {position} is {type(stage).__name__}, "
                    "not a pipetune Stage"
                )
        seen: set[str] = set()
        for stage in stages:
            if stage.name in seen:
                raise PipelineError(f"pipeline {self.name!r}: two stages named {stage.name!r}")
            seen.add(stage.name)
        object.__setattr__(self, "stages", stages)
        object.__setattr__(self, "meta", _frozen_mapping(self.meta))

    # -- running -----------------------------------------------------------------------
    def run(self, item: Any) -> Any:
        for stage in self.stages:
            item = stage(item)
        return item

    def run_batch(self, items: Sequence[Any]) -> list[Any]:
        values = list(items)
        for stage in self.stages:
            values = stage.call_batch(values)
        return values

    # -- navigating ----------------------------------------------------------------------
    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(stage.name for stage in self.stages)

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise PipelineError(
            f"pipeline {self.name!r} has no stage {name!r} (stages: {', '.join(self.stage_names)})"
        )

    def index(self, name: str) -> int:
        return self.stage_names.index(self.stage(name).name)

    def __iter__(self) -> Iterator[Stage]:
        return iter(self.stages)

    def __len__(self) -> int:
        return len(self.stages)

    # -- deriving new pipelines ----------------------------------------------------------
    def replace(self, name: str, new: Stage | Sequence[Stage]) -> Pipeline:
        """A new pipeline with stage ``name`` replaced by ``new`` (one stage or several).

        Replacing one stage by several is how a plugin inserts a stage (an ANN retrieval
        stage in front of a ranker). The original pipeline is untouched.
        """
        position = self.index(name)
        replacement = (new,) if isinstance(new, Stage) else tuple(new)
        stages = self.stages[:position] + replacement + self.stages[position + 1 :]
        return replace(self, stages=stages)

    def prefix(self, name: str) -> Pipeline:
        """The stages before ``name`` (to compute what ``name`` receives)."""
        position = self.index(name)
        if position == 0:
            raise PipelineError(f"stage {name!r} is the first stage: it has no prefix")
        return replace(self, name=f"{self.name}[:{name}]", stages=self.stages[:position])

    def evolve(self, **changes: Any) -> Pipeline:
        return replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "output_kind": self.output_kind,
            "stages": [stage.describe() for stage in self.stages],
        }


# -- workloads -------------------------------------------------------------------------


@dataclass(frozen=True)
class Trace:
    """A recorded arrival process: offsets in seconds from the first request.

    ``sizes`` optionally records each request's input size, ``pipeline`` the pipeline it
    was recorded on (a trace from another pipeline is refused).
    """

    arrivals_s: tuple[float, ...]
    sizes: tuple[int, ...] | None = None
    pipeline: str | None = None

    def __post_init__(self) -> None:
        arrivals = tuple(float(a) for a in self.arrivals_s)
        if not arrivals:
            raise ConfigError("a trace needs at least one arrival")
        if any(not math.isfinite(a) or a < 0 for a in arrivals):
            raise ConfigError("trace arrivals must be finite, non-negative offsets in seconds")
        if any(b < a for a, b in itertools.pairwise(arrivals)):
            raise ConfigError("trace arrivals must be in increasing order")
        object.__setattr__(self, "arrivals_s", arrivals)
        if self.sizes is not None:
            if len(self.sizes) != len(arrivals):
                raise ConfigError("a trace's sizes must match its arrivals one for one")
            object.__setattr__(self, "sizes", tuple(int(s) for s in self.sizes))

    @property
    def rate(self) -> float:
        span = self.arrivals_s[-1] - self.arrivals_s[0]
        return (len(self.arrivals_s) - 1) / span if span > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {
            "arrivals_s": list(self.arrivals_s),
            "sizes": self.sizes and list(self.sizes),
            "pipeline": self.pipeline,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trace:
        try:
            return cls(
                arrivals_s=tuple(data["arrivals_s"]),
                sizes=tuple(data["sizes"]) if data.get("sizes") is not None else None,
                pipeline=data.get("pipeline"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed trace: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> Trace:
        try:
            data = json.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read trace {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"trace {path} is not valid JSON: {exc}") from None
        if not isinstance(data, Mapping):
            raise ConfigError(f"trace {path}: expected a JSON object with 'arrivals_s'")
        return cls.from_dict(data)


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
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read workload {path}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"workload {path} is not UTF-8: {exc.reason}") from None
        items: list[Any] = []
        labels: list[Any] = []
        groups: list[Any] = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            for key in (field, label_field, group_field):
                if key is not None and (not isinstance(value, dict) or key not in value):
                    raise ConfigError(f"{path}:{number}: no field {key!r} in this line")
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


# -- requirements ------------------------------------------------------------------------


@dataclass(frozen=True)
class Growth:
    """Traffic now and ahead, in requests per second, for capacity planning."""

    now_rps: float
    peak_rps: float | None = None
    in_12_months_rps: float | None = None
    in_24_months_rps: float | None = None

    def __post_init__(self) -> None:
        values = [self.now_rps, self.peak_rps, self.in_12_months_rps, self.in_24_months_rps]
        if any(v is not None and (not math.isfinite(v) or v < 0) for v in values):
            raise ConfigError("growth figures must be finite and non-negative")
        if self.peak_rps is not None and self.peak_rps < self.now_rps:
            raise ConfigError(
                f"growth: peak ({self.peak_rps:g} rps) is below the current rate "
                f"({self.now_rps:g} rps)"
            )


#: The metrics the loop can optimize, in the order a requirement names them.
METRICS = ("p50", "p95", "p99", "max", "throughput")


@dataclass(frozen=True)
class Requirements:
    """What the pipeline must achieve; the loop optimizes the metric they name.

    Latencies are in milliseconds, throughput in requests per second. ``max_accuracy_drop``
    is the largest tolerated drop in fidelity against the original pipeline (0.01 = 1 %),
    cumulative across accepted changes. ``min_gain`` is the smallest speedup worth keeping
    (0.05: the lower bound of the speedup's confidence interval must beat 1.05).
    ``min_speedup`` is a relative throughput bound: the optimized pipeline must serve at
    least that many times the original's throughput, measured on the same machine in the
    same run (side by side when the loop re-measures the final pipeline). Unlike an
    absolute ``min_throughput_rps`` it does not depend on how fast the machine is today.
    """

    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    min_throughput_rps: float | None = None
    max_accuracy_drop: float = 0.01
    min_gain: float = 0.05
    cost_per_hour: float | None = None
    monthly_volume: float | None = None
    growth: Growth | None = None
    optimize_for: str | None = None
    min_speedup: float | None = None

    def __post_init__(self) -> None:
        for name in (
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "max_ms",
            "min_throughput_rps",
            "min_speedup",
            "cost_per_hour",
            "monthly_volume",
        ):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int | float) or value <= 0 or not math.isfinite(value)
            ):
                raise ConfigError(f"requirement {name} must be a positive number, got {value!r}")
        if not 0 <= self.max_accuracy_drop < 1:
            raise ConfigError("max_accuracy_drop must be in [0, 1)")
        if not 0 <= self.min_gain < 10:
            raise ConfigError("min_gain must be in [0, 10)")
        if self.optimize_for is not None and self.optimize_for not in METRICS:
            raise ConfigError(
                f"optimize_for must be one of {', '.join(METRICS)}, not {self.optimize_for!r}"
            )
        if isinstance(self.growth, Mapping):
            object.__setattr__(self, "growth", Growth(**self.growth))

    @property
    def metric(self) -> str:
        """The metric the loop optimizes: explicit, else the first latency bound, else
        throughput."""
        if self.optimize_for:
            return self.optimize_for
        for metric in ("p99", "p95", "p50", "max"):
            if getattr(self, f"{metric}_ms") is not None:
                return metric
        return "throughput"

    def evolve(self, **changes: Any) -> Requirements:
        return replace(self, **changes)

    def check(
        self,
        throughput_rps: float,
        latency_ms: Mapping[str, float],
        speedup: float | None = None,
    ) -> list[str]:
        """The requirements that these figures miss, as sentences (empty when all hold).

        ``speedup``: throughput against the original's, for ``min_speedup`` (a bound that
        cannot be checked without it counts as missed)."""
        misses = []
        for metric in ("p50", "p95", "p99", "max"):
            bound = getattr(self, f"{metric}_ms")
            if bound is not None and latency_ms.get(metric, math.inf) > bound:
                misses.append(f"{metric.upper()} {latency_ms[metric]:.1f} ms > {bound:g} ms")
        if self.min_throughput_rps is not None and throughput_rps < self.min_throughput_rps:
            misses.append(f"throughput {throughput_rps:.1f}/s < {self.min_throughput_rps:g}/s")
        if self.min_speedup is not None and (speedup is None or speedup < self.min_speedup):
            shown = "not measured" if speedup is None else f"{speedup:.2f}x"
            misses.append(f"speedup {shown} < {self.min_speedup:g}x the original's throughput")
        return misses

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "growth"}
        data["growth"] = None if self.growth is None else dict(self.growth.__dict__)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Requirements:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown requirement key(s): {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        values = dict(data)
        if isinstance(values.get("growth"), Mapping):
            growth = values["growth"]
            unknown_growth = sorted(set(growth) - set(Growth.__dataclass_fields__))
            if unknown_growth:
                raise ConfigError(f"unknown growth key(s): {', '.join(unknown_growth)}")
            values["growth"] = Growth(**growth)
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"malformed requirements: {exc}") from None


# -- helpers -----------------------------------------------------------------------------


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


def _qualname(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or ""
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    return f"{module}.{name}" if module else name


def _type_name(value: Any) -> str:
    if isinstance(value, bool | int | float | str) or value is None:
        return repr(value)
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        if isinstance(value, Mapping):
            return {str(k): _jsonable(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [_jsonable(v) for v in value]
        return repr(value)
