"""The example third-party plugin, installed for real, shows up in ``pipetune plugins`` and
adds its facts to ``pipetune profile`` (docs/writing-plugins.md walks through it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "examples" / "pipetune-example-plugin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install --no-deps --no-build-isolation --target`` a copy of the package (a
    copy, so the build leaves nothing in the source tree)."""
    pytest.importorskip("setuptools", reason="building the example plugin needs setuptools")
    work = tmp_path_factory.mktemp("example-plugin")
    source = work / "src-copy"
    shutil.copytree(
        PACKAGE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    target = work / "site"
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
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target


def _pipetune(site: Path, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT / "src")])
    env.pop("PIPETUNE_DISABLE_PLUGINS", None)
    return subprocess.run(
        [sys.executable, "-m", "pipetune", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


@pytest.mark.slow
def test_installed_plugin_is_listed(installed: Path) -> None:
    proc = _pipetune(installed, "plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    plugins = {p["name"]: p for p in json.loads(proc.stdout)["plugins"]}
    example = plugins["example"]
    assert example["status"] == "loaded", example
    assert example["source"] == "entrypoint"
    assert (example["distribution"], example["version"]) == ("pipetune-example-plugin", "0.1.0")
    assert example["api"] == 2
    assert {
        "inspect_pipeline",
        "profile_pipeline",
        "propose_changes",
        "register_changes",
        "register_output_kinds",
    } <= set(example["hooks"])


@pytest.mark.slow
def test_installed_plugin_can_be_disabled(installed: Path) -> None:
    proc = _pipetune(installed, "-p", "no:example", "plugins", "--json")
    plugins = {p["name"]: p for p in json.loads(proc.stdout)["plugins"]}
    assert plugins["example"]["status"] == "disabled"


@pytest.mark.slow
def test_installed_plugin_measures_the_text_example(installed: Path, tmp_path: Path) -> None:
    out = tmp_path / "profile.json"
    proc = _pipetune(
        installed, "profile", "examples/text_classify.py:pipeline", "--json", str(out), "-q"
    )
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(out.read_text())["facts"]["example"]
    assert list(facts["list_membership_slots"]) == ["tokenize"]
    assert facts["list_membership_slots"]["tokenize"]["stopwords"] >= 16
    measured = facts["set_lookup"]["tokenize"]
    assert measured["slots"] == ["stopwords"] and measured["inputs"] > 0
    assert measured["list_ms_per_input"] > 0 and measured["set_ms_per_input"] > 0


@pytest.mark.slow
def test_installed_plugin_contributes_a_proposal(installed: Path, tmp_path: Path) -> None:
    out = tmp_path / "proposals.json"
    proc = _pipetune(installed, "propose", "examples/text_classify.py", "--json", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    proposals = json.loads(out.read_text())["proposals"]
    ours = [p for p in proposals if p["id"] == "example.set_lookup"]
    assert [p["stage"] for p in ours] == ["tokenize"]
    assert ours[0]["plugin"] == "example" and ours[0]["status"] == "proposed"
