"""Content-addressed artifacts (a built index, an exported model) beside the run store.

An artifact's key is a hash of its inputs and the library versions that built it, so a
recipe reloads the artifact instead of rebuilding it, and a library upgrade never reuses a
stale one.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path
from typing import Any

import numpy as np


def library_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


class ArtifactStore:
    """A folder of artifacts, one sub-folder per key."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def key(self, *parts: Any, libraries: tuple[str, ...] = ()) -> str:
        """A stable key for ``parts`` (arrays hashed by content) and library versions."""
        digest = hashlib.sha256()
        for part in parts:
            digest.update(_fingerprint(part))
            digest.update(b"\x00")
        for name in libraries:
            digest.update(f"{name}=={library_version(name)}".encode())
        return digest.hexdigest()[:24]

    def folder(self, key: str) -> Path:
        folder = self.root / key
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def path(self, key: str, filename: str) -> Path:
        return self.folder(key) / filename

    def relative(self, path: str | Path) -> str:
        return Path(path).resolve().relative_to(self.root.resolve()).as_posix()

    def resolve(self, relative: str) -> Path:
        return self.root / relative

    def exists(self, key: str, filename: str) -> bool:
        return (self.root / key / filename).is_file()


def _fingerprint(part: Any) -> bytes:
    if isinstance(part, np.ndarray):
        array = np.ascontiguousarray(part)
        return f"{array.dtype}{array.shape}".encode() + hashlib.sha256(array.data).digest()
    if isinstance(part, bytes):
        return part
    return repr(part).encode()
