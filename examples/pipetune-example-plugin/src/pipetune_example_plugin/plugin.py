"""Hook implementations of the example plugin (entry point ``example``).

The story: a stage receives a list in a slot and only ever asks ``x in that_list``. Each
test scans the list. A frozenset answers the same question by hashing, with identical
results for hashable items. The plugin

1. finds such stages without running anything (``inspect_pipeline``),
2. measures the stage both ways on the inputs the profiling run observed
   (``profile_pipeline``),
3. proposes the swap with the measured stage speedup (``propose_changes``),
4. registers the change type that applies it by replacing the slot, leaving the user's
   list untouched (``register_changes``, :mod:`.set_lookup`),
5. registers an output kind for outputs that are sets of words (``register_output_kinds``,
   :mod:`.word_sets`), and
6. hints at stages that keep such a list in a global instead of a slot (``stage_hints``).

A second, smaller story: a stage whose function reads its text only as ``text.lower()``
gives the same output for inputs that differ only in case. Where the observed inputs repeat
up to case, the plugin measures the stage behind a memo keyed by the lower-cased text and
proposes it (:mod:`.lowercase_memo`); and it registers the output kind
``example.word_count`` for outputs that are integer counts (:mod:`.word_count`).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from typing import Any

from pipetune import ChangeType, OutputKind, Pipeline, Profile, Proposal, Stage, hookimpl
from pipetune.core.kernel.context import Observations
from pipetune_example_plugin import lowercase_memo, set_lookup, word_count, word_sets
from pipetune_example_plugin.case_folding import is_case_insensitive
from pipetune_example_plugin.membership import (
    MIN_SIZE,
    function_tree,
    is_candidate,
    membership_only,
)

#: The plugin API this plugin is written against (2: change types and output kinds).
PIPETUNE_API = 2

NAME = "example"
PROPOSAL_ID = set_lookup.ID
#: Below this measured stage speedup the change is not worth a trial.
MIN_SPEEDUP = 1.2
#: How many observed inputs to time the stage on, each way.
SAMPLE = 64


def list_slots(stage: Stage) -> list[str]:
    """Slots of ``stage`` holding a list that its function only tests membership in."""
    candidates = [
        name for name, value in stage.slots.items() if stage.injects(name) and is_candidate(value)
    ]
    if not candidates:
        return []
    tree = function_tree(stage.fn)
    if tree is None:
        return []
    return sorted(membership_only(tree, candidates))


@hookimpl
def inspect_pipeline(pipeline: Pipeline) -> dict[str, Any] | None:
    found = {
        stage.name: {slot: len(stage.slots[slot]) for slot in slots}
        for stage in pipeline.stages
        if (slots := list_slots(stage))
    }
    return {"list_membership_slots": found} if found else None


@hookimpl
def profile_pipeline(pipeline: Pipeline, observed: Observations) -> dict[str, Any] | None:
    measured = {}
    for stage in pipeline.stages:
        slots = list_slots(stage)
        inputs = observed.inputs_of(stage.name)[:SAMPLE]
        if not slots or not inputs:
            continue
        swapped = stage.with_slots(**{slot: frozenset(stage.slots[slot]) for slot in slots})
        try:
            list_s = _best_of(3, stage, inputs)
            set_s = _best_of(3, swapped, inputs)
        except Exception:  # the stage raised on an observed input: nothing to claim
            continue
        measured[stage.name] = {
            "slots": slots,
            "inputs": len(inputs),
            "list_ms_per_input": 1000 * list_s / len(inputs),
            "set_ms_per_input": 1000 * set_s / len(inputs),
            "speedup": list_s / set_s if set_s > 0 else 1.0,
        }
    facts = {"set_lookup": measured, "lowercase_memo": measure_memo(pipeline, observed)}
    return {key: value for key, value in facts.items() if value} or None


@hookimpl
def propose_changes(pipeline: Pipeline, profile: Profile) -> list[Proposal] | None:
    measured = profile.facts.get(NAME, {}).get("set_lookup", {})
    proposals = []
    for stage_name, fact in measured.items():
        if fact["speedup"] < MIN_SPEEDUP:
            continue
        slots = fact["slots"]
        named = ", ".join(f"`{slot}`" for slot in slots)
        proposals.append(
            Proposal(
                id=PROPOSAL_ID,
                plugin=NAME,
                stage=stage_name,
                title=f"Look up {named} in a frozenset instead of a list",
                rationale=(
                    f"{stage_name} only tests membership in {named}; on {fact['inputs']} "
                    f"observed inputs it took {fact['list_ms_per_input']:.4f} ms per input "
                    f"with the list and {fact['set_ms_per_input']:.4f} ms with a frozenset "
                    f"({fact['speedup']:.1f}x). Outputs are identical."
                ),
                est_stage_speedup=round(fact["speedup"], 2),
                effort="minutes",
                accuracy_risk="none",
                params={"slots": list(slots)},
                evidence=dict(fact),
            )
        )
    proposals += memo_proposals(profile.facts.get(NAME, {}).get("lowercase_memo", {}))
    return proposals or None


@hookimpl
def register_changes() -> list[ChangeType]:
    return [set_lookup.CHANGE, lowercase_memo.CHANGE]


@hookimpl
def register_output_kinds() -> list[OutputKind]:
    return [word_sets.KIND, word_count.KIND]


@hookimpl
def stage_hints(stage: Stage) -> list[str] | None:
    """A list in a module global cannot be swapped; say how to make it a slot."""
    tree = function_tree(stage.fn)
    globals_ = getattr(inspect.unwrap(stage.fn), "__globals__", {})
    if tree is None:
        return None
    names = [
        name for name, value in globals_.items() if name not in stage.slots and is_candidate(value)
    ]
    hints = []
    for name in sorted(membership_only(tree, names)):
        param = name.lower()
        hints.append(
            f"{stage.name} tests membership in the global list {name} "
            f"({len(globals_[name])} items, >= {MIN_SIZE}): take it as a parameter and pass "
            f"it as a slot (slots={{'{param}': {name}}}) so the example plugin can swap in a "
            "frozenset"
        )
    return hints or None


def memo_candidate(stage: Stage) -> bool:
    """A stage the lower-case memo applies to: one function call per input (no
    ``batch_fn`` to bypass the memo), reading its input only as ``input.lower()``, and not
    memoized already."""
    applied = stage.meta.get("applied", ())
    return (
        stage.batch_fn is None
        and lowercase_memo.ID not in applied
        and is_case_insensitive(stage.fn)
    )


def measure_memo(pipeline: Pipeline, observed: Observations) -> dict[str, Any]:
    """For each memo candidate whose observed text inputs repeat up to case: the share
    that repeat, and the stage timed without and behind a memo (reset every round)."""
    measured = {}
    for stage in pipeline.stages:
        inputs = [x for x in observed.inputs_of(stage.name)[:SAMPLE] if isinstance(x, str)]
        share = lowercase_memo.repeat_share(inputs)
        if share <= 0.0 or not memo_candidate(stage):
            continue
        memo = lowercase_memo.LowercaseMemo(stage.fn, lowercase_memo.DEFAULT_CAPACITY)
        memoized = stage.evolve(fn=memo)
        try:
            plain_s = _best_of(3, stage, inputs)
            memo_s = _best_of(3, memoized, inputs, before_each=memo.pipetune_reset)
        except Exception:  # the stage raised on an observed input: nothing to claim
            continue
        measured[stage.name] = {
            "inputs": len(inputs),
            "repeat_share": share,
            "plain_ms_per_input": 1000 * plain_s / len(inputs),
            "memo_ms_per_input": 1000 * memo_s / len(inputs),
            "speedup": plain_s / memo_s if memo_s > 0 else 1.0,
        }
    return measured


def memo_proposals(measured: dict[str, Any]) -> list[Proposal]:
    """``example.lowercase_memo`` for each measured stage the memo made fast enough."""
    proposals = []
    for stage_name, fact in measured.items():
        if fact["speedup"] < MIN_SPEEDUP:
            continue
        proposals.append(
            Proposal(
                id=lowercase_memo.ID,
                plugin=NAME,
                stage=stage_name,
                title=f"Memoize {stage_name} by its lower-cased input",
                rationale=(
                    f"{stage_name} reads its input only as text.lower(), and "
                    f"{fact['repeat_share']:.0%} of {fact['inputs']} observed inputs repeat "
                    f"an earlier one up to case; it took {fact['plain_ms_per_input']:.4f} ms "
                    f"per input, {fact['memo_ms_per_input']:.4f} ms behind a memo "
                    f"({fact['speedup']:.1f}x). Outputs are identical."
                ),
                est_stage_speedup=round(fact["speedup"], 2),
                effort="minutes",
                accuracy_risk="none",
                params={"capacity": lowercase_memo.DEFAULT_CAPACITY},
                evidence=dict(fact),
            )
        )
    return proposals


def _best_of(
    rounds: int,
    stage: Stage,
    inputs: Sequence[Any],
    before_each: Callable[[], None] | None = None,
) -> float:
    best = float("inf")
    for _ in range(rounds):
        if before_each is not None:
            before_each()
        start = time.perf_counter()
        for item in inputs:
            stage(item)
        best = min(best, time.perf_counter() - start)
    return best
