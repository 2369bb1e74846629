"""``pipetune serve``: sizing without deploying (the deployment itself is tested on a real
Ray in tests/scale/test_ray.py)."""

from __future__ import annotations

import sys

from tests.scale.conftest import TOY


def test_the_plan_gives_replicas_and_max_ongoing_requests(invoke, write_target, monkeypatch):
    monkeypatch.setenv("PIPETUNE_HOME", str(write_target(TOY).parent / "store"))
    target = write_target(TOY, name="toy_serve.py")
    result = invoke(
        "serve", str(target), "--plan", "--p99-ms", "100", "--now-rps", "5", "--peak-rps", "10"
    )
    assert result.exit_code == 0, result.output
    assert "max_ongoing_requests=" in result.output and "replica" in result.output
    assert "within P99 100 ms" in result.output


def test_serving_without_ray_gives_the_install_command(invoke, write_target, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    target = write_target(TOY, name="toy_serve.py")
    result = invoke("serve", str(target))
    assert result.exit_code == 2 and "pipetune[ray]" in result.output
