"""Every built-in plugin follows the same layout and registers its changes and output
kinds through the contract: one owner per output kind, one module per change type,
``plugin.py`` holding thin hook implementations only."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from pipetune.core.kernel.manager import BUILTIN_PLUGINS, get_plugin_manager
from pipetune.core.kernel.model import OUTPUT_KINDS

PLUGINS = Path(__file__).resolve().parents[2] / "src" / "pipetune" / "plugins"
NAMES = [name for name, _ in BUILTIN_PLUGINS]
#: The longest a hook implementation in plugin.py may be (a registration list included).
THIN = 25

OWNERS = {
    "labels": "generic",
    "tensor": "generic",
    "any": "generic",
    "ranked_ids": "recsys",
    "token_ids": "nlp",
    "tokens": "llm",
    "frame_labels": "vision",
    "image": "vision",
    "masks": "vision",
}


@pytest.fixture(scope="module")
def builtins():
    return get_plugin_manager(entry_points=False, strict=True)


def test_each_builtin_output_kind_has_its_one_owner(builtins):
    kinds = builtins.output_kinds()
    assert {name: kind.owner for name, kind in kinds.items()} == OWNERS
    assert set(OWNERS) == set(OUTPUT_KINDS)


def test_builtin_change_types_are_typed_and_live_one_per_module(builtins):
    types = builtins.change_types()
    assert len(types) >= 30
    for change_id, change in types.items():
        owner = change_id.partition(".")[0]
        assert change.owner == owner and change.version >= 1
        assert dataclasses.is_dataclass(change.params), change_id
        module = change.materialize.__module__
        assert module.startswith(f"pipetune.plugins.{owner}.changes."), (change_id, module)
    for owner in NAMES:
        assert any(c.owner == owner for c in types.values()), owner


@pytest.mark.parametrize("name", NAMES)
def test_the_plugin_is_laid_out_like_the_others(name):
    folder = PLUGINS / name
    for module in ("plugin.py", "recognize.py", "facts.py", "proposals.py", "scan_rules.py"):
        assert (folder / module).is_file(), f"{name}/{module}"
    assert (folder / "changes" / "__init__.py").is_file(), f"{name}/changes/"


@pytest.mark.parametrize("name", NAMES)
def test_plugin_py_holds_thin_hook_implementations_only(name):
    tree = ast.parse((PLUGINS / name / "plugin.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            decorators = [ast.unparse(d).split("(")[0] for d in node.decorator_list]
            assert "hookimpl" in decorators, f"{name}/plugin.py: {node.name} is not a hook"
            length = node.end_lineno - node.lineno + 1
            assert length <= THIN, f"{name}/plugin.py: {node.name} is {length} lines"
