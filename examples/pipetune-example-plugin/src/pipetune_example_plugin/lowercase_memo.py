"""The change type ``example.lowercase_memo``: a stage whose function reads its text input
only as ``text.lower()`` (see :mod:`.case_folding`) remembers its outputs under the
lower-cased text, so "The Cat", "the cat" and "THE CAT" are computed once.

Exact, not lossy: inputs that lower-case alike give the stage's function the same
argument, and the key also holds the identity of every slot the stage passes, so a slot
replaced by another change is never answered from the old one's results. It assumes, as
any memo does, that the stage is deterministic given its input and its slots. The memo is
warm state, so it implements pipetune's reset protocol (``pipetune_reset``,
``pipetune_cache_stats``; docs/optimize.md, "State") and the validator times it cold.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipetune import Change, ChangeParams, ChangeType, Pipeline, Proposal, Rejected, Tuned
from pipetune.core.kernel.context import TuneContext

ID = "example.lowercase_memo"
#: How many lower-cased inputs the memo keeps (least recently used first out).
DEFAULT_CAPACITY = 4096


@dataclass(frozen=True)
class LowercaseMemoParams(ChangeParams):
    """How many distinct lower-cased inputs the memo holds."""

    capacity: int = DEFAULT_CAPACITY


class LowercaseMemo:
    """A stage function that answers an input from its outputs for an earlier input with
    the same lower-cased text. Inputs that are not strings are passed straight through."""

    def __init__(self, fn: Callable[..., Any], capacity: int) -> None:
        # __wrapped__ (and the signature) lead pipetune and source analysis to ``fn``, so
        # the stage passes the same slots and other changes still recognize the function.
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.capacity = capacity
        self._outputs: OrderedDict[Any, tuple[tuple[Any, ...], Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __call__(self, item: Any, **slots: Any) -> Any:
        if not isinstance(item, str):
            return self.fn(item, **slots)
        names = tuple(sorted(slots))
        held = tuple(slots[name] for name in names)
        key = (item.lower(), names, tuple(id(value) for value in held))
        with self._lock:
            found = self._outputs.get(key)
            if found is not None and all(a is b for a, b in zip(found[0], held, strict=True)):
                self._outputs.move_to_end(key)
                self.hits += 1
                return _fresh(found[1])
            self.misses += 1
        output = self.fn(item, **slots)
        with self._lock:
            self._outputs[key] = (held, _fresh(output))
            while len(self._outputs) > self.capacity:
                self._outputs.popitem(last=False)
        return output

    def pipetune_reset(self) -> None:
        """Forget every output, so each measured pass starts cold."""
        with self._lock:
            self._outputs.clear()
            self.hits = 0
            self.misses = 0

    def pipetune_cache_stats(self) -> dict[str, int]:
        """Hits and misses since the last reset, for the validator's hit-rate check."""
        with self._lock:
            return {"hits": self.hits, "misses": self.misses}


def _fresh(value: Any) -> Any:
    """A shallow copy of a mutable container (a later stage may change the list it gets),
    the value itself otherwise."""
    return value.copy() if isinstance(value, list | dict | set | bytearray) else value


def repeat_share(items: Sequence[Any]) -> float:
    """The share of the string items whose lower-cased text an earlier item already had:
    the memo's hit rate on them, with room for all of them."""
    texts = [item.lower() for item in items if isinstance(item, str)]
    return 1.0 - len(set(texts)) / len(texts) if texts else 0.0


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    """Confirm on the tuning split that the stage's inputs repeat up to case; the memo is
    refused where it could only miss."""
    params = LowercaseMemoParams.of(proposal)
    inputs = context.stage_inputs(pipeline, proposal.stage)
    share = repeat_share(inputs)
    distinct = len({item.lower() for item in inputs if isinstance(item, str)})
    if share <= 0.0:
        raise Rejected(
            f"no input of {proposal.stage} on the tuning split repeats an earlier one up to "
            "case: the memo would only miss"
        )
    return Tuned(
        params={"capacity": params.capacity},
        notes={
            "repeat_share": share,
            "distinct_inputs": distinct,
            "summary": (
                f"{share:.0%} of {len(inputs)} tuning inputs repeat up to case "
                f"({distinct} distinct); memo of {params.capacity} entries"
            ),
        },
    )


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    """A new pipeline whose stage runs its function behind a fresh memo; the user's
    stage and function are left alone."""
    params = LowercaseMemoParams.of(change)
    stage = pipeline.stage(change.stage)
    new_stage = stage.evolve(fn=LowercaseMemo(stage.fn, params.capacity)).noted(
        applied=[*stage.meta.get("applied", ()), change.proposal]
    )
    return pipeline.replace(stage.name, new_stage)


#: Exact: equal lower-cased text and the same slots give the function the same arguments.
CHANGE = ChangeType(ID, LowercaseMemoParams, materialize, tune, lossy=False, version=1)
