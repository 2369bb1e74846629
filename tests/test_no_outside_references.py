"""The repository explains itself: no source file, schema, doc or test sends the reader to
a design document that is not in the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WHERE = ("src", "docs", "tests", "examples", "benchmarks")
SUFFIXES = {".py", ".md", ".json", ".toml", ".txt", ".html"}
#: Spelled in two parts so that this file does not match itself.
FORBIDDEN = ("DESIGN " + "§", "shared/" + "DESIGN")


def _files() -> list[Path]:
    found = [ROOT / "README.md", ROOT / "CONTRIBUTING.md"]
    for top in WHERE:
        found += [p for p in (ROOT / top).rglob("*") if p.suffix in SUFFIXES and p.is_file()]
    return [p for p in found if p.is_file() and "results" not in p.parts]


@pytest.mark.parametrize("needle", FORBIDDEN)
def test_nothing_cites_a_document_outside_the_repository(needle: str) -> None:
    hits = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in _files()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if needle in line
    ]
    assert not hits, f"{needle!r} cited at: {', '.join(hits)}"
