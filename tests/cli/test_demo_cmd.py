"""`pipetune demo`: finds demos through the plugins, runs the loop, writes the HTML."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from pipetune.cli.main import build_cli
from pipetune.core.kernel.manager import get_plugin_manager

from .loop_targets import DemoPlugin


@pytest.fixture
def demo_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPETUNE_HOME", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    pm = get_plugin_manager(
        entry_points=False,
        disable=("recsys", "nlp", "vision", "llm", "hardware"),
        plugins=[("demos", DemoPlugin())],
    )
    runner = CliRunner()
    return lambda *args: runner.invoke(build_cli(pm), list(args), catch_exceptions=False)


@pytest.mark.slow
def test_demo_without_a_name_runs_the_default_and_writes_html(demo_cli, tmp_path):
    result = demo_cli("demo", "--quick", "--json", "d.json", "-q")
    assert result.exit_code == 0, result.output
    assert "pipetune demo lookups" in result.output
    page = (tmp_path / "pipetune-demo-lookups.html").read_text()
    assert page.count("<svg") == 3
    data = json.loads((tmp_path / "d.json").read_text())
    assert data["pipeline"] == "demo-lookups" and data["trials"]


def test_demo_list_and_unknown_names(demo_cli):
    listed = demo_cli("demo", "--list")
    assert "lookups (default)" in listed.output and "queries" in listed.output
    unknown = demo_cli("demo", "nope")
    assert unknown.exit_code == 2 and "no demo named 'nope'" in unknown.output
    assert "queries" in unknown.output
