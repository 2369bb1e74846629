"""One way to stop and bound work: a cancellation token and a per-input deadline.

A :class:`Control` travels with the work through a context variable: the CLI opens one
per command (:func:`scope`) and its signal handlers cancel its token; library entry points
(``optimize``, ``profile``) open one when none is active. Worker threads started through
:mod:`pipetune.core.kernel.workers` (and hook calls made through the plugin manager) run
in a copy of the caller's context, so they see the same control.

* **Cancellation.** The runtime stops taking inputs and returns what it measured when the
  token is cancelled (or a ``KeyboardInterrupt`` reaches it, which cancels the token);
  the comparison, the loop and long tune steps call :func:`check` between steps, which
  raises :class:`Cancelled` (a ``KeyboardInterrupt``) once the token is cancelled, so
  partial results never flow on into later measurements.
* **Per-input deadline.** ``item_timeout_s`` bounds the time one input (one call of a
  batch) may spend in the pipeline: a stage over it is named with its input, never a
  whole pass blamed on the input it happened to be on. ``None``: no deadline (a run then
  stays in the calling thread).
* **Shielding.** Code that must finish once started (a store transaction, writing a
  report) runs inside :func:`shielded`: a signal arriving then only cancels the token, and
  the interrupt is raised at the next :func:`check`.

Outside any scope, :func:`current` is an inert control (never cancelled, no deadline),
which keeps plain library calls working as they always have.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

#: The per-input deadline the CLI uses when ``--timeout`` is not given.
DEFAULT_ITEM_TIMEOUT_S = 600.0


class Cancelled(KeyboardInterrupt):
    """The work was cancelled (Ctrl-C, SIGTERM, or a caller's token). A
    ``KeyboardInterrupt``, so every handler that keeps finished results on Ctrl-C keeps
    them on a cancellation too."""

    def __init__(self, reason: str = "interrupted"):
        super().__init__(reason)
        self.reason = reason


class CancelToken:
    """A one-way flag: once cancelled it stays cancelled. Safe to share between threads."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self, reason: str = "interrupted") -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def check(self) -> None:
        """Raise :class:`Cancelled` when the token is cancelled."""
        if self._event.is_set():
            raise Cancelled(self.reason or "interrupted")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled or ``timeout`` passes; True when cancelled."""
        return self._event.wait(timeout)


class _InertToken(CancelToken):
    """The token outside any scope: cancelling it does nothing (a stray Ctrl-C in one
    library call must not cancel every later call in the process)."""

    def cancel(self, reason: str = "interrupted") -> None:
        return None


@dataclass(frozen=True)
class Control:
    """What bounds the current work: its token and the per-input deadline."""

    token: CancelToken = field(default_factory=CancelToken)
    item_timeout_s: float | None = None

    @property
    def cancelled(self) -> bool:
        return self.token.cancelled


_INERT = Control(token=_InertToken())
_current: contextvars.ContextVar[Control | None] = contextvars.ContextVar(
    "pipetune_control", default=None
)
_shield = threading.local()


def current() -> Control:
    """The active control (an inert one outside any scope)."""
    return _current.get() or _INERT


def active() -> bool:
    """Whether a scope is open in this context."""
    return _current.get() is not None


@contextlib.contextmanager
def scope(
    token: CancelToken | None = None,
    *,
    item_timeout_s: float | object | None = ...,
) -> Iterator[Control]:
    """Open a control scope: with no ``token``, the enclosing scope's token (or a new one);
    ``item_timeout_s`` replaces the enclosing deadline when given (``None`` removes it)."""
    outer = _current.get()
    base = outer or Control()
    if token is not None:
        base = replace(base, token=token)
    if item_timeout_s is not ...:
        base = replace(base, item_timeout_s=item_timeout_s)  # type: ignore[arg-type]
    reset = _current.set(base)
    try:
        yield base
    finally:
        _current.reset(reset)


def check() -> None:
    """Raise :class:`Cancelled` when the current work is cancelled (a checkpoint)."""
    current().token.check()


def complete(result: Any) -> Any:
    """``result`` (a run's result) when it ran to the end; raise :class:`Cancelled` when it
    was stopped early, so a partial run never passes for a whole one."""
    if getattr(result, "stopped", False):
        cancel("interrupted")
        raise Cancelled(current().token.reason or "interrupted")
    return result


def cancelled() -> bool:
    return current().token.cancelled


def cancel(reason: str = "interrupted") -> None:
    """Cancel the current work (a no-op outside any scope)."""
    current().token.cancel(reason)


def item_timeout(explicit: float | None = None) -> float | None:
    """The per-input deadline to use: ``explicit`` when given, else the scope's."""
    return explicit if explicit is not None else current().item_timeout_s


def capped(seconds: float) -> float:
    """``seconds``, but never more than the scope's per-input deadline (a computed limit
    such as ten times the expected time must not outlast what the user asked for)."""
    limit = current().item_timeout_s
    return seconds if limit is None else min(seconds, limit)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Run a block that must not be torn in half by a signal (see the module docstring)."""
    depth = getattr(_shield, "depth", 0)
    _shield.depth = depth + 1
    try:
        yield
    finally:
        _shield.depth = depth


def is_shielded() -> bool:
    """Whether the calling thread is inside :func:`shielded`."""
    return getattr(_shield, "depth", 0) > 0


def copy_context() -> contextvars.Context:
    """The caller's context, to run a worker thread's job in (it carries the control)."""
    return contextvars.copy_context()
