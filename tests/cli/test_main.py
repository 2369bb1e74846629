from __future__ import annotations

import json

import click
import pytest

from pipetune.cli import main as cli_main
from pipetune.cli.main import COMMAND_MODULES, build_cli, plugin_arguments
from pipetune.core.kernel.manager import get_plugin_manager


def test_help_lists_every_command_module(invoke):
    result = invoke("--help")
    assert result.exit_code == 0
    for module in COMMAND_MODULES:
        name = module.rsplit(".", 1)[1].removesuffix("_cmd")
        assert name in result.output


def test_plugin_arguments_are_read_before_the_subcommand():
    disabled, extra = plugin_arguments(
        ["-p", "no:nlp", "-pno:llm", "-p", "my.mod", "profile", "-p"]
    )
    assert disabled == ["nlp", "llm"] and extra == ["my.mod"]


def test_pipetune_error_is_one_message_and_exit_2(invoke, write_target):
    path = write_target(bad=6)
    result = invoke("profile", f"{path}:pipeline")
    assert result.exit_code == 2
    assert "stage 'check' raised ValueError on input #3" in result.output
    assert "Traceback" not in result.output


def test_debug_shows_the_traceback(invoke, write_target):
    path = write_target(bad=6)
    result = invoke("--debug", "profile", f"{path}:pipeline")
    assert result.exit_code == 2
    assert "Traceback" in result.output and "bad input" in result.output


def test_keyboard_interrupt_exits_130():
    pm = get_plugin_manager(builtins=False, entry_points=False)
    cli = build_cli(pm)

    @cli.command()
    def hang() -> None:
        raise KeyboardInterrupt

    from click.testing import CliRunner

    result = CliRunner().invoke(cli, ["hang"])
    assert result.exit_code == 130 and "Interrupted" in result.output


def test_plugin_commands_are_registered_when_built_not_at_import(monkeypatch):
    from pipetune import hookimpl

    calls = []

    class Plugin:
        @hookimpl
        def register_commands(self, cli: click.Group) -> None:
            calls.append(cli)

            @cli.command()
            def hello() -> None:
                click.echo("hello from a plugin")

    pm = get_plugin_manager(builtins=False, entry_points=False, plugins=[("greeter", Plugin())])
    assert calls == []
    cli = build_cli(pm)
    assert len(calls) == 1
    from click.testing import CliRunner

    assert CliRunner().invoke(cli, ["hello"]).output == "hello from a plugin\n"


def test_a_plugin_cannot_replace_a_builtin_command():
    from pipetune import hookimpl

    class Plugin:
        @hookimpl
        def register_commands(self, cli: click.Group) -> None:
            @cli.command(name="profile")
            def hijack() -> None:
                pass

    pm = get_plugin_manager(builtins=False, entry_points=False, plugins=[("hijack", Plugin())])
    cli = build_cli(pm)
    assert cli.commands["profile"].callback.__module__ == "pipetune.cli.profile_cmd"
    assert "registered by both 'pipetune' and 'hijack'" in pm.hook_failures[0].error


def test_disable_plugin_with_p_no(invoke):
    result = invoke("-p", "no:vision", "plugins", "--json")
    statuses = {p["name"]: p["status"] for p in json.loads(result.output)["plugins"]}
    assert statuses["vision"] == "disabled" and statuses["nlp"] == "loaded"


def test_main_applies_p_before_building(capsys, monkeypatch):
    monkeypatch.setattr(
        "pipetune.core.kernel.manager.importlib.metadata.entry_points", lambda group: []
    )
    code = cli_main.main(["-p", "no:recsys", "plugins", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert {p["name"]: p["status"] for p in data["plugins"]}["recsys"] == "disabled"


def test_strict_mode_plugin_failure_is_exit_2(capsys, monkeypatch):
    monkeypatch.setenv("PIPETUNE_STRICT_PLUGINS", "1")
    code = cli_main.main(["-p", "no_such_plugin_module", "plugins"])
    assert code == 2
    err = capsys.readouterr().err
    assert "no_such_plugin_module" in err and "Traceback" not in err


def test_p_loads_a_module_of_hooks_under_a_name(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_hooks_for_p.py").write_text(
        "from pipetune import hookimpl\n\n"
        "@hookimpl\n"
        "def inspect_pipeline(pipeline):\n"
        "    return None\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(
        "pipetune.core.kernel.manager.importlib.metadata.entry_points", lambda group: []
    )
    assert cli_main.main(["-p", "mine=my_hooks_for_p", "-p", "no:nlp", "plugins", "--json"]) == 0
    plugins = {p["name"]: p for p in json.loads(capsys.readouterr().out)["plugins"]}
    assert plugins["mine"]["status"] == "loaded" and plugins["mine"]["hooks"] == [
        "inspect_pipeline"
    ]
    assert plugins["nlp"]["status"] == "disabled"


def test_p_with_a_missing_module_is_a_usage_error(capsys, monkeypatch):
    monkeypatch.setattr(
        "pipetune.core.kernel.manager.importlib.metadata.entry_points", lambda group: []
    )
    assert cli_main.main(["-p", "no_such_module_for_p", "plugins", "--json"]) == 2
    err = capsys.readouterr().err
    assert "-p no_such_module_for_p: cannot load" in err and "No module named" in err


def test_p_typo_names_the_nearest_module_and_plugin(capsys, monkeypatch):
    monkeypatch.setattr(
        "pipetune.core.kernel.manager.importlib.metadata.entry_points", lambda group: []
    )
    assert cli_main.main(["-p", "pipetune.plugins.generic.plugn", "plugins"]) == 2
    assert "did you mean 'pipetune.plugins.generic.plugin'?" in capsys.readouterr().err
    assert cli_main.main(["-p", "no:recsis", "plugins"]) == 2
    assert "did you mean 'recsys'?" in capsys.readouterr().err


@pytest.mark.slow
def test_help_imports_no_heavy_library():
    """`pipetune --help` must be instant: building the CLI imports no optional library."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys\n"
        "from pipetune.cli.main import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ['torch', 'faiss', 'cv2', 'transformers', 'tokenizers', 'openvino', "
        "'onnxruntime', 'tensorrt', 'coremltools', 'nvidia.dali', 'PIL', 'rich']\n"
        "print('HEAVY=' + ','.join(m for m in heavy if m in sys.modules))\n"
    )
    src = Path(__file__).resolve().parents[2] / "src"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY="
