"""Plugin failures are visible in the command the user runs (top of the output, every JSON
report's warnings), a -p typo is a usage error, and strict mode covers every hook."""

from __future__ import annotations

import json

import pytest

from tests.faults.conftest import Project, strict_env

pytestmark = pytest.mark.slow  # subprocess fault tests: each case runs pipetune in a child process

TARGET = """
from pipetune import Pipeline, Requirements, Stage, Workload
import time

def lookup(x):
    time.sleep(0.002)
    return x % 5

pipeline = Pipeline("plain", (Stage("lookup", lookup, kind="features"),), output_kind="labels")
workload = Workload(items=tuple([1, 2, 3, 1, 1] * 6), warmup=0, repeats=1)
# A 20 % gate, provable on the 18 held-out inputs: these tests are about plugin failures,
# not about a gate too strict for the workload (that is exit 3, tested elsewhere).
requirements = Requirements(optimize_for="p50", max_accuracy_drop=0.2)
"""


def _broken_entry_point(project: Project) -> None:
    """An installed plugin (an entry point) whose module fails to import."""
    dist = project.root / "brokenplug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[pipetune]\nbroken = broken_plugin_mod\n")
    project.write("broken_plugin_mod.py", "raise ImportError('needs libfoo 2.0')\n")


def test_an_entry_point_that_fails_to_import_is_shown_at_the_top(project: Project):
    _broken_entry_point(project)
    project.write("plain.py", TARGET)
    result = project.run("profile", "plain.py", "--json", "p.json")
    result.assert_clean(0)
    lines = result.err.splitlines()
    end = next((i for i, line in enumerate(lines) if not line.startswith("warning:")), len(lines))
    top = lines[:end]
    assert any("plugin 'broken'" in line and "libfoo" in line for line in top), result.err
    warnings = json.loads((project.root / "p.json").read_text())["warnings"]
    assert any("plugin 'broken'" in w and "libfoo" in w for w in warnings)
    optimized = project.run("optimize", "plain.py", "--quick", "--json", "r.json")
    optimized.assert_clean(0, "plugin 'broken'")
    report = json.loads((project.root / "r.json").read_text())
    assert any("plugin 'broken'" in w for w in report["warnings"])
    scanned = project.run("scan", "plain.py", "--format", "json", "-o", "scan.json")
    scanned.assert_clean(0, "plugin 'broken'")
    scan_warnings = json.loads((project.root / "scan.json").read_text())["warnings"]
    assert any("plugin 'broken'" in w for w in scan_warnings)
    strict = project.run("profile", "plain.py", env=strict_env())
    strict.assert_clean(2, "plugin 'broken'", "failed to load")


def test_a_p_typo_is_exit_2_with_the_nearest_name(project: Project):
    project.write("plain.py", TARGET)
    project.write("my_hooks.py", "from pipetune import hookimpl\n")
    result = project.run("-p", "my_hoks", "profile", "plain.py")
    result.assert_clean(2, "-p my_hoks", "did you mean 'my_hooks'?")
    result = project.run("-p", "no:recsis", "profile", "plain.py")
    result.assert_clean(2, "no plugin named 'recsis'", "did you mean 'recsys'?")


def test_hook_exceptions_show_in_the_terminal_and_the_json(project: Project):
    project.write("plain.py", TARGET)
    project.write(
        "raising_plugin.py",
        """
        from pipetune import hookimpl

        @hookimpl
        def inspect_pipeline(pipeline):
            raise RuntimeError("cannot read the model card")
        """,
    )
    result = project.run("-p", "raising_plugin", "profile", "plain.py", "--json", "p.json")
    result.assert_clean(0, "plugin 'raising_plugin' failed in inspect_pipeline")
    warnings = json.loads((project.root / "p.json").read_text())["warnings"]
    assert any("cannot read the model card" in w for w in warnings)
    proposed = project.run("-p", "raising_plugin", "propose", "plain.py", "--json", "q.json")
    proposed.assert_clean(0, "raising_plugin")
    assert any(
        "raising_plugin" in w for w in json.loads((project.root / "q.json").read_text())["warnings"]
    )


def test_a_hook_returning_a_string_is_one_hint_not_one_per_character(project: Project):
    project.write("plain.py", TARGET)
    project.write(
        "stringy_plugin.py",
        """
        from pipetune import hookimpl

        @hookimpl
        def stage_hints(stage, pipeline):
            return "declare the model slot to unlock the ONNX export"

        @hookimpl
        def inspect_pipeline(pipeline):
            return "a string where a mapping belongs"
        """,
    )
    result = project.run("-p", "stringy_plugin", "profile", "plain.py", "--json", "p.json")
    result.assert_clean(0, "failed in inspect_pipeline: returned str, not a mapping; ignored")
    hints = json.loads((project.root / "p.json").read_text())["hints"]
    assert hints.count("declare the model slot to unlock the ONNX export") == 1
    assert "d" not in hints and "e" not in hints


STRICT_PLUGIN = """
from pipetune import hookimpl
from pipetune.core.kernel.results import Proposal

@hookimpl
def propose_changes(pipeline, profile, requirements):
    return [Proposal(id="faulty.speedup", plugin="faulty", stage="lookup",
                     title="a change whose apply is broken", est_stage_speedup=4.0)]

@hookimpl
def materialize_change(change, pipeline, artifacts_dir):
    if change.plugin == "faulty":
        raise RuntimeError("cannot build the candidate")
"""


def test_strict_mode_covers_materialize_change(project: Project):
    project.write("plain.py", TARGET)
    project.write("faulty.py", STRICT_PLUGIN)
    relaxed = project.run("-p", "faulty", "optimize", "plain.py", "--quick", "--json", "r.json")
    relaxed.assert_clean(0, "plugin 'faulty' failed in materialize_change")
    report = json.loads((project.root / "r.json").read_text())
    trial = next(t for t in report["trials"] if t["proposal"] == "faulty.speedup")
    assert trial["status"] == "rejected" and "cannot build the candidate" in trial["reason"]
    assert any("materialize_change" in w for w in report["warnings"])
    strict = project.run("-p", "faulty", "optimize", "plain.py", "--quick", env=strict_env())
    strict.assert_clean(2, "plugin 'faulty' failed in materialize_change")
    assert project.runs()[0][1] == "failed"
