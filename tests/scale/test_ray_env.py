"""Reaching Ray: a clear error for a missing Ray, a bad address, or one that never answers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from pipetune.core.kernel.errors import ConfigError, MissingDependency
from pipetune.scale import ray_env

pytestmark = pytest.mark.slow  # Ray: starts a local cluster


def test_without_ray_the_error_gives_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingDependency, match=r"pipetune\[ray\]"):
        ray_env.require_ray("a test")


@pytest.mark.parametrize("address", ["nonsense", "host:port", ":80"])
def test_an_address_that_is_not_host_port_is_refused(address):
    with pytest.raises(ConfigError, match="is not HOST:PORT"):
        ray_env._host_port(address)


def test_a_port_nobody_listens_on_fails_at_once():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ConfigError, match="cannot reach the Ray cluster"):
        ray_env._check_port(f"127.0.0.1:{port}", 5.0)
    assert time.monotonic() - started < 5.0


def test_an_open_port_that_is_not_ray_fails_within_the_deadline(tmp_path):
    """Ray's own client retries for minutes; the deadline holds. In a child process: the
    abandoned connection attempt must not stay in the test process."""
    pytest.importorskip("ray", reason="ray is not installed")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        script = textwrap.dedent(
            f"""
            from pipetune.scale.ray_env import ray_session
            try:
                with ray_session("127.0.0.1:{port}", timeout_s=3.0):
                    print("connected")
            except Exception as exc:
                print(type(exc).__name__, exc)
            """
        )
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        took = time.monotonic() - started
    assert "ConfigError no Ray cluster answered at" in done.stdout, done.stdout + done.stderr
    assert took < 30
