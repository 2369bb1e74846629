"""docs/hooks.md stays in step with core/kernel/hookspecs.py (datasette-style).

Every hookspec must be documented under a ``### `name` `` heading with a ``def`` block whose
parameters, annotations and return annotation match ``inspect.signature`` of the spec, and
a "**Called:**" line that agrees with ``firstresult``; the doc must not document hooks that
do not exist.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from pipetune.core.kernel import hookspecs

DOC = Path(__file__).resolve().parents[1] / "docs" / "hooks.md"
SECTION = re.compile(r"^### `(\w+)`\n(.*?)(?=^##|\Z)", re.MULTILINE | re.DOTALL)
CODE = re.compile(r"```python\n(def .*?)\n```", re.DOTALL)


def _specs() -> dict[str, object]:
    return {
        name: fn
        for name, fn in vars(hookspecs).items()
        if getattr(fn, f"{hookspecs.PROJECT_NAME}_spec", None) is not None
    }


def _sections() -> dict[str, str]:
    return {name: body for name, body in SECTION.findall(DOC.read_text())}


def _normalize(annotation: str) -> str:
    return ast.unparse(ast.parse(annotation, mode="eval"))


def _documented_signature(body: str) -> tuple[list[tuple[str, str | None]], str | None]:
    match = CODE.search(body)
    assert match, "no ```python def ...``` block"
    tree = ast.parse(match.group(1).strip() + ": ...")
    fn = tree.body[0]
    assert isinstance(fn, ast.FunctionDef)
    params = [(a.arg, ast.unparse(a.annotation) if a.annotation else None) for a in fn.args.args]
    returns = ast.unparse(fn.returns) if fn.returns else None
    return params, returns


def test_every_hook_is_documented_and_nothing_else():
    assert set(_sections()) == set(_specs())


@pytest.mark.parametrize("name", sorted(_specs()))
def test_signature_matches_the_hookspec(name):
    spec = _specs()[name]
    signature = inspect.signature(spec)
    documented, returns = _documented_signature(_sections()[name])
    actual = [
        (p.name, _normalize(p.annotation) if p.annotation is not inspect.Parameter.empty else None)
        for p in signature.parameters.values()
    ]
    assert documented == actual, f"{name}: docs/hooks.md {documented} != hookspec {actual}"
    assert returns == _normalize(signature.return_annotation)


@pytest.mark.parametrize("name", sorted(_specs()))
def test_call_semantics_match_firstresult(name):
    body = _sections()[name]
    called = re.search(r"\*\*Called:\*\* ([^.\n]*)", body)
    assert called, f"{name}: no **Called:** line"
    firstresult = getattr(_specs()[name], f"{hookspecs.PROJECT_NAME}_spec")["firstresult"]
    if firstresult:
        assert called.group(1).startswith(("first result", "owner only")), called.group(1)
    else:
        assert called.group(1).startswith("every plugin"), called.group(1)


def test_summary_table_lists_every_hook():
    text = DOC.read_text()
    table = re.findall(r"^\| \[`(\w+)`\]", text, flags=re.MULTILINE)
    assert sorted(table) == sorted(_specs())


def test_documented_api_version_is_current():
    assert f"currently **{hookspecs.API_VERSION}**" in DOC.read_text()
