"""A hung stage ends every command that runs user code (one --timeout, per input), a hung
plugin hook is bounded, and a slow pass is never blamed on the input it had reached."""

from __future__ import annotations

import json

import pytest

from tests.faults.conftest import HANGS, Project

pytestmark = pytest.mark.slow  # subprocess fault tests: each case runs pipetune in a child process

DEMO_PLUGIN = """
from pipetune import hookimpl
from pipetune.core.kernel.registry import Demo, DemoSetup

def build(quick):
    import hangs
    return DemoSetup(pipeline=hangs.pipeline, workload=hangs.workload,
                     requirements=hangs.requirements, description="hangs on input #5")

@hookimpl
def register_demos():
    return [Demo("hangs", "A stage that hangs", build)]
"""


def _prepare(project: Project) -> None:
    project.write("hangs.py", HANGS.format(bad=5))
    project.write("recipe.json", json.dumps({"pipeline": "hangs", "changes": []}))
    project.write("hang_demo.py", DEMO_PLUGIN)


#: Every command in docs/cli.md that runs user code, with the arguments it needs.
COMMANDS = {
    "profile": ["profile", "hangs.py"],
    "propose": ["propose", "hangs.py"],
    "optimize": ["optimize", "hangs.py", "--quick", "--no-store"],
    "apply": ["apply", "hangs.py", "--recipe", "recipe.json"],
    "check": ["check", "hangs.py", "--baseline", "recipe.json"],
    "capacity": ["capacity", "hangs.py", "--now-rps", "5", "--no-measure"],
    "demo": ["-p", "hang_demo", "demo", "hangs", "--quick", "--no-store"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_hung_stage_ends_every_command(project: Project, command):
    _prepare(project)
    result = project.run(*COMMANDS[command], "--timeout", "1", timeout=90)
    if command == "apply":  # the re-applied pipeline hangs: the recipe does not hold
        result.assert_clean(1, "does not hold: hangs: stage 'hang'", "input #5", "within 1 s")
    else:
        result.assert_clean(2, "stage 'hang'", "input #5", "no result after 1 s")
    assert result.seconds < 60


def test_run_writes_a_hung_input_to_the_errors_file_and_finishes_the_rest(project: Project):
    """`pipetune run` keeps going past a hung input: it is an error row naming the stage and
    the deadline, every other row is in the output."""
    _prepare(project)
    project.write("rows.jsonl", "".join(json.dumps({"id": i, "x": i}) + "\n" for i in range(30)))
    result = project.run(
        "run", "hangs.py", "--input", "rows.jsonl", "--output", "out.jsonl", "--field", "x",
        "--timeout", "1", "-q", timeout=90,
    )  # fmt: skip
    result.assert_clean(0)
    assert result.seconds < 60
    outputs = [json.loads(line) for line in (project.root / "out.jsonl").read_text().splitlines()]
    assert sorted(row["id"] for row in outputs) == [i for i in range(30) if i != 5]
    errors = (project.root / "out.errors.jsonl").read_text().splitlines()
    assert len(errors) == 1
    error = json.loads(errors[0])
    assert error["id"] == 5 and error["stage"] == "hang", error
    assert "1 s" in error["error"], error


def test_every_command_that_runs_user_code_documents_timeout():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    for command in [*COMMANDS, "run", "serve"]:
        section = text.split(f"## `pipetune {command}`", 1)[1].split("\n## ", 1)[0]
        assert "`--timeout SECONDS`" in section and "default: 600" in section, command


def test_a_slow_pass_is_not_blamed_on_one_input(project: Project):
    # 20 inputs of 30 ms: every pass takes longer than the 0.5 s per-input limit
    project.write(
        "steady.py",
        """
        import time
        from pipetune import Pipeline, Requirements, Stage, Workload

        def encode(x):
            time.sleep(0.03)
            return x % 2

        pipeline = Pipeline("steady", (Stage("encode", encode),), output_kind="labels")
        workload = Workload(items=tuple(range(20)), warmup=0, repeats=1)
        requirements = Requirements(optimize_for="p50")
        """,
    )
    project.write("recipe.json", json.dumps({"pipeline": "steady", "changes": []}))
    result = project.run(
        "apply", "steady.py", "--recipe", "recipe.json", "--timeout", "0.5", "--rounds", "2"
    )
    assert "TimeoutError" not in result.text and "no result" not in result.text
    assert result.code in (0, 1), result.text  # holds or not: a verdict, not a timeout
    assert "hold" in result.out


def test_a_hung_plugin_hook_is_named_and_the_run_goes_on(project: Project):
    project.write("hangs.py", HANGS.format(bad=-1))
    project.write(
        "sleepy_plugin.py",
        """
        import threading
        from pipetune import hookimpl

        @hookimpl
        def stage_hints(stage, pipeline):
            threading.Event().wait()
        """,
    )
    result = project.run(
        "-p", "sleepy_plugin", "profile", "hangs.py", "--json", "p.json",
        env={"PIPETUNE_HOOK_TIMEOUT": "1"},
    )  # fmt: skip
    result.assert_clean(0, "plugin 'sleepy_plugin' failed in stage_hints", "did not finish")
    warnings = json.loads((project.root / "p.json").read_text())["warnings"]
    assert any("sleepy_plugin" in warning for warning in warnings)
