"""The renderers and the results they read.

Each area module registers its blocks with :func:`block`: a name (what the documents'
markers say), the results files it reads, and a function from :class:`Results` to
Markdown. :class:`Results` loads ``benchmarks/results/<area>.json`` once each and hands
out sections; a missing file or section is ``None``, never an error (the cell then says
the figure is pending), while a file that is not JSON is an error naming it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results"


class ResultsError(ValueError):
    """A results file that cannot be read (the message names it)."""


class Results:
    """The JSON files of one results folder, loaded on first use."""

    def __init__(self, folder: Path = RESULTS) -> None:
        self.folder = folder
        self._loaded: dict[str, dict[str, Any]] = {}

    def area(self, name: str) -> dict[str, Any]:
        """``<name>.json`` as a dict (empty when the file does not exist)."""
        if name not in self._loaded:
            path = self.folder / f"{name}.json"
            data: Any = {}
            if path.is_file():
                try:
                    data = json.loads(path.read_text())
                except ValueError as exc:
                    raise ResultsError(f"{path}: not valid JSON ({exc})") from None
            if not isinstance(data, dict):
                raise ResultsError(f"{path}: expected a JSON object of sections")
            self._loaded[name] = data
        return self._loaded[name]

    def section(self, area: str, key: str, *, flat: bool = False) -> dict[str, Any] | None:
        """One section of an area's file. ``flat``: the file may predate sections (one
        benchmark's keys at the top, with a ``benchmark`` key), then it is the section."""
        data = self.area(area)
        found = data.get(key)
        if isinstance(found, dict):
            return found
        if flat and "benchmark" in data:
            return data
        return None


@dataclass(frozen=True)
class Renderer:
    """A block's renderer: its name, the results files it reads, its function."""

    name: str
    sources: tuple[str, ...]
    render: Callable[[Results], str]

    @property
    def source_text(self) -> str:
        return ", ".join(f"benchmarks/results/{name}.json" for name in self.sources)


BLOCKS: dict[str, Renderer] = {}


def block(name: str, *sources: str) -> Callable[[Callable[[Results], str]], Callable]:
    """Register ``fn(results) -> markdown`` as the renderer of block ``name``, reading
    ``benchmarks/results/<source>.json`` for each source."""

    def register(fn: Callable[[Results], str]) -> Callable[[Results], str]:
        if name in BLOCKS:
            raise ValueError(f"block {name!r} is registered twice")
        BLOCKS[name] = Renderer(name, sources, fn)
        return fn

    return register


@dataclass(frozen=True)
class Effect:
    """A scan rule's measured effect: what was measured, the command, the renderer of the
    figure (a cell) and the results it reads."""

    rule: str
    what: str
    command: str
    sources: tuple[str, ...]
    render: Callable[[Results], str]


EFFECTS: dict[str, Effect] = {}


def effect(rule: str, what: str, command: str, *sources: str) -> Callable:
    """Register ``fn(results) -> cell`` as the measured effect of scan rule ``rule``."""

    def register(fn: Callable[[Results], str]) -> Callable[[Results], str]:
        EFFECTS[rule] = Effect(rule, what, command, sources, fn)
        return fn

    return register
