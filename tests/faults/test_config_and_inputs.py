"""Config values, workloads and inputs: type-checked with where and what, corrupt inputs
skipped on request, accuracy reported with labels, failures named by workload index,
any file name scanned."""

from __future__ import annotations

import json
import os
import sys

import pytest

from tests.faults.conftest import Project

pytestmark = pytest.mark.slow  # subprocess fault tests: each case runs pipetune in a child process

PLAIN = """
from pipetune import Pipeline, Stage, Workload
pipeline = Pipeline("plain", (Stage("ident", lambda x: x),), output_kind="labels")
workload = Workload(items=tuple(range(6)), warmup=0, repeats=1)
"""


@pytest.mark.parametrize(
    ("table", "fragments"),
    [
        (
            '[tool.pipetune.workload]\nconcurrency = "16"\n',
            ["[tool.pipetune.workload]: concurrency must be", "not the string '16'"],
        ),
        ('[tool.pipetune.workload]\nconcurrency = "lots"\n', ["not the string 'lots'"]),
        ("[tool.pipetune.workload]\nrepeats = 2.5\n", ["repeats must be a whole number"]),
        (  # found by the fuzz: numpy's arrival generator refuses a negative seed
            '[tool.pipetune.workload]\nmode = "online"\nseed = -357\n',
            ["seed must be a whole number >= 0"],
        ),
        ('[tool.pipetune.requirements]\np99_ms = "fast"\n', ["p99_ms must be a number > 0"]),
        ("[tool.pipetune.requirements]\nmax_accuracy_drop = 3\n", ["max_accuracy_drop must be"]),
        ("[tool.pipetune]\ntarget = 5\n", ["target must be a string"]),
        ("[tool.pipetune]\nscan = []\n", ["scan must be a table"]),
    ],
)
def test_config_values_are_type_checked(project: Project, table, fragments):
    # the module has its own workload: the table's values are still checked
    project.write("plain.py", PLAIN)
    project.write("pyproject.toml", table)
    result = project.run("profile", "plain.py")
    result.assert_clean(2, "pyproject.toml", *fragments)


def test_a_module_workload_with_a_string_concurrency_is_an_error(project: Project):
    project.write("plain.py", PLAIN.replace("repeats=1)", 'repeats=1, concurrency="16")'))
    project.run("profile", "plain.py").assert_clean(2, "concurrency must be whole numbers")


def test_profile_of_a_folder_is_a_clear_message(project: Project):
    project.run("profile", ".").assert_clean(2, "is a folder, not a Python file")


CORRUPT = """
import time
from pipetune import Pipeline, Requirements, Stage, Workload

def decode(x):
    if x in (7, 23):
        raise OSError(f"image #{x} is truncated")
    time.sleep(0.002)
    return x % 5

pipeline = Pipeline("corrupt", (Stage("decode", decode, kind="features"),), output_kind="labels")
workload = Workload(items=tuple(range(40)), warmup=0, repeats=1)
requirements = Requirements(optimize_for="p50")
"""


def test_optimize_on_error_skip_sets_corrupt_inputs_aside(project: Project):
    project.write("corrupt.py", CORRUPT)
    stopped = project.run("optimize", "corrupt.py", "--quick")
    stopped.assert_clean(2, "stage 'decode' raised OSError on input #7")
    result = project.run(
        "optimize", "corrupt.py", "--quick", "--on-error", "skip", "--json", "r.json"
    )
    result.assert_clean(0, "2 of 40 inputs skipped")
    report = json.loads((project.root / "r.json").read_text())
    assert [entry["index"] for entry in report["skipped"]] == [7, 23]
    assert report["workload"]["items"] == 38
    assert all(entry["stage"] == "decode" for entry in report["skipped"])


def test_labels_give_accuracy(project: Project):
    project.write(
        "labelled.py",
        """
        from pipetune import Pipeline, Stage, Workload

        def classify(x):
            return x % 3

        pipeline = Pipeline("lab", (Stage("classify", classify),), output_kind="labels")
        labels = tuple((i % 3) if i % 5 else 9 for i in range(30))
        workload = Workload(items=tuple(range(30)), labels=labels, warmup=0, repeats=1)
        """,
    )
    result = project.run("profile", "labelled.py", "--json", "p.json")
    result.assert_clean(0, "accuracy against the labels: 80.0%")
    data = json.loads((project.root / "p.json").read_text())
    assert data["accuracy"] == {"metric": "accuracy", "value": 0.8, "n": 30}
    optimized = project.run("optimize", "labelled.py", "--quick", "--json", "r.json")
    optimized.assert_clean(0, "accuracy against the labels")
    report = json.loads((project.root / "r.json").read_text())
    assert report["baseline"]["accuracy"]["value"] == 0.8


LATE = """
import time
from pipetune import Pipeline, Requirements, Stage, Workload

def lookup(x, *, delay):
    time.sleep(delay)
    return x % 5

pipeline = Pipeline("late", (Stage("lookup", lookup, kind="features", slots={"delay": 0.002}),),
                    output_kind="labels")
workload = Workload(items=tuple(range(40)), warmup=0, repeats=1)
requirements = Requirements(optimize_for="p50")
"""

LATE_PLUGIN = """
from pipetune import hookimpl
from pipetune.core.kernel.results import Proposal

def broken(x, *, delay):
    if x == 33:
        raise ValueError("the fast path cannot read input 33")
    return x % 5

@hookimpl
def propose_changes(pipeline, profile, requirements):
    return [Proposal(id="late.fast", plugin="late", stage="lookup",
                     title="a fast path that fails on one input", est_stage_speedup=4.0)]

@hookimpl
def materialize_change(change, pipeline, artifacts_dir):
    if change.plugin == "late":
        stage = pipeline.stage("lookup")
        return pipeline.replace("lookup", stage.evolve(fn=broken))
"""


def test_a_late_failure_names_the_workload_index(project: Project):
    project.write("late.py", LATE)
    project.write("late_plugin.py", LATE_PLUGIN)
    result = project.run(
        "-p", "late=late_plugin", "optimize", "late.py", "--quick", "--json", "r.json"
    )
    result.assert_clean(0)
    report = json.loads((project.root / "r.json").read_text())
    trial = next(t for t in report["trials"] if t["proposal"] == "late.fast")
    assert trial["status"] == "rejected", trial
    assert "input #33 (33)" in trial["reason"], trial["reason"]


@pytest.mark.skipif(sys.platform != "linux", reason="byte file names (Linux file systems)")
@pytest.mark.parametrize("fmt", ["text", "json", "sarif"])
def test_scan_survives_a_file_name_that_is_not_utf8(project: Project, fmt):
    folder = project.root / "src"
    folder.mkdir()
    name = os.path.join(os.fsencode(folder), b"caf\xe9.py")
    with open(name, "wb") as handle:
        handle.write(
            b"from transformers import AutoTokenizer\n"
            b'tok = AutoTokenizer.from_pretrained("x", use_fast=False)\n'
        )
    result = project.run("scan", "src", "--format", fmt, "-o", f"report.{fmt}")
    assert result.code in (0, 1), result.text
    assert "internal error" not in result.text and "Traceback" not in result.text
    report = (project.root / f"report.{fmt}").read_text(encoding="utf-8")
    shown = {"text": "caf\\xe9.py", "json": "caf\\\\xe9.py", "sarif": "caf%E9.py"}[fmt]
    assert shown in report, report
