"""docs/writing-plugins.md shows the example plugin's real code, verbatim.

Every code block preceded by ``<!-- from: PATH -->`` must appear exactly in PATH, so the
tutorial's code is the code that the example plugin's tests (run in this suite) exercise.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "writing-plugins.md"
BLOCK = re.compile(r"<!-- from: (\S+) -->\n```\w*\n(.*?)\n```", re.DOTALL)


def _blocks() -> list[tuple[str, str]]:
    return BLOCK.findall(DOC.read_text())


def test_the_tutorial_quotes_the_plugin():
    files = {path for path, _ in _blocks()}
    assert "examples/pipetune-example-plugin/pyproject.toml" in files
    assert "examples/pipetune-example-plugin/src/pipetune_example_plugin/plugin.py" in files
    assert "examples/pipetune-example-plugin/tests/test_plugin.py" in files


@pytest.mark.parametrize(("path", "code"), _blocks(), ids=lambda v: v[:40] if len(v) < 80 else "")
def test_quoted_code_is_verbatim(path: str, code: str):
    source = (ROOT / path).read_text()
    assert code in source, f"docs/writing-plugins.md quotes code that is not in {path}:\n{code}"


def test_every_hook_the_plugin_implements_is_explained():
    tree = ast.parse(
        (
            ROOT / "examples/pipetune-example-plugin/src/pipetune_example_plugin/plugin.py"
        ).read_text()
    )
    hooks = [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any(ast.unparse(d) == "hookimpl" for d in node.decorator_list)
    ]
    text = DOC.read_text()
    assert hooks
    for hook in hooks:
        assert f"`{hook}`" in text, hook


def test_the_stop_word_count_quoted_is_right():
    tree = ast.parse((ROOT / "examples" / "text_classify.py").read_text())
    literal = next(
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "_STOPWORD_TEXT"
    )
    words = list(dict.fromkeys(ast.literal_eval(literal).split()))
    count = len([w for w in words if w not in ("not", "never", "no")])
    assert f"{count}-word stop-word list" in DOC.read_text()
