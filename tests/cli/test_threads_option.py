"""``--threads N|auto`` on every command that runs user code."""

from __future__ import annotations

import json

import pytest

from pipetune.cli.main import build_cli

COMMANDS = ("profile", "propose", "optimize", "apply", "check", "capacity", "demo", "run")


def test_every_command_that_runs_user_code_takes_threads(cli_pm):
    cli = build_cli(cli_pm)
    for name in COMMANDS:
        flags = {flag for param in cli.commands[name].params for flag in param.opts}
        assert "--threads" in flags, name


@pytest.mark.slow
def test_profile_runs_under_the_pin_and_records_it(invoke, write_target, tmp_path):
    path = write_target()
    out = tmp_path / "profile.json"
    result = invoke("profile", f"{path}:pipeline", "--threads", "1", "--json", str(out), "-q")
    assert result.exit_code == 0, result.output
    threads = json.loads(out.read_text())["machine"]["threads"]
    assert threads["pinned"] is True and threads["requested"] == 1


@pytest.mark.slow
def test_auto_is_a_count_measured_from_the_host(invoke, write_target, tmp_path):
    path = write_target()
    out = tmp_path / "profile.json"
    result = invoke("profile", f"{path}:pipeline", "--threads", "auto", "--json", str(out), "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["machine"]["threads"]["requested"] >= 1


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_count_is_a_usage_error(invoke, write_target, value):
    result = invoke("propose", f"{write_target()}:pipeline", "--threads", value)
    assert result.exit_code == 2 and "thread count" in result.output
