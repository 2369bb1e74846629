"""Small real pipelines and a configurable toy plugin for the loop's tests.

The stages do real (tiny) work or wait on a timer: waiting is what makes a speed
difference robust on a loaded machine, which the tests need (they assert behaviour, never
a timing threshold).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipetune import hookimpl
from pipetune.core.kernel.errors import Deferred, Rejected
from pipetune.core.kernel.manager import get_plugin_manager
from pipetune.core.kernel.model import Pipeline, Stage, Workload
from pipetune.core.kernel.results import Change, Fidelity, Proposal, Tuned
from pipetune.core.measure.comparison import CompareSettings
from pipetune.core.measure.validator import ValidatorSettings

FAST_COMPARE = CompareSettings(rounds=4, items_per_round=8, bootstrap=400, min_timeout_s=5.0)
FAST_VALIDATOR = ValidatorSettings(compare=FAST_COMPARE)


def parse(item: Any) -> int:
    return int(item)


def work(item: int, *, delay: float) -> int:
    time.sleep(delay)
    return item * 2


def label(item: int, *, wrong_every: int = 0) -> int:
    if wrong_every and item % wrong_every == 0:
        return -1
    return item % 7


def toy_pipeline(delay: float = 0.004, name: str = "toy") -> Pipeline:
    return Pipeline(
        name,
        (
            Stage("parse", parse, kind="preprocess"),
            Stage("work", work, kind="inference", slots={"delay": delay}),
            Stage("label", label, kind="postprocess", slots={"wrong_every": 0}),
        ),
        output_kind="labels",
    )


def toy_workload(n: int = 40, **options: Any) -> Workload:
    options.setdefault("warmup", 0)
    options.setdefault("repeats", 1)
    items = tuple(str(i) for i in range(n))
    return Workload(items=items, labels=tuple(i % 7 for i in range(n)), **options)


class ToyPlugin:
    """A plugin whose proposals and behaviours the test chooses.

    ``changes`` maps a change name to a function ``(pipeline, params) -> pipeline``; a
    proposal is made for each entry of ``proposals`` (dicts of Proposal fields).
    """

    PIPETUNE_API = 1

    def __init__(
        self,
        proposals: Sequence[dict[str, Any]] = (),
        changes: dict[str, Callable[[Pipeline, dict[str, Any]], Pipeline]] | None = None,
        *,
        name: str = "toy",
        tune: Callable[..., Tuned | None] | None = None,
        assess: Callable[..., Fidelity | None] | None = None,
    ):
        self.name = name
        self.proposals = list(proposals)
        self.changes = changes or {}
        self.tune = tune
        self.assess = assess
        self.calls: list[tuple[str, Any]] = []

    @hookimpl
    def propose_changes(self, pipeline: Pipeline) -> list[Proposal]:
        self.calls.append(("propose", None, None, pipeline))
        out = []
        for fields in self.proposals:
            fields = dict(fields)
            change = fields.pop("change")
            if fields.get("stage", "") not in (*pipeline.stage_names, "*"):
                continue
            if any(s.meta.get("toy") == change for s in pipeline.stages):
                continue  # already applied
            fields.setdefault("title", change)
            out.append(Proposal(id=f"{self.name}.{change}", plugin=self.name, **fields))
        return out

    @hookimpl
    def tune_proposal(self, proposal: Proposal, workload: Workload, context: Any) -> Tuned | None:
        self.calls.append(("tune", proposal.id, tuple(workload.items), context))
        if self.tune is not None:
            return self.tune(proposal, workload, context)
        return None

    @hookimpl
    def materialize_change(
        self, change: Change, pipeline: Pipeline, artifacts_dir: Path
    ) -> Pipeline | None:
        self.calls.append(("materialize", change.proposal, None, None))
        name = change.proposal.split(".", 1)[1]
        build = self.changes.get(name)
        if build is None:
            return None
        return build(pipeline, dict(change.params))

    @hookimpl
    def assess_change(self, change: Change) -> Fidelity | None:
        if self.assess is not None and change.plugin == self.name:
            return self.assess(change)
        return None


def faster(pipeline: Pipeline, params: dict[str, Any]) -> Pipeline:
    stage = pipeline.stage("work")
    quicker = stage.with_slots(delay=stage.slots["delay"] / params.get("factor", 4))
    return pipeline.replace("work", quicker.noted(toy="faster"))


def slower(pipeline: Pipeline, params: dict[str, Any]) -> Pipeline:
    stage = pipeline.stage("work")
    return pipeline.replace("work", stage.with_slots(delay=stage.slots["delay"] * 3))


def lossy(pipeline: Pipeline, params: dict[str, Any]) -> Pipeline:
    """Faster, but every ``every``-th label is wrong."""
    fast = faster(pipeline, {"factor": 4})
    stage = fast.stage("label")
    return fast.replace("label", stage.with_slots(wrong_every=params.get("every", 10)))


def raising(pipeline: Pipeline, params: dict[str, Any]) -> Pipeline:
    raise RuntimeError("the conversion failed")


def breaks_at_runtime(pipeline: Pipeline, params: dict[str, Any]) -> Pipeline:
    def broken(item: int) -> int:
        if item == 3:
            raise ValueError("bad input")
        return item

    return pipeline.replace("parse", Stage("parse", lambda x: broken(int(x))))


def hangs(pipeline: Pipeline, params: dict[str, Any]) -> Pipeline:
    def stuck(item: int, *, delay: float) -> int:
        time.sleep(3.0 if item == 2 else 0.0)
        return item * 2

    return pipeline.replace("work", pipeline.stage("work").evolve(fn=stuck))


def rejected_tune(proposal: Proposal, workload: Workload, context: Any) -> Tuned:
    raise Rejected("the fast path gives different ids on input #12")


def deferred_tune(proposal: Proposal, workload: Workload, context: Any) -> Tuned:
    raise Deferred(
        "Core ML predictions need macOS",
        artifact="ab12/model.mlpackage",
        command="pipetune apply app:pipeline --recipe recipe.json  # on a Mac",
    )


def manager(*plugins: Any):
    """A plugin manager with only the generic plugin and the given ones."""
    return get_plugin_manager(
        entry_points=False,
        disable=("recsys", "nlp", "vision", "llm", "hardware"),
        plugins=[(p.name, p) for p in plugins],
    )
