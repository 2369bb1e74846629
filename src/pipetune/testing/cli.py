"""Run the ``pipetune`` CLI in-process, with a given plugin manager (plugin commands)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from click.testing import Result

    from pipetune.core.kernel.manager import PipetunePluginManager


def invoke_cli(pm: PipetunePluginManager, *args: str, columns: int = 200, **kwargs: Any) -> Result:
    """``pipetune ARGS...`` built with ``pm`` (so your plugin's ``register_commands`` runs),
    through click's ``CliRunner``. ``result.exit_code`` and ``result.output`` (stdout and
    stderr) are what a user would see; tables are rendered ``columns`` wide."""
    from click.testing import CliRunner

    from pipetune.cli.main import build_cli

    env = {"COLUMNS": str(columns), **kwargs.pop("env", {})}
    return CliRunner(env=env).invoke(build_cli(pm), list(args), **kwargs)
