"""SIGINT and SIGTERM for the whole CLI: installed once, around the command.

The first signal cancels the command's token (:mod:`pipetune.core.kernel.control`) and,
unless the main thread is in a shielded block, raises ``KeyboardInterrupt`` there, so a
stage running inline is interrupted too. Every runtime loop, the comparison, the optimize
loop and tune steps see the token and stop; the command keeps what finished, says so, and
exits 130. A second signal exits at once (130), without waiting for anything.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from pipetune.core.kernel import control, isolation

#: The signals that stop a command.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_INTERRUPTED = 130


@contextlib.contextmanager
def handling() -> Iterator[control.CancelToken]:
    """Install the handlers (main thread only) and open a control scope with a fresh
    token; restore the previous handlers on the way out."""
    token = control.CancelToken()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():

        def handler(signum: int, frame: Any) -> None:
            on_signal(token, signum)

        for signum in STOP_SIGNALS:
            with contextlib.suppress(ValueError, OSError):  # an embedding that forbids it
                previous[signum] = signal.signal(signum, handler)
    try:
        with control.scope(token):
            yield token
    finally:
        for number, old in previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(number, old)


def on_signal(token: control.CancelToken, signum: int) -> None:
    """The handler's body: cancel, then interrupt; the second time, exit now."""
    name = signal_name(signum)
    if token.cancelled:
        _say(f"\n{name} again: exiting now without waiting for anything.\n")
        isolation.reached_verdict()
        os._exit(EXIT_INTERRUPTED)
    token.cancel(name)
    _say(f"\n{name}: stopping and keeping what finished (again to exit at once)...\n")
    if not control.is_shielded():
        raise KeyboardInterrupt


def signal_name(signum: int) -> str:
    """``SIGINT`` for 2; ``signal 99`` for a number that names no signal."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _say(text: str) -> None:
    # os.write, not sys.stderr: the main thread may be inside a buffered write to stderr,
    # and re-entering that writer from a signal handler raises RuntimeError.
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.write(sys.stderr.fileno(), text.encode("utf-8", "replace"))
