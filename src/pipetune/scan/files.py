"""Finding the Python files to scan, and reading them, without ever crashing on the tree.

Symlink loops, broken links, unreadable folders and files, huge files and files in an
undeclared encoding are *reported and skipped*: a scan over a real repository must finish
and say what it could not read. A path that does not exist is a usage error (the user
mistyped it), and so is a set of paths with no Python file at all.
"""

from __future__ import annotations

import fnmatch
import io
import os
import stat
import tokenize
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipetune.core.kernel.errors import ConfigError

#: Folders never entered when walking a directory (a path given explicitly is scanned).
DEFAULT_EXCLUDE: tuple[str, ...] = (
    ".git",
    ".hg",
    ".svn",
    ".tox",
    ".nox",
    ".venv",
    "venv",
    ".eggs",
    "__pycache__",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    "node_modules",
    "site-packages",
    ".pipetune",
)
#: Files larger than this are skipped (generated tables, vendored blobs): 5 MiB.
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
PYTHON_SUFFIXES = (".py", ".pyw")


@dataclass(frozen=True)
class Skipped:
    """A file or folder that was not scanned, and why."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


def printable(text: str) -> str:
    """``text`` (a path, or a message holding one) safe to print and to write as UTF-8: a
    file name that is not UTF-8 keeps its undecodable bytes as surrogate escapes, shown
    here as ``\\xe9``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def path_bytes(text: str) -> bytes:
    """The file name's own bytes (for a URI that names the real file)."""
    return text.encode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class Discovery:
    files: tuple[Path, ...]
    skipped: tuple[Skipped, ...]


def discover(
    paths: Sequence[str | Path],
    *,
    exclude: Iterable[str] = (),
    default_exclude: Iterable[str] = DEFAULT_EXCLUDE,
) -> Discovery:
    """The Python files under ``paths``, sorted, each once.

    ``exclude`` holds glob patterns matched against a file's or folder's name and against
    its path relative to the scanned folder (``tests/*``, ``*_pb2.py``). Folders in
    ``default_exclude`` are not entered unless given explicitly.

    Raises :class:`ConfigError` (exit code 2) for a path that does not exist, or when no
    Python file is found at all.
    """
    patterns = tuple(exclude)
    skip_dirs = frozenset(default_exclude)
    files: dict[tuple[int, int] | str, Path] = {}
    skipped: list[Skipped] = []
    for raw in paths:
        path = Path(raw)
        if not os.path.lexists(path):
            raise ConfigError(f"{raw}: no such file or directory")
        try:
            info = path.stat()
        except OSError as exc:  # a broken link or a loop given explicitly
            skipped.append(Skipped(str(path), _os_reason(exc)))
            continue
        if stat.S_ISDIR(info.st_mode):
            _walk(path, patterns, skip_dirs, files, skipped)
        elif _excluded(path.name, path.as_posix(), patterns):
            continue
        else:
            files.setdefault(_identity(path, info), path)
    if not files:
        where = ", ".join(str(p) for p in paths)
        also = f" ({len(skipped)} path(s) could not be read)" if skipped else ""
        raise ConfigError(f"no Python files to scan in {where}{also}")
    ordered = sorted(files.values(), key=lambda p: p.as_posix())
    return Discovery(tuple(ordered), tuple(skipped))


def _walk(
    root: Path,
    patterns: tuple[str, ...],
    skip_dirs: frozenset[str],
    files: dict[tuple[int, int] | str, Path],
    skipped: list[Skipped],
) -> None:
    """Iterative, so a deep tree cannot exhaust the stack; each real folder is entered once,
    so a symlink loop is reported instead of followed forever."""
    walker = _Walker(root, patterns, skip_dirs, files, skipped)
    stack = [root]
    while stack:
        entries = walker.entries(stack.pop())
        if entries is None:
            continue
        subfolders = [path for path in map(walker.visit, entries) if path is not None]
        stack.extend(reversed(subfolders))


@dataclass
class _Walker:
    """One :func:`_walk`: its settings, what it found, and the folders it has entered."""

    root: Path
    patterns: tuple[str, ...]
    skip_dirs: frozenset[str]
    files: dict[tuple[int, int] | str, Path]
    skipped: list[Skipped]
    seen: set[tuple[int, int]] = field(default_factory=set)

    def entries(self, folder: Path) -> list[os.DirEntry[str]] | None:
        """The folder's entries by name; ``None`` (noted as skipped) if it cannot be read
        or was entered already (a symlink loop)."""
        try:
            info = folder.stat()
        except OSError as exc:
            self.skipped.append(Skipped(str(folder), _os_reason(exc)))
            return None
        key = (info.st_dev, info.st_ino)
        if key in self.seen:
            self.skipped.append(Skipped(str(folder), "symlink loop (folder already scanned)"))
            return None
        self.seen.add(key)
        try:
            return sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            self.skipped.append(Skipped(str(folder), _os_reason(exc)))
            return None

    def visit(self, entry: os.DirEntry[str]) -> Path | None:
        """Take one entry: return a folder to enter, keep a Python file, note a broken link."""
        path = Path(entry.path)
        relative = path.relative_to(self.root).as_posix()
        try:
            is_dir = entry.is_dir()  # follows symlinks
            is_file = not is_dir and entry.is_file()
        except OSError as exc:
            self.skipped.append(Skipped(str(path), _os_reason(exc)))
            return None
        if is_dir:
            if entry.name in self.skip_dirs or _excluded(entry.name, relative, self.patterns):
                return None
            return path
        if is_file:
            self._keep_file(entry, path, relative)
        elif entry.is_symlink() and entry.name.endswith(PYTHON_SUFFIXES):
            self.skipped.append(Skipped(str(path), "broken symlink"))
        return None

    def _keep_file(self, entry: os.DirEntry[str], path: Path, relative: str) -> None:
        """Keep a Python file no pattern excludes, once per real file (symlinks share one)."""
        if not entry.name.endswith(PYTHON_SUFFIXES):
            return
        if _excluded(entry.name, relative, self.patterns):
            return
        try:
            self.files.setdefault(_identity(path, entry.stat()), path)
        except OSError as exc:
            self.skipped.append(Skipped(str(path), _os_reason(exc)))


def _excluded(name: str, relative: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(relative, p) for p in patterns)


def _identity(path: Path, info: os.stat_result) -> tuple[int, int] | str:
    """The same file reached through two paths (a symlink) is scanned once."""
    if info.st_ino:
        return (info.st_dev, info.st_ino)
    return str(path.resolve())


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    if exc.errno == 40:  # ELOOP
        return "symlink loop"
    if isinstance(exc, FileNotFoundError):
        return "broken symlink or vanished file"
    return exc.strerror or type(exc).__name__


class Unreadable(Exception):
    """A file that cannot be scanned; the message says why (for the skipped list)."""


def read_source(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """The file's text, decoded as Python decodes it (PEP 263 coding cookie, BOM, else
    UTF-8). Raises :class:`Unreadable` with the reason."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > max_bytes:
                raise Unreadable(
                    f"file is {size / 1048576:.1f} MiB, over the {max_bytes / 1048576:g} MiB "
                    "limit (--max-file-size)"
                )
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise Unreadable(_os_reason(exc)) from None
    if len(data) > max_bytes:  # grew while we read it
        raise Unreadable(f"file is over the {max_bytes / 1048576:g} MiB limit (--max-file-size)")
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as exc:  # not UTF-8 without a cookie, or an unknown cookie
        if "invalid or missing" in str(exc.msg):
            raise Unreadable(
                "not valid UTF-8, and no PEP 263 coding declaration says what it is"
            ) from None
        raise Unreadable(f"bad encoding declaration: {exc.msg}") from None
    try:
        text = data.decode(encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        raise Unreadable(f"cannot decode as {encoding}: {exc}") from None
    return text.removeprefix("\ufeff")
