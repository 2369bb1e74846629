"""The final re-measurement in a fresh process: a real child interpreter, small targets."""

from __future__ import annotations

import textwrap
import threading
import time
from pathlib import Path

import pytest

from pipetune.core.kernel import control
from pipetune.core.kernel.results import Recipe
from pipetune.core.loop.fresh_process import FreshJob, FreshProcessError, compare_in_fresh_process
from pipetune.core.measure.comparison import CompareSettings
from pipetune.core.measure.timed_pass import RuntimeSpec

TARGET = textwrap.dedent(
    """
    import time

    from pipetune import Pipeline, Stage


    class Item:  # an input type of the user's own: the child unpickles it after the import
        def __init__(self, value):
            self.value = value


    def work(item, *, delay):
        time.sleep(delay)
        return item.value % 3


    def pipeline():
        return Pipeline("fresh-toy", (Stage("work", work, slots={"delay": 0.001}),))


    def broken():
        raise RuntimeError("the catalog is not where it should be")


    def slow():
        time.sleep(60)
    """
)


def _job(tmp_path: Path, factory: str) -> FreshJob:
    recipe = Recipe(pipeline="fresh-toy", changes=(), stages=("work",)).save(
        tmp_path / "recipe.json"
    )
    return FreshJob(
        factory=f"{tmp_path / 'fresh_target.py'}:{factory}",
        recipe=str(recipe),
        artifacts=str(tmp_path / "artifacts"),
        metric="throughput",
        runtime=RuntimeSpec(),
        settings=CompareSettings(rounds=2, round_target_s=0.02, min_inputs=6),
        sys_path=(str(tmp_path),),
    )


@pytest.fixture
def items(tmp_path, monkeypatch):
    """Six inputs of the target module's own type (importable here, as in a real run)."""
    import importlib
    import sys

    (tmp_path / "fresh_target.py").write_text(TARGET)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("fresh_target")
    yield [module.Item(i) for i in range(6)]
    sys.modules.pop("fresh_target", None)


@pytest.mark.slow
def test_the_child_builds_the_pipeline_loads_the_recipe_and_compares(tmp_path, items):
    done = compare_in_fresh_process(
        _job(tmp_path, "pipeline"), items, folder=tmp_path / "job", log=lambda m: None
    )
    comparison = done.comparison
    assert comparison.inputs_timed == comparison.inputs_total == len(items)
    assert comparison.samples_per_side > 0
    assert comparison.speedup["throughput"] > 0
    assert not (tmp_path / "job" / "fresh-process.job").exists()  # the pickled inputs go


def test_inputs_that_cannot_be_pickled_are_a_clear_error(tmp_path):
    with pytest.raises(FreshProcessError, match="held-out inputs cannot be sent"):
        compare_in_fresh_process(_job(tmp_path, "pipeline"), [lambda: 1], folder=tmp_path / "job")


@pytest.mark.slow
def test_a_factory_that_fails_is_named_with_its_error(tmp_path, items):
    with pytest.raises(FreshProcessError, match="the catalog is not where it should be"):
        compare_in_fresh_process(_job(tmp_path, "broken"), items, folder=tmp_path / "job")


@pytest.mark.slow
def test_a_cancelled_run_stops_the_child_at_once(tmp_path, items):
    token = control.CancelToken()
    threading.Timer(1.0, token.cancel).start()
    started = time.monotonic()
    with control.scope(token), pytest.raises(KeyboardInterrupt):
        compare_in_fresh_process(_job(tmp_path, "slow"), items, folder=tmp_path / "job")
    assert time.monotonic() - started < 10  # the child sleeps 60 s: it was stopped
