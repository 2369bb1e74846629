"""load_target: TARGET specs, and where the workload and requirements come from."""

from __future__ import annotations

import json
import sys
import textwrap

import click
import pytest
from click.testing import CliRunner

from pipetune import ConfigError, Pipeline, PipelineError
from pipetune.cli.options import (
    RequirementsOptions,
    TargetOptions,
    WorkloadOptions,
    target_argument,
    target_options,
    workload_options,
)
from pipetune.cli.target import load_target, parse_spec
from pipetune.core.kernel.config import load_config


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("pkg.mod:pipe", ("pkg.mod", "pipe")),
        ("pkg.mod", ("pkg.mod", "pipeline")),
        ("path/to/file.py:obj.pipe", ("path/to/file.py", "obj.pipe")),
        ("path/to/file.py", ("path/to/file.py", "pipeline")),
        ("C:\\work\\file.py", ("C:\\work\\file.py", "pipeline")),
    ],
)
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize("spec", ["", "mod:", ":attr", "mod:not-an-attr"])
def test_parse_spec_rejects(spec):
    with pytest.raises(ConfigError):
        parse_spec(spec)


def test_module_exports_are_used(write_target):
    target = load_target(str(write_target()))
    assert isinstance(target.pipeline, Pipeline) and target.pipeline.name == "toy"
    assert len(target.workload) == 12 and target.requirements.p99_ms == 1000
    assert target.origins["workload"].endswith("toy_target.py:workload")


def test_factory_functions_are_called(write_target):
    path = write_target(
        """
        from pipetune import Pipeline, Stage

        calls = []

        def build_pipeline():
            return Pipeline("built", (Stage("s", lambda x: x),))

        def workload():
            calls.append(1)
            return [1, 2, 3]

        def requirements():
            return {"p99_ms": 7}
        """,
        name="factories.py",
    )
    target = load_target(f"{path}:build_pipeline")
    assert target.pipeline.name == "built"
    assert target.workload.items == (1, 2, 3) and target.requirements.p99_ms == 7
    with pytest.raises(PipelineError, match="not a pipetune Pipeline"):
        load_target(f"{path}:calls")


def test_dotted_module_from_the_current_folder(tmp_path, monkeypatch):
    package = tmp_path / "mypkg_for_target_test"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "pipe.py").write_text(
        "from pipetune import Pipeline, Stage\n"
        "pipeline = Pipeline('dotted', (Stage('s', str.upper),))\n"
        "workload = ['a', 'b']\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        target = load_target("mypkg_for_target_test.pipe:pipeline")
    finally:
        sys.modules.pop("mypkg_for_target_test.pipe", None)
        sys.modules.pop("mypkg_for_target_test", None)
    assert target.pipeline.name == "dotted" and target.module == "mypkg_for_target_test.pipe"


def test_command_line_workload_beats_the_module(write_target, tmp_path):
    data = tmp_path / "inputs.jsonl"
    data.write_text("\n".join(json.dumps({"n": i, "y": i % 2}) for i in range(7)))
    options = TargetOptions(
        workload=WorkloadOptions(path=data, field="n", label_field="y", repeats=4, items=5)
    )
    target = load_target(str(write_target()), options)
    assert target.workload.items == (0, 1, 2, 3, 4)
    assert target.workload.labels == (0, 1, 0, 1, 0)
    assert target.workload.repeats == 4
    assert target.origins["workload"] == f"--workload {data}"


def test_command_line_settings_apply_to_the_module_workload(write_target):
    options = TargetOptions(
        workload=WorkloadOptions(concurrency=(1, 4), warmup=2, items=3, mode="online", rate=50.0)
    )
    workload = load_target(str(write_target()), options).workload
    assert workload.items == (0, 1, 2) and workload.concurrency == (1, 4)
    assert (workload.warmup, workload.mode, workload.rate) == (2, "online", 50.0)


def test_folder_workload(write_target, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("b.jpg", "a.jpg", "notes.txt"):
        (folder / name).write_bytes(b"x")
    options = TargetOptions(workload=WorkloadOptions(folder=folder, pattern="*.jpg"))
    workload = load_target(str(write_target()), options).workload
    assert [p.name for p in workload.items] == ["a.jpg", "b.jpg"]


def test_config_gives_target_workload_and_requirements(tmp_path, monkeypatch, write_target):
    write_target("from toy_target import pipeline\n", name="only_pipeline.py")
    write_target()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.jsonl").write_text("\n".join(json.dumps({"v": i}) for i in range(9)))
    (tmp_path / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [tool.pipetune]
            target = "only_pipeline.py:pipeline"

            [tool.pipetune.workload]
            path = "data/in.jsonl"
            field = "v"
            items = 6
            concurrency = [1, 2]
            repeats = 2

            [tool.pipetune.requirements]
            p99_ms = 20
            min_throughput_rps = 100
            """
        )
    )
    elsewhere = tmp_path / "sub" / "dir"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)  # the nearest pyproject.toml is two folders up
    options = TargetOptions(requirements=RequirementsOptions({"p99_ms": 10.0}))
    target = load_target(None, options)
    assert target.pipeline.name == "toy"
    assert target.workload.items == tuple(range(6)) and target.workload.concurrency == (1, 2)
    assert target.workload.repeats == 2
    assert target.requirements.p99_ms == 10.0  # the command line wins
    assert target.requirements.min_throughput_rps == 100
    assert "[tool.pipetune.requirements]" in target.origins["requirements"]


def test_module_requirements_beat_the_config(tmp_path, monkeypatch, write_target):
    path = write_target()
    (tmp_path / "pyproject.toml").write_text("[tool.pipetune.requirements]\np99_ms = 3\n")
    monkeypatch.chdir(tmp_path)
    assert load_target(str(path)).requirements.p99_ms == 1000


def test_no_target_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="no TARGET given"):
        load_target(None)


def test_need_workload_false(write_target):
    write_target()
    path = write_target("from toy_target import pipeline\n", name="bare.py")
    assert load_target(str(path), need_workload=False).workload is None


def test_config_sections_of_other_commands_are_allowed(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.pipetune.scan]\nselect = ['X1']\n")
    config = load_config(tmp_path / "pyproject.toml")
    assert config.section("scan") == {"select": ["X1"]}


def test_pyproject_without_pipetune_table_is_skipped(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.other]\nx = 1\n")
    assert load_config(start=tmp_path).path is None


# -- the option groups, as another command uses them -------------------------------------


def test_option_groups_collect_into_target_opts(write_target):
    seen = {}

    @click.command()
    @target_argument
    @target_options
    def cmd(target, target_opts):
        seen["opts"] = target_opts
        seen["target"] = load_target(target, target_opts)

    path = write_target()
    result = CliRunner().invoke(
        cmd,
        [
            str(path),
            "--items",
            "4",
            "--concurrency",
            "1,2,8",
            "--p99-ms",
            "12",
            "--optimize-for",
            "throughput",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    opts = seen["opts"]
    assert opts.workload.items == 4 and opts.workload.concurrency == (1, 2, 8)
    assert opts.requirements.given() == {"p99_ms": 12.0, "optimize_for": "throughput"}
    target = seen["target"]
    assert target.requirements.p99_ms == 12.0 and target.requirements.metric == "throughput"
    assert len(target.workload) == 4


def test_workload_options_alone():
    seen = {}

    @click.command()
    @workload_options
    def cmd(target_opts):
        seen["opts"] = target_opts

    result = CliRunner().invoke(cmd, ["--concurrency", "0,2"])
    assert result.exit_code == 2 and "concurrency levels must be >= 1" in result.output
    CliRunner().invoke(cmd, ["--repeats", "5"], catch_exceptions=False)
    assert seen["opts"].workload.repeats == 5
    assert seen["opts"].requirements == RequirementsOptions()


def test_a_file_named_like_a_stdlib_module_does_not_shadow_it(write_target):
    import profile as stdlib_profile

    path = write_target(
        "from pipetune import Pipeline, Stage\n"
        "pipeline = Pipeline('p', (Stage('s', lambda x: x),))\n"
        "workload = (i for i in range(3))\n",
        name="profile.py",
    )
    target = load_target(str(path))
    assert target.module != "profile" and sys.modules["profile"] is stdlib_profile
    assert target.workload.items == (0, 1, 2)  # a generator is accepted
