"""Generated blocks in Markdown: find them, and replace their content.

A block is the text between ``<!-- generated: NAME -->`` and ``<!-- /generated -->``. On
one line (inside a table row, say) it is an *inline* block and its content stays on that
line; across lines, its content is whole lines between the two marker lines. Everything
outside the markers is hand-written and never touched.

The vision page's older marker pair (``<!-- BEGIN GENERATED: python -m
benchmarks.vision.report ... -->`` ... ``<!-- END GENERATED -->``) is read as the block
``vision.tables``, so both generators write the same text there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

OPEN = re.compile(r"<!-- generated: ([A-Za-z0-9_.\-]+) -->")
CLOSE = "<!-- /generated -->"
#: Older marker pairs read as named blocks: (opening marker, closing marker, block name).
LEGACY = (
    (
        "<!-- BEGIN GENERATED: python -m benchmarks.vision.report --write "
        "docs/benchmarks/vision.md -->",
        "<!-- END GENERATED -->",
        "vision.tables",
    ),
)


class BlockError(ValueError):
    """A document's markers do not pair up (the message names the file and line)."""


@dataclass(frozen=True)
class Block:
    """One generated block: its name, where its content starts and ends in the text, and
    whether it is inline (on the markers' line) or whole lines."""

    name: str
    start: int
    end: int
    inline: bool
    line: int
    legacy: bool = False
    content: str = field(default="", compare=False, repr=False)


def find(text: str, where: str) -> list[Block]:
    """Every block in ``text`` (``where`` names the file in errors), in order."""
    found: list[Block] = []
    position = 0
    while match := OPEN.search(text, position):
        close = text.find(CLOSE, match.end())
        nested = OPEN.search(text, match.end())
        line = text.count("\n", 0, match.start()) + 1
        if close < 0:
            raise BlockError(f"{where}:{line}: block {match.group(1)!r} is never closed")
        if nested and nested.start() < close:
            raise BlockError(
                f"{where}:{line}: block {match.group(1)!r} is not closed before the next one"
            )
        found.append(_block(text, match.group(1), match.end(), close, line, legacy=False))
        position = close + len(CLOSE)
    stray = text.find(CLOSE, position)
    if stray >= 0 and not found:
        line = text.count("\n", 0, stray) + 1
        raise BlockError(f"{where}:{line}: a closing marker without its opening one")
    for opening, closing, name in LEGACY:
        start = text.find(opening)
        if start < 0:
            continue
        end = text.find(closing, start + len(opening))
        line = text.count("\n", 0, start) + 1
        if end < 0:
            raise BlockError(f"{where}:{line}: block {name!r} is never closed")
        found.append(_block(text, name, start + len(opening), end, line, legacy=True))
    return sorted(found, key=lambda block: block.start)


def _block(text: str, name: str, start: int, end: int, line: int, *, legacy: bool) -> Block:
    content = text[start:end]
    return Block(name, start, end, "\n" not in content, line, legacy, content)


def framed(block: Block, rendered: str) -> str:
    """The content a block gets for ``rendered``: one line inline; whole lines otherwise
    (the vision report's own framing for its older markers)."""
    if block.inline:
        return " ".join(rendered.split("\n")).strip()
    if block.legacy:  # as ``benchmarks.vision.report --write`` frames it
        return f"\n\n{rendered}\n"
    return f"\n{rendered.strip(chr(10))}\n"


def replace(text: str, blocks: list[Block], rendered: Mapping[str, str]) -> str:
    """``text`` with each block's content replaced by its rendering (blocks not in
    ``rendered`` are left as they are)."""
    out, position = [], 0
    for block in blocks:
        if block.name not in rendered:
            continue
        out.append(text[position : block.start])
        out.append(framed(block, rendered[block.name]))
        position = block.end
    out.append(text[position:])
    return "".join(out)
