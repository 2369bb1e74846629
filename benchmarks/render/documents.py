"""Render every generated block of the documents, or check that they agree with the results.

The documents are ``README.md`` and every Markdown file under ``docs/``. A block whose name
no renderer knows is an error (a typo would otherwise leave a stale figure in place).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.render import blocks
from benchmarks.render.registry import BLOCKS, Results

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Disagreement:
    """A block whose text is not what the results render."""

    path: str
    block: str
    line: int
    sources: str

    def __str__(self) -> str:
        return (
            f"{self.path}:{self.line}: block {self.block!r} disagrees with {self.sources} "
            "(run: python -m benchmarks.render)"
        )


def documents(root: Path = ROOT) -> Iterator[Path]:
    """README.md and every Markdown file under docs/, in a stable order."""
    readme = root / "README.md"
    if readme.is_file():
        yield readme
    yield from sorted((root / "docs").rglob("*.md"))


def render_all(results: Results) -> dict[str, str]:
    """Every registered block rendered from ``results``."""
    _load_areas()
    return {name: renderer.render(results) for name, renderer in sorted(BLOCKS.items())}


def update(
    root: Path = ROOT, results: Results | None = None, *, check: bool = False
) -> list[Disagreement]:
    """Rewrite every generated block under ``root`` from ``results`` (default: the
    repository's ``benchmarks/results``); with ``check``, write nothing. Returns the
    blocks that disagreed (were rewritten, or would be)."""
    results = results or Results()
    rendered = render_all(results)
    disagreements = []
    for path in documents(root):
        text = path.read_text()
        relative = path.relative_to(root).as_posix()
        found = blocks.find(text, relative)
        if not found:
            continue
        unknown = [block for block in found if block.name not in rendered]
        if unknown:
            raise blocks.BlockError(
                f"{relative}:{unknown[0].line}: no renderer for block {unknown[0].name!r} "
                f"(known: python -m benchmarks.render --list)"
            )
        for block in found:
            if block.content != blocks.framed(block, rendered[block.name]):
                sources = BLOCKS[block.name].source_text
                disagreements.append(Disagreement(relative, block.name, block.line, sources))
        new = blocks.replace(text, found, rendered)
        if new != text and not check:
            path.write_text(new)
    return disagreements


def where_used(root: Path = ROOT) -> dict[str, list[str]]:
    """Each registered block and the documents that hold it."""
    _load_areas()
    used: dict[str, list[str]] = {name: [] for name in BLOCKS}
    for path in documents(root):
        relative = path.relative_to(root).as_posix()
        for block in blocks.find(path.read_text(), relative):
            used.setdefault(block.name, []).append(f"{relative}:{block.line}")
    return used


def _load_areas() -> None:
    """Import every area's renderers (each registers its blocks on import)."""
    from benchmarks.render import areas  # noqa: F401
