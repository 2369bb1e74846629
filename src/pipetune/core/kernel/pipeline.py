"""Stages and pipelines: named steps with typed component slots, in an immutable order.

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
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from pipetune.core.kernel.errors import PipelineError

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


def batch_outputs(stage: str, outputs: Iterable[Any], items: Sequence[Any]) -> list[Any]:
    """A batch function's ``outputs`` for ``items`` as a list: one per input, else a
    :class:`PipelineError` naming ``stage`` and both counts."""
    out = list(outputs)
    if len(out) != len(items):
        raise PipelineError(
            f"stage {stage!r}: batch_fn returned {len(out)} outputs for {len(items)} inputs"
        )
    return out


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
        return batch_outputs(self.name, self.batch_fn(list(items), **kwargs), items)

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

    def run_in_calls(self, items: Sequence[Any], batch_size: int = 1) -> list[Any]:
        """``items`` in calls of ``batch_size``, as a service calls the pipeline:
        :meth:`run_batch` on consecutive chunks when ``batch_size`` > 1, else :meth:`run`
        on one input at a time."""
        items = list(items)
        if batch_size <= 1:
            return [self.run(item) for item in items]
        outputs: list[Any] = []
        for start in range(0, len(items), batch_size):
            outputs.extend(self.run_batch(items[start : start + batch_size]))
        return outputs

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
