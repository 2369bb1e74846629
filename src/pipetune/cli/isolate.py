"""``pipetune --isolate COMMAND ...``: the command, and every stage it runs, in a child
process (see :mod:`pipetune.core.kernel.isolation`).

The parent forwards SIGINT and SIGTERM (the child runs in its own session, so a terminal's
Ctrl-C reaches it once, through the parent) and waits. When the child ends without
pipetune's verdict (user code called ``os._exit()``, a native crash, the OOM killer), the
parent says how it ended and where, and exits 2.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from pipetune.cli.interrupts import signal_name
from pipetune.core.kernel import isolation

#: ``PIPETUNE_ISOLATE=1`` does what ``--isolate`` does.
ENV = "PIPETUNE_ISOLATE"
EXIT_USAGE = 2


def wanted(global_tokens: Sequence[str]) -> bool:
    """``--isolate`` among the global options (or the environment), outside the child."""
    if os.environ.get(isolation.ENV):
        return False  # this process is the child
    flag = os.environ.get(ENV, "").strip().lower() in ("1", "true", "yes", "on")
    return flag or "--isolate" in global_tokens


def run_isolated(args: Sequence[str]) -> int:
    """Run ``pipetune ARGS`` in a child process; returns the exit status to use."""
    crumb = isolation.new_breadcrumb()
    env = dict(os.environ, **{isolation.ENV: str(crumb)})
    env.pop(ENV, None)
    child_args = list(args)
    if "--isolate" in child_args:  # the global flag, before the command name
        child_args.remove("--isolate")
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "pipetune", *child_args], env=env, start_new_session=True
        )
        with _forwarding(child):
            code = _wait(child)
        found = isolation.read_breadcrumb(crumb)
    finally:
        with contextlib.suppress(OSError):
            crumb.unlink()
    if found.verdict:
        return code
    how = f"was killed by {signal_name(-code)}" if code < 0 else f"exited with code {code}"
    sys.stderr.write(
        f"Error: the isolated pipetune process {how}{found.where()} without reaching a "
        "verdict: user code (a stage or a plugin) ended the process itself (os._exit(), a "
        "crash in native code, or the out-of-memory killer). Nothing after that point was "
        "measured; run that stage on that input directly to see why.\n"
    )
    return EXIT_USAGE


def _wait(child: subprocess.Popen[Any]) -> int:
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:  # forwarded by the handler; keep waiting for the child
            continue


@contextlib.contextmanager
def _forwarding(child: subprocess.Popen[Any]) -> Any:
    previous: dict[int, Any] = {}

    def forward(signum: int, frame: Any) -> None:
        with contextlib.suppress(OSError):
            child.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):
            previous[signum] = signal.signal(signum, forward)
    try:
        yield
    finally:
        for number, old in previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(number, old)
