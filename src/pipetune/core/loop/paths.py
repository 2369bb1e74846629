"""Where pipetune keeps things: the run store (per project) and the cache (per user)."""

from __future__ import annotations

import os
from pathlib import Path

STORE_ENV = "PIPETUNE_HOME"
CACHE_ENV = "PIPETUNE_CACHE"


def store_dir(base: str | Path | None = None) -> Path:
    """The project's run store folder: ``$PIPETUNE_HOME`` or ``./.pipetune``."""
    if base is not None:
        return Path(base)
    return Path(os.environ.get(STORE_ENV) or Path.cwd() / ".pipetune")


def cache_dir(*parts: str) -> Path:
    """A per-user cache folder for expensive set-up (converted models, trained demo heads,
    generated data): ``$PIPETUNE_CACHE`` or ``~/.cache/pipetune``. Created on demand."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "pipetune")
    folder = root.joinpath(*parts)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
