"""Targets and a demo plugin for the optimize-loop CLI tests (real, small pipelines)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from pipetune import hookimpl
from pipetune.core.kernel.registry import Demo, DemoSetup

LOOKUPS = textwrap.dedent(
    """
    import time

    from pipetune import Pipeline, Requirements, Stage, Workload


    def lookup(x, *, delay):
        time.sleep(delay)  # a remote lookup: the same keys come back often
        return x % 5


    pipeline = Pipeline(
        "lookups",
        (Stage("lookup", lookup, kind="features", slots={"delay": 0.003}),),
        output_kind="labels",
    )
    workload = Workload(items=tuple([1, 2, 3, 1, 1, 2, 1, 4, 1, 1] * 4), warmup=0, repeats=1)
    # a 20 % budget: 24 held-out inputs can prove an 80 % gate, not a 99 % one
    requirements = Requirements(optimize_for="p50", max_accuracy_drop=0.2{extra})
    """
)

OTHER = textwrap.dedent(
    """
    from pipetune import Pipeline, Stage, Workload

    pipeline = Pipeline("other", (Stage("parse", int),), output_kind="any")
    workload = Workload(items=("1", "2"), warmup=0, repeats=1)
    """
)


def write_lookups(folder: Path, name: str = "lookups.py", extra: str = "") -> Path:
    """The lookups target, with ``extra`` requirement arguments (``", p50_ms=1"``)."""
    path = folder / name
    path.write_text(LOOKUPS.replace("{extra}", extra))
    return path


def write_other(folder: Path) -> Path:
    path = folder / "other.py"
    path.write_text(OTHER)
    return path


def lookups_demo(quick: bool) -> DemoSetup:
    import time

    from pipetune import Pipeline, Requirements, Stage, Workload

    def lookup(x, *, delay):
        time.sleep(delay)
        return x % 5

    pipeline = Pipeline(
        "demo-lookups",
        (Stage("lookup", lookup, kind="features", slots={"delay": 0.003}),),
        output_kind="labels",
    )
    items = tuple([1, 2, 3, 1, 1, 2, 1, 4, 1, 1] * (3 if quick else 8))
    return DemoSetup(
        pipeline=pipeline,
        workload=Workload(items=items, warmup=0, repeats=1),
        requirements=Requirements(optimize_for="p50", max_accuracy_drop=0.2),
        description="repeated remote lookups",
    )


class DemoPlugin:
    PIPETUNE_API = 1

    @hookimpl
    def register_demos(self):
        return [Demo("lookups", "Repeated lookups", lookups_demo, default=True)]
