"""Scan reports: ``text`` for people, ``json`` for scripts, ``sarif`` for code scanning."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipetune.scan.engine import ScanResult

FORMATS = ("text", "json", "sarif")


def render(result: ScanResult, fmt: str) -> str:
    """The report of ``result`` in format ``fmt`` (one of :data:`FORMATS`)."""
    renderer: Callable[[ScanResult], str]
    if fmt == "text":
        from pipetune.scan.output.text import render_text as renderer
    elif fmt == "json":
        from pipetune.scan.output.json import render_json as renderer
    elif fmt == "sarif":
        from pipetune.scan.output.sarif import render_sarif as renderer
    else:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    return renderer(result)
