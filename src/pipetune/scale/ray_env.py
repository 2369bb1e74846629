"""Reaching Ray: import it with a clear message, connect within a deadline, stay quiet.

* No Ray installed: :class:`~pipetune.core.kernel.errors.MissingDependency` with the install
  command (``pip install "pipetune[ray]"``).
* No ``address``: a local Ray is started (and stopped at the end); an address given as
  ``--address`` (or ``RAY_ADDRESS``) is connected to, and only disconnected from.
* An address that does not answer is an error within :data:`CONNECT_TIMEOUT_S`: Ray's own
  client keeps retrying for minutes. The port is tried first (refused or unreachable fails
  at once); then ``ray.init`` gets the rest of the deadline in a helper thread.
* A Ray already initialized in this process (a test's cluster) is used as it is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.registry import require

CONNECT_TIMEOUT_S = 30.0
#: How long the port check may take, out of the deadline.
PORT_CHECK_S = 5.0


def require_ray(purpose: str, *, serve: bool = False) -> Any:
    """``ray`` with Ray Data (and Ray Serve when asked), or MissingDependency."""
    ray = require("ray", "ray", purpose)
    require("ray.data", "ray", purpose)
    if serve:
        require("ray.serve", "ray", purpose)
    return ray


@contextlib.contextmanager
def ray_session(
    address: str | None = None, *, timeout_s: float = CONNECT_TIMEOUT_S, purpose: str = "Ray"
) -> Iterator[Any]:
    """Ray, connected for the block (see the module docstring); yields the ``ray`` module."""
    ray = require_ray(purpose)
    if ray.is_initialized():
        yield ray
        return
    _quiet()
    if address:
        _connect(ray, address, timeout_s)
    else:
        ray.init(
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
            configure_logging=True,
        )
    try:
        yield ray
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()


def _connect(ray: Any, address: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    if address not in ("auto", "local"):
        _check_port(address, min(PORT_CHECK_S, timeout_s))
    errors: list[BaseException] = []

    def init() -> None:
        try:
            ray.init(
                address=address,
                log_to_driver=False,
                logging_level=logging.WARNING,
                configure_logging=True,
            )
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=init, name="pipetune-ray-connect", daemon=True)
    thread.start()
    thread.join(max(0.1, deadline - time.monotonic()))
    if thread.is_alive():
        raise ConfigError(
            f"no Ray cluster answered at {address} within {timeout_s:g} s (the port is open, "
            "but no Ray GCS replied): check --address (the head node's GCS port, 6379 by "
            "default, or ray://HOST:10001 for Ray Client)"
        )
    if errors:
        exc = errors[0]
        raise ConfigError(
            f"cannot connect to the Ray cluster at {address}: {type(exc).__name__}: {exc}"
        ) from None


def _check_port(address: str, timeout_s: float) -> None:
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"cannot reach the Ray cluster at {address}: {reason} (is the head node "
            f"running? `ray start --head` prints its address)"
        ) from None


def _host_port(address: str) -> tuple[str, int]:
    plain = address.split("://", 1)[-1]
    host, _, port = plain.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address!r} is not HOST:PORT (or ray://HOST:PORT, or auto)")
    return host.strip("[]"), int(port)


def _quiet() -> None:
    """Ray Data's own progress bars and execution logs would interleave with ours."""
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", module=r"ray\.data\..*")
    for name in ("ray", "ray.data", "ray.serve"):
        logging.getLogger(name).setLevel(logging.WARNING)


def configure_data(ray: Any) -> None:
    """Ray Data settings for a pipetune job: no progress bars of its own (the driver shows
    one), no execution-plan banner, order not preserved (rows are keyed by id)."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    with contextlib.suppress(AttributeError):
        context.enable_operator_progress_bars = False
    with contextlib.suppress(AttributeError):
        context.print_on_execution_start = False
    context.execution_options.preserve_order = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def cluster_cpus(ray: Any) -> float:
    """CPUs of the connected cluster."""
    return float(ray.cluster_resources().get("CPU", 0.0))


def available_cpus(address: str | None, purpose: str = "Ray") -> float:
    """CPUs to plan for without running anything: the cluster's at ``address``, else this
    machine's (what a local Ray would get)."""
    if address:
        with ray_session(address, purpose=purpose) as ray:
            return cluster_cpus(ray)
    if hasattr(os, "sched_getaffinity"):
        return float(len(os.sched_getaffinity(0)))
    return float(os.cpu_count() or 1)
