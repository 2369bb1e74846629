"""``pipetune plugins new NAME``: the package it writes passes its own tests, installs, shows
in ``pipetune plugins`` and contributes a proposal to ``pipetune propose``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipetune.cli.main import build_cli
from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.manager import get_plugin_manager
from pipetune.scaffold import create, validate_name

ROOT = Path(__file__).resolve().parents[1]

TARGET = """
from pipetune import Pipeline, Requirements, Stage, Workload

VOCABULARY = [f"word{i}" for i in range(3000)] + ["the", "a", "of"]


def token_ids(text, vocabulary):
    return [vocabulary.index(t) if t in vocabulary else -1 for t in text.split()]


def count(ids):
    return sum(1 for i in ids if i >= 0)


pipeline = Pipeline(
    "ids",
    (Stage("ids", token_ids, slots={"vocabulary": VOCABULARY}), Stage("count", count)),
    output_kind="any",
)
workload = Workload(
    items=tuple(f"the word{i} a word{2 * i} of zzz{i}" for i in range(60)), warmup=0, repeats=1
)
requirements = Requirements(p99_ms=1000)
"""


def _new(tmp_path: Path, *args: str):
    pm = get_plugin_manager(entry_points=False)
    return CliRunner().invoke(build_cli(pm), ["plugins", "new", *args, "-d", str(tmp_path)])


@pytest.mark.parametrize("name", ["Bad", "1st", "with-dash", "a", "x__y", "class", "nlp"])
def test_invalid_names_are_refused(tmp_path, name):
    result = _new(tmp_path, name)
    assert result.exit_code == 2 and "invalid plugin name" in result.output
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_never_overwritten(tmp_path):
    existing = tmp_path / "pipetune-dedupe"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    result = _new(tmp_path, "dedupe")
    assert result.exit_code == 2 and "already exists" in result.output
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]


def test_validate_name_accepts_plain_names():
    assert validate_name("dedupe") == "dedupe"
    assert validate_name("acme_io2") == "acme_io2"
    with pytest.raises(ConfigError):
        validate_name("acme_")


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return create("acme_lookup", tmp_path_factory.mktemp("scaffold")).root


def _env(*paths: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*(str(p) for p in paths), str(ROOT / "src")])
    env.pop("PIPETUNE_DISABLE_PLUGINS", None)
    return env


def test_the_scaffold_has_the_entry_point_hooks_and_tests(scaffolded):
    pyproject = (scaffolded / "pyproject.toml").read_text()
    assert '[project.entry-points.pipetune]\nacme_lookup = "pipetune_acme_lookup.plugin"' in (
        pyproject
    )
    plugin = (scaffolded / "src/pipetune_acme_lookup/plugin.py").read_text()
    for hook in ("profile_pipeline", "propose_changes", "register_changes", "scan_rules"):
        assert f"def {hook}(" in plugin
    assert "from pipetune.testing import" in (scaffolded / "tests/test_acme_lookup.py").read_text()


@pytest.mark.slow
def test_the_scaffolded_tests_pass(scaffolded):
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(scaffolded / "tests")],
        capture_output=True,
        text=True,
        env=_env(scaffolded / "src"),
        cwd=scaffolded,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "5 passed" in proc.stdout


@pytest.fixture(scope="module")
def installed(scaffolded, tmp_path_factory) -> Path:
    pytest.importorskip("setuptools", reason="building the scaffolded plugin needs setuptools")
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(scaffolded),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target


def _pipetune(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipetune", *args],
        capture_output=True,
        text=True,
        env=_env(site),
        cwd=cwd,
        timeout=300,
    )


@pytest.mark.slow
def test_installed_scaffold_is_listed_and_proposes(installed, tmp_path):
    listed = _pipetune(installed, tmp_path, "plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    plugins = {p["name"]: p for p in json.loads(listed.stdout)["plugins"]}
    ours = plugins["acme_lookup"]
    assert ours["status"] == "loaded" and ours["source"] == "entrypoint"
    assert ours["distribution"] == "pipetune-acme-lookup" and ours["api"] == 2
    assert {"profile_pipeline", "propose_changes", "register_changes", "scan_rules"} <= set(
        ours["hooks"]
    )

    (tmp_path / "target.py").write_text(textwrap.dedent(TARGET))
    out = tmp_path / "proposals.json"
    proc = _pipetune(installed, tmp_path, "propose", "target.py", "--json", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    proposals = json.loads(out.read_text())["proposals"]
    mine = [p for p in proposals if p["id"] == "acme_lookup.indexed_lookup"]
    assert [p["stage"] for p in mine] == ["ids"] and mine[0]["status"] == "proposed"

    # its scan rule runs in `pipetune scan` too: vocabulary.index in the comprehension
    scanned = _pipetune(installed, tmp_path, "scan", "target.py", "--select", "ACMELOOKUP")
    assert scanned.returncode == 1, scanned.stdout + scanned.stderr
    assert "target.py:8:13: ACMELOOKUP001" in scanned.stdout
