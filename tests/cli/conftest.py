"""Helpers for CLI tests: a plugin manager without entry points and a runner."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipetune.cli.main import build_cli
from pipetune.core.kernel.manager import get_plugin_manager

TOY = """
from pipetune import Pipeline, Requirements, Stage, Workload


def double(x):
    return x * 2


def check(x):
    if x == {bad}:
        raise ValueError("bad input")
    return x


pipeline = Pipeline("toy", (Stage("double", double), Stage("check", check)))
workload = Workload(items=tuple(range(12)), warmup=0, repeats=1)
requirements = Requirements(p99_ms=1000)
"""


@pytest.fixture
def cli_pm():
    return get_plugin_manager(entry_points=False)


@pytest.fixture
def invoke(cli_pm) -> Callable[..., object]:
    runner = CliRunner()

    def run(*args: str, **kwargs: object):
        return runner.invoke(build_cli(cli_pm), list(args), catch_exceptions=False, **kwargs)

    return run


@pytest.fixture
def write_target(tmp_path: Path) -> Callable[..., Path]:
    def write(source: str | None = None, name: str = "toy_target.py", bad: int = -1) -> Path:
        """Write ``source`` (default: the toy pipeline, whose ``check`` stage raises on
        ``bad``) as ``name`` in a temporary folder."""
        path = tmp_path / name
        path.write_text(TOY.format(bad=bad) if source is None else textwrap.dedent(source))
        return path

    return write
