"""``--isolate``: run a command in a child process, so that user code ending the process
is a clear error instead of a silent exit.

``sys.exit()`` inside a stage or a hook is caught in-process (a ``StageError`` or a
``PluginError``); ``os._exit()``, a segfault in native code or the OOM killer end the
process with no chance to say anything. With ``--isolate`` the command runs in a child
process that keeps a *breadcrumb* in a small shared file: which stage (or plugin hook) it
is in and on which input, and whether pipetune itself reached its verdict. When the child
ends without a verdict, the parent reports how it ended and where.

The breadcrumb is a memory-mapped file of :data:`SIZE` bytes: byte 0 is 1 once the
child's pipetune reached its verdict; bytes 8-16 the input index (-1: none); bytes 16-18
the length of the UTF-8 place name that follows. Writing it costs about a microsecond per
stage call, and only with ``--isolate``.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: The environment variable naming the child's breadcrumb file.
ENV = "PIPETUNE_ISOLATE_BREADCRUMB"
SIZE = 512
_NAME_AT = 18
_NAME_MAX = SIZE - _NAME_AT

_mm: mmap.mmap | None = None
_lock = threading.Lock()


def enable(path: str | Path) -> None:
    """In the child: map the breadcrumb file (created by the parent)."""
    global _mm
    with open(path, "r+b") as handle:
        _mm = mmap.mmap(handle.fileno(), SIZE)


def enable_from_env() -> None:
    path = os.environ.get(ENV)
    if path and _mm is None:
        with contextlib.suppress(OSError, ValueError):  # no breadcrumb: the parent says less
            enable(path)


def _mark(place: str, index: int | None) -> None:
    mm = _mm
    if mm is None:
        return
    name = place.encode("utf-8", "replace")[:_NAME_MAX]
    with _lock:
        mm[8:16] = struct.pack("<q", -1 if index is None else index)
        mm[16:_NAME_AT] = struct.pack("<H", len(name))
        mm[_NAME_AT : _NAME_AT + len(name)] = name


def marker() -> Callable[[str, int | None], None] | None:
    """The function that records where the process is, or ``None`` when not isolated
    (callers skip the call entirely then)."""
    return _mark if _mm is not None else None


def mark(place: str, index: int | None = None) -> None:
    """Record ``place`` (a stage, a plugin hook) and the input index, when isolated."""
    if _mm is not None:
        _mark(place, index)


def reached_verdict() -> None:
    """In the child: pipetune decided the exit status itself (any status)."""
    mm = _mm
    if mm is not None:
        mm[0:1] = b"\x01"
        mm.flush()


@dataclass(frozen=True)
class Breadcrumb:
    """What the child left: whether it reached its verdict, and where it was."""

    verdict: bool
    place: str
    index: int | None

    def where(self) -> str:
        if not self.place:
            return ""
        on = f" on input #{self.index}" if self.index is not None else ""
        return f" while in {self.place}{on}"


def new_breadcrumb(folder: str | Path | None = None) -> Path:
    """In the parent: create a zeroed breadcrumb file; the caller removes it."""
    import tempfile

    handle, name = tempfile.mkstemp(prefix="pipetune-isolate-", dir=folder)
    with os.fdopen(handle, "wb") as file:
        file.write(b"\0" * SIZE)
    return Path(name)


def read_breadcrumb(path: str | Path) -> Breadcrumb:
    data = Path(path).read_bytes().ljust(SIZE, b"\0")
    (index,) = struct.unpack("<q", data[8:16])
    (length,) = struct.unpack("<H", data[16:_NAME_AT])
    place = data[_NAME_AT : _NAME_AT + min(length, _NAME_MAX)].decode("utf-8", "replace")
    return Breadcrumb(data[0] == 1, place, None if index < 0 or not place else index)
