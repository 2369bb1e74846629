"""sys.exit() and os._exit() from user code and plugins: never pipetune's own exit status,
never a silent end."""

from __future__ import annotations

import json
import sys

import pytest

from tests.faults.conftest import Project, strict_env

pytestmark = pytest.mark.slow  # subprocess fault tests: each case runs pipetune in a child process

EXITS = """
import os, sys
from pipetune import Pipeline, Stage, Workload

def work(x):
    if x == 3:
        if os.environ.get("HARD"):
            os._exit(7)
        sys.exit(int(os.environ.get("CODE", "0")))
    return x

pipeline = Pipeline("exits", (Stage("work", work),), output_kind="labels")
workload = Workload(items=tuple(range(8)), warmup=0, repeats=1)
"""


@pytest.mark.parametrize("code", ["0", "3"])
def test_sys_exit_in_a_stage_is_a_stage_error(project: Project, code):
    project.write("exits.py", EXITS)
    result = project.run("profile", "exits.py", env={"CODE": code})
    result.assert_clean(2, f"stage 'work' called sys.exit({code})", "input #3")


def test_check_never_passes_silently_when_a_stage_exits_0(project: Project):
    project.write("exits.py", EXITS)
    project.write("recipe.json", json.dumps({"pipeline": "exits", "changes": []}))
    result = project.run("check", "exits.py", "--baseline", "recipe.json", env={"CODE": "0"})
    result.assert_clean(2, "Error: stage 'work' called sys.exit(0)")


def test_sys_exit_while_the_target_imports_is_an_error(project: Project):
    project.write("quits.py", "import sys\nsys.exit(0)\n")
    result = project.run("profile", "quits.py")
    result.assert_clean(2, "sys.exit(0) was called", "quits.py")


def test_sys_exit_in_a_plugin_hook_is_a_plugin_failure(project: Project):
    project.write("exits.py", EXITS.replace("if x == 3:", "if False:"))
    project.write(
        "quitting_plugin.py",
        """
        import sys
        from pipetune import hookimpl

        @hookimpl
        def stage_hints(stage, pipeline):
            sys.exit(4)
        """,
    )
    result = project.run("-p", "quitting_plugin", "profile", "exits.py")
    result.assert_clean(0, "plugin 'quitting_plugin' failed in stage_hints: called sys.exit(4)")
    strict = project.run("-p", "quitting_plugin", "profile", "exits.py", env=strict_env())
    strict.assert_clean(2, "called sys.exit(4)")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process semantics")
def test_os_exit_is_named_with_isolate(project: Project):
    project.write("exits.py", EXITS)
    bare = project.run("profile", "exits.py", env={"HARD": "1"})
    assert bare.code == 7  # documented: without --isolate nothing can report it
    result = project.run("--isolate", "profile", "exits.py", env={"HARD": "1"})
    result.assert_clean(2, "exited with code 7", "stage 'work' on input #3", "os._exit()")


def test_isolate_passes_the_verdict_through(project: Project):
    project.write("exits.py", EXITS.replace("if x == 3:", "if False:"))
    result = project.run("--isolate", "profile", "exits.py", "-q")
    result.assert_clean(0, "profiled 8 samples")
