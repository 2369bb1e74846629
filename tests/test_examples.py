"""Every ``examples/*.py`` that defines ``pipeline`` profiles with no options."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipetune.cli.main import build_cli
from pipetune.core.kernel.manager import get_plugin_manager

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
WITH_PIPELINE = sorted(
    path
    for path in EXAMPLES.glob("*.py")
    if re.search(r"^pipeline\s*[:=]", path.read_text(), flags=re.MULTILINE)
)


def test_there_are_examples():
    assert len(WITH_PIPELINE) >= 3


@pytest.mark.parametrize("example", WITH_PIPELINE, ids=lambda path: path.stem)
@pytest.mark.slow
def test_example_profiles_with_no_options(example: Path, tmp_path: Path) -> None:
    out = tmp_path / "profile.json"
    pm = get_plugin_manager(entry_points=False)
    result = CliRunner().invoke(
        build_cli(pm), ["profile", f"{example}:pipeline", "--json", str(out)]
    )
    if result.exit_code == 2 and "is not installed" in result.output:
        pytest.skip(result.output.strip().splitlines()[-1])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    shares = [stage["share"] for stage in data["stages"]]
    assert data["stages"][-1]["name"] == "other"
    assert sum(shares) == pytest.approx(1.0, abs=1e-9)
    assert all(0 <= share <= 1 for share in shares)
    latency = data["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    assert data["samples"] > 0 and data["throughput_rps"] > 0
    assert data["target"] == f"{example}:pipeline"
    try:
        from pipetune.core.report.schema import validate
    except ImportError:  # the schema lands with the core-runtime work
        return
    validate("profile", data)
