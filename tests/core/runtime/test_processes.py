"""The process executor: spawned workers build the pipeline from an importable factory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipetune.core.kernel.errors import ConfigError, StageError
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.runtime import threads
from pipetune.core.runtime.offline import run_offline
from pipetune.core.runtime.processes import resolve_factory

FACTORY = f"{__name__}:build"


def square(x: int) -> int:
    return x * x


def where(x: int) -> tuple[int, int, str | None]:
    return x, os.getpid(), os.environ.get("OMP_NUM_THREADS")


def reject_seven(x: int) -> int:
    if x == 7:
        raise ValueError("seven")
    return x


def build() -> Pipeline:
    return Pipeline("proc", (Stage("square", square), Stage("check", reject_seven)))


def build_where() -> Pipeline:
    return Pipeline("where", (Stage("where", where),))


@pytest.mark.slow
def test_workers_build_their_own_pipeline() -> None:
    items = [1, 2, 3, 4, 5, 6]
    result = run_offline(build(), items, executor="process", factory=FACTORY, workers=2, spans=True)
    assert result.outputs == [x * x for x in items]
    assert result.executor == "process" and result.workers == 2
    assert result.startup_s > 0  # spawning is reported apart from the timed run
    assert all(span.worker.startswith("pid-") for span in result.spans)
    assert result.stage_s.shape == (6, 3)


def test_children_are_other_processes_and_inherit_the_pin() -> None:
    with threads.pin_threads(1):
        result = run_offline(
            build_where(), [1, 2, 3], executor="process", factory=f"{__name__}:build_where"
        )
    assert {pid for _, pid, _ in result.outputs} != {os.getpid()}
    assert {omp for _, _, omp in result.outputs} == {"1"}


@pytest.mark.slow
def test_errors_in_children_name_stage_and_input() -> None:
    items = [5, 6, 7, 8]  # squares: 7 never appears...
    result = run_offline(
        build(), items, executor="process", factory=FACTORY, on_error="skip", workers=2
    )
    assert all(result.ok)
    with pytest.raises(StageError, match=r"'check' raised ValueError on input #0"):
        run_offline(
            Pipeline("proc", (Stage("square", square), Stage("check", reject_seven))),
            [7],
            executor="process",
            factory=f"{__name__}:build_identity",
        )


def build_identity() -> Pipeline:
    return Pipeline("proc", (Stage("square", lambda x: x), Stage("check", reject_seven)))


def test_factory_problems_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no module named"):
        run_offline(build(), [1], executor="process", factory="no_such_module_xyz:build")
    with pytest.raises(ConfigError, match="must look like"):
        run_offline(build(), [1], executor="process", factory="just_a_module")
    with pytest.raises(ConfigError, match=r"failed in the worker process.*has no"):
        run_offline(build(), [1], executor="process", factory=f"{__name__}:missing")
    with pytest.raises(ConfigError, match="built stages"):
        run_offline(build(), [1], executor="process", factory=f"{__name__}:build_where")


def test_file_factories_work(tmp_path: Path) -> None:
    source = tmp_path / "factory_file.py"
    source.write_text(
        "from pipetune.core.kernel.model import Pipeline, Stage\n"
        "def make():\n"
        "    return Pipeline('f', (Stage('neg', lambda x: -x),))\n"
    )
    assert resolve_factory(f"{source}:make").stage_names == ("neg",)
    result = run_offline(
        Pipeline("f", (Stage("neg", lambda x: -x),)),
        [1, 2],
        executor="process",
        factory=f"{source}:make",
    )
    assert result.outputs == [-1, -2]


def test_resolve_factory_accepts_a_pipeline_attribute() -> None:
    assert resolve_factory(f"{__name__}:PIPELINE") is PIPELINE
    with pytest.raises(ConfigError, match="not a pipetune Pipeline"):
        resolve_factory(f"{__name__}:square_of_two")


PIPELINE = build()


def square_of_two() -> int:
    return 4
