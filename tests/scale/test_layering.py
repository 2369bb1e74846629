"""The core never depends on the scale package (it sits above the core)."""

from __future__ import annotations

import ast
from pathlib import Path

import pipetune

CORE = Path(pipetune.__file__).parent / "core"


def test_the_core_never_imports_pipetune_scale():
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.startswith("pipetune.scale")]
    assert not offenders
