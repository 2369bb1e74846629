"""Bad input (issue 2): one clear message, exit code 2, no traceback unless --debug."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def assert_clean_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1, result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_target_file_missing(invoke, tmp_path):
    assert_clean_error(invoke("profile", f"{tmp_path}/nope.py:pipeline"), "does not exist")


def test_target_module_missing(invoke):
    assert_clean_error(
        invoke("profile", "no_such_pkg.pipe:pipeline"), "no module named 'no_such_pkg'"
    )


def test_target_with_syntax_error(invoke, write_target):
    path = write_target("def broken(:\n    pass\n")
    assert_clean_error(invoke("profile", f"{path}:pipeline"), "syntax error", f"{path}:1")


def test_target_raising_at_import(invoke, write_target):
    path = write_target("import json\nCONFIG = json.loads('{bad json')\n")
    assert_clean_error(
        invoke("profile", f"{path}:pipeline"), "JSONDecodeError", f"{path}:2", "--debug"
    )


def test_target_importing_a_missing_package(invoke, write_target):
    path = write_target("import definitely_not_installed_pkg\n")
    assert_clean_error(
        invoke("profile", f"{path}:pipeline"), "definitely_not_installed_pkg", "install"
    )


def test_attribute_missing_lists_the_pipelines(invoke, write_target):
    path = write_target()
    assert_clean_error(
        invoke("profile", f"{path}:pipe"), "has no attribute 'pipe'", "pipelines in it: pipeline"
    )


def test_attribute_not_a_pipeline(invoke, write_target):
    path = write_target()
    assert_clean_error(
        invoke("profile", f"{path}:requirements"), "is a Requirements, not a pipetune Pipeline"
    )


def test_stage_raising_stops_with_stage_input_and_exception(invoke, write_target):
    path = write_target(bad=10)  # stage "check" sees double(5) == 10
    assert_clean_error(
        invoke("profile", f"{path}:pipeline"),
        "stage 'check'",
        "input #5",
        "ValueError",
        "bad input",
    )


@pytest.mark.slow
def test_stage_raising_with_skip_counts_per_stage(invoke, write_target, tmp_path):
    path = write_target(bad=10)
    out = tmp_path / "p.json"
    result = invoke("profile", f"{path}:pipeline", "--on-error", "skip", "--json", str(out))
    assert result.exit_code == 0, result.output
    assert "1 input(s) failed" in result.output and "check: 1" in result.output
    errors = json.loads(out.read_text())["errors"]
    assert errors["count"] == 1 and errors["by_stage"] == {"check": 1}
    assert "input #5 in check" in errors["examples"][0]


@pytest.mark.slow
def test_hung_stage_is_named_with_timeout(invoke, write_target):
    source = """
    import time
    from pipetune import Pipeline, Stage, Workload

    def hang(x):
        if x == 2:
            time.sleep(3)
        return x

    pipeline = Pipeline("hangs", (Stage("fine", lambda x: x), Stage("stuck", hang)))
    workload = Workload(items=(1, 2, 3), warmup=0, repeats=1)
    """
    path = write_target(textwrap.dedent(source), name="hangs.py")
    assert_clean_error(
        invoke("profile", f"{path}:pipeline", "--timeout", "0.5"),
        "stage 'stuck'",
        "no result after 0.5 s",
    )


def test_empty_workload(invoke, write_target):
    source = "from pipetune import Workload\nfrom toy_target import pipeline\nworkload = []\n"
    write_target()
    path = write_target(source, name="empty.py")
    assert_clean_error(invoke("profile", f"{path}:pipeline"), "is empty")


def test_empty_jsonl_workload(invoke, write_target, tmp_path):
    path = write_target("from toy_target import pipeline\n", name="nowork.py")
    write_target()
    data = tmp_path / "empty.jsonl"
    data.write_text("\n\n")
    assert_clean_error(invoke("profile", f"{path}:pipeline", "--workload", str(data)), "is empty")


def test_no_workload_at_all(invoke, write_target):
    write_target()
    path = write_target("from toy_target import pipeline\n", name="nowork.py")
    assert_clean_error(invoke("profile", f"{path}:pipeline"), "no workload", "--workload")


def test_malformed_jsonl_line_is_named(invoke, write_target, tmp_path):
    write_target()
    path = write_target("from toy_target import pipeline\n", name="nowork.py")
    data = tmp_path / "inputs.jsonl"
    data.write_text('{"x": 1}\n{"x": 2}\n{"x": 3,\n')
    assert_clean_error(
        invoke("profile", f"{path}:pipeline", "--workload", str(data), "--field", "x"),
        f"{data}:3",
        "not valid JSON",
    )


def test_jsonl_line_missing_the_field(invoke, write_target, tmp_path):
    write_target()
    path = write_target("from toy_target import pipeline\n", name="nowork.py")
    data = tmp_path / "inputs.jsonl"
    data.write_text('{"x": 1}\n{"y": 2}\n')
    assert_clean_error(
        invoke("profile", f"{path}:pipeline", "--workload", str(data), "--field", "x"),
        f"{data}:2",
        "no field 'x'",
    )


def test_unknown_key_in_tool_pipetune(invoke, write_target, tmp_path, monkeypatch):
    path = write_target()
    (tmp_path / "pyproject.toml").write_text('[tool.pipetune]\ntarget = "x:y"\ntargte = 1\n')
    monkeypatch.chdir(tmp_path)
    assert_clean_error(
        invoke("profile", f"{path}:pipeline"), "unknown key(s) 'targte'", "did you mean 'target'"
    )


def test_unknown_workload_key_in_config(invoke, write_target, tmp_path, monkeypatch):
    path = write_target()
    (tmp_path / "pyproject.toml").write_text("[tool.pipetune.workload]\nrepeat = 3\n")
    monkeypatch.chdir(tmp_path)
    assert_clean_error(
        invoke("profile", f"{path}:pipeline"),
        "[tool.pipetune.workload]",
        "'repeat' (did you mean 'repeats'?)",
    )


def test_unknown_requirement_key_in_config(invoke, write_target, tmp_path, monkeypatch):
    write_target()
    path = write_target("from toy_target import pipeline, workload\n", name="noreq.py")
    (tmp_path / "pyproject.toml").write_text("[tool.pipetune.requirements]\np99ms = 50\n")
    monkeypatch.chdir(tmp_path)
    assert_clean_error(
        invoke("profile", f"{path}:pipeline"),
        "[tool.pipetune.requirements]",
        "unknown key(s) 'p99ms' (did you mean 'p99_ms'?)",
    )


def test_unknown_requirement_key_in_module(invoke, write_target):
    write_target()
    path = write_target(
        "from toy_target import pipeline, workload\nrequirements = {'p99': 5}\n", name="req.py"
    )
    assert_clean_error(
        invoke("profile", f"{path}:pipeline"),
        "`requirements`",
        "unknown key(s) 'p99' (did you mean 'p99_ms'?)",
    )


def test_invalid_requirement_value(invoke, write_target):
    path = write_target()
    assert_clean_error(
        invoke("profile", f"{path}:pipeline", "--max-accuracy-drop", "2"), "max_accuracy_drop"
    )


def test_malformed_pyproject(invoke, write_target, tmp_path, monkeypatch):
    path = write_target()
    (tmp_path / "pyproject.toml").write_text("[tool.pipetune\nx = 1\n")
    monkeypatch.chdir(tmp_path)
    assert_clean_error(invoke("profile", f"{path}:pipeline"), "not valid TOML")


def test_both_workload_and_folder(invoke, write_target, tmp_path):
    path = write_target()
    data = tmp_path / "d.jsonl"
    data.write_text("1\n")
    assert_clean_error(
        invoke("profile", f"{path}:pipeline", "--workload", str(data), "--folder", str(tmp_path)),
        "not both",
    )


def test_usage_errors_are_exit_2(invoke):
    result = invoke("profile", "x.py:pipeline", "--on-error", "maybe")
    assert result.exit_code == 2 and "Invalid value for '--on-error'" in result.output


# -- through the real console script -------------------------------------------------------


def _console_script() -> list[str]:
    script = Path(sys.executable).with_name("pipetune")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pipetune"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env.pop("PIPETUNE_DEBUG", None)
    return env


def test_console_script_bad_target(tmp_path):
    target = tmp_path / "t.py"
    target.write_text("pipeline = 42\n")
    proc = subprocess.run(
        [*_console_script(), "profile", f"{target}:pipeline"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == f"Error: TARGET {target}:pipeline: 'pipeline' is an int, not a pipetune Pipeline"
    )
    assert proc.stdout == ""


def test_console_script_debug_shows_the_traceback(tmp_path):
    target = tmp_path / "t.py"
    target.write_text("raise RuntimeError('at import')\n")
    proc = subprocess.run(
        [*_console_script(), "--debug", "profile", f"{target}:pipeline"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "RuntimeError: at import" in proc.stderr


@pytest.mark.slow
def test_console_script_exits_past_a_stage_still_hung_after_its_timeout(tmp_path):
    # a hung stage's thread may sit in native code, where finalizing the interpreter under
    # it aborted the process (exit 134) after everything had been written
    target = tmp_path / "hang.py"
    target.write_text(
        textwrap.dedent(
            """
            import time
            from pipetune import Pipeline, Stage, Workload

            def work(x):
                time.sleep(60)
                return x

            pipeline = Pipeline("hangs", (Stage("work", work),))
            workload = Workload(items=(1, 2), warmup=0, repeats=1)
            """
        )
    )
    proc = subprocess.run(
        [*_console_script(), "profile", f"{target}:pipeline", "--timeout", "1"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=50,  # well before the stage would wake up
    )
    assert proc.returncode == 2, proc.stderr
    assert "stage 'work'" in proc.stderr and "Traceback" not in proc.stderr
    assert "1 stage thread(s) that timed out are still running" in proc.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery differs on Windows")
@pytest.mark.slow
def test_ctrl_c_keeps_what_was_measured(tmp_path):
    marker = tmp_path / "started"
    target = tmp_path / "slow.py"
    target.write_text(
        textwrap.dedent(
            f"""
            import pathlib, time
            from pipetune import Pipeline, Stage, Workload

            def work(x):
                pathlib.Path({str(marker)!r}).touch()
                time.sleep(0.01)
                return x

            pipeline = Pipeline("slow", (Stage("work", work),))
            workload = Workload(items=tuple(range(400)), warmup=0, repeats=3)
            """
        )
    )
    out = tmp_path / "profile.json"
    proc = subprocess.Popen(
        [*_console_script(), "profile", f"{target}:pipeline", "--json", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)  # let some inputs finish
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Interrupted" in stderr and "Traceback" not in stderr
    data = json.loads(out.read_text())
    assert 0 < data["samples"] < 1200
    assert any("interrupted" in warning for warning in data["warnings"])
