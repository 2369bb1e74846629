"""The scan engine: ast only, robust on bad files, stable fingerprints, suppressions,
selection, plugin isolation and forward compatibility."""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import pytest

from pipetune import hookimpl
from pipetune.core.kernel.errors import ConfigError, DuplicateError
from pipetune.core.kernel.manager import get_plugin_manager
from pipetune.scan import Finding, Rule, ScanOptions, collect_rules, scan, scan_source
from pipetune.testing import make_plugin_manager

USE_CACHE_OFF = "out = model.generate(x, use_cache=False)\n"


@pytest.fixture(scope="module")
def builtin_pm():
    return get_plugin_manager(entry_points=False)


def _write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_scanned_code_is_never_imported_or_run(tmp_path, builtin_pm):
    marker = tmp_path / "ran.txt"
    _write(
        tmp_path,
        "evil_module_xyz.py",
        f"open({str(marker)!r}, 'w').write('ran')\nraise SystemExit(3)\n" + USE_CACHE_OFF,
    )
    result = scan([tmp_path], builtin_pm)
    assert not marker.exists()
    assert "evil_module_xyz" not in sys.modules
    assert [f.rule for f in result.findings] == ["PT-LLM001"]


def test_bad_files_are_reported_and_skipped(tmp_path, builtin_pm):
    _write(tmp_path, "ok.py", USE_CACHE_OFF)
    _write(tmp_path, "broken.py", "def f(:\n")
    _write(
        tmp_path,
        "latin1_declared.py",
        b"# -*- coding: latin-1 -*-\ns = '\xe9'\n" + USE_CACHE_OFF.encode(),
    )
    _write(tmp_path, "latin1_undeclared.py", b"s = '\xe9'\n")
    _write(tmp_path, "nul.py", b"x = 1\x00\n")
    _write(tmp_path, "deep.py", "x = " + "+".join(["1"] * 3000) + "\n" + USE_CACHE_OFF)
    _write(tmp_path, "huge.py", "x = 1\n" * 200_000)
    (tmp_path / "loop").mkdir()
    os.symlink(tmp_path / "loop", tmp_path / "loop" / "again")
    os.symlink(tmp_path / "missing.py", tmp_path / "dangling.py")
    result = scan([tmp_path], builtin_pm, ScanOptions(max_file_size=1024 * 1024))
    reasons = {Path(s.path).name: s.reason for s in result.skipped}
    assert reasons["broken.py"].startswith("syntax error (line 1)")
    assert "not valid UTF-8" in reasons["latin1_undeclared.py"]
    assert "nul.py" in reasons
    assert "limit" in reasons["huge.py"]
    assert reasons["dangling.py"] == "broken symlink"
    assert any("loop" in reason for reason in reasons.values())
    scanned = sorted(Path(f.path).name for f in result.findings)
    assert scanned[:1] == ["deep.py"] or "deep.py" in reasons
    assert "latin1_declared.py" in scanned and "ok.py" in scanned


def test_unreadable_file_is_reported(tmp_path, builtin_pm, monkeypatch):
    _write(tmp_path, "ok.py", USE_CACHE_OFF)
    secret = _write(tmp_path, "secret.py", USE_CACHE_OFF)
    real_open = open

    def fake_open(path, *args, **kwargs):
        if Path(path) == secret:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("pipetune.scan.files.open", fake_open, raising=False)
    result = scan([tmp_path], builtin_pm)
    assert [(Path(s.path).name, s.reason) for s in result.skipped] == [
        ("secret.py", "permission denied")
    ]
    assert len(result.findings) == 1


def test_usage_errors(tmp_path, builtin_pm):
    with pytest.raises(ConfigError, match="no such file"):
        scan([tmp_path / "nope"], builtin_pm)
    (tmp_path / "empty").mkdir()
    _write(tmp_path / "empty", "notes.txt", "hello")
    with pytest.raises(ConfigError, match="no Python files"):
        scan([tmp_path / "empty"], builtin_pm)
    _write(tmp_path, "a.py", USE_CACHE_OFF)
    with pytest.raises(ConfigError, match="unknown rule id or prefix 'PT-NOPE1'"):
        scan([tmp_path / "a.py"], builtin_pm, ScanOptions(select=("PT-NOPE1",)))


def test_fingerprints_survive_line_shifts_and_differ_per_occurrence(builtin_pm):
    code = "def f(model, x):\n    a = model.generate(x, use_cache=False)\n" * 2
    first = scan_source(code, builtin_pm, select=["PT-LLM001"])
    shifted = scan_source("import os\n\n\n" + code, builtin_pm, select=["PT-LLM001"])
    assert [f.line for f in first] == [2, 4] and [f.line for f in shifted] == [5, 7]
    assert [f.fingerprint for f in first] == [f.fingerprint for f in shifted]
    assert first[0].fingerprint != first[1].fingerprint
    assert scan_source(code, builtin_pm, select=["PT-LLM001"]) == first  # deterministic


def test_inline_suppressions(builtin_pm):
    code = (
        "a = m.generate(x, use_cache=False)  # pipetune: ignore[PT-LLM001]\n"
        "b = m.generate(x, use_cache=False)  # pipetune: ignore[PT-LLM]\n"
        "c = m.generate(x, use_cache=False)  # pipetune: ignore\n"
        "d = m.generate(x, use_cache=False)  # pipetune: ignore[PT-NLP001]\n"
        "e = m.generate(x, use_cache=False, note='# pipetune: ignore')\n"
    )
    found = scan_source(code, builtin_pm, select=["PT-LLM001"])
    assert [f.line for f in found] == [4, 5]


def test_select_ignore_prefixes_names_and_min_confidence(builtin_pm):
    code = "import faiss\nindex = faiss.IndexFlatIP(8)\n" + USE_CACHE_OFF
    rules = lambda **kw: sorted({f.rule for f in scan_source(code, builtin_pm, **kw)})  # noqa: E731
    assert rules() == ["PT-LLM001", "PT-REC002"]
    assert rules(select=["PT-REC"]) == ["PT-REC002"]
    assert rules(select=["generate-without-kv-cache"]) == ["PT-LLM001"]
    assert rules(ignore=["PT-LLM"]) == ["PT-REC002"]
    assert rules(select=["PT-LLM", "PT-REC"], ignore=["PT-LLM001"]) == ["PT-REC002"]
    assert rules(min_confidence=0.8) == ["PT-LLM001"]


def _raising_check(node, ctx):
    raise ValueError("boom")


def _fine_check(node, ctx):
    return ctx.finding(node, "print called")


class ThirdParty:
    PIPETUNE_API = 1

    @hookimpl
    def scan_rules(self):
        return [
            Rule(
                id="ACME001",
                name="raises",
                summary="raises",
                proposal="acme.fix",
                node_types=(ast.Call,),
                check=_raising_check,
            ),
            Rule(
                id="ACME002",
                name="prints",
                summary="prints",
                proposal="acme.fix",
                node_types=(ast.Call,),
                call_names=frozenset({"print"}),
                check=_fine_check,
            ),
        ]

    @hookimpl
    def scan_file(self, path):
        if path.name == "b.py":
            raise RuntimeError("whole-file boom")


def test_a_raising_third_party_rule_is_reported_and_the_scan_goes_on(tmp_path):
    _write(tmp_path, "a.py", "print(1)\nprint(2)\n" + USE_CACHE_OFF)
    _write(tmp_path, "b.py", "print(3)\n")
    pm = make_plugin_manager(
        ("acme", ThirdParty()), builtins=True, strict=False, disable=["hardware"]
    )
    result = scan([tmp_path], pm)
    rules = sorted((Path(f.path).name, f.rule) for f in result.findings)
    assert rules == [
        ("a.py", "ACME002"),
        ("a.py", "ACME002"),
        ("a.py", "PT-LLM001"),
        ("b.py", "ACME002"),
    ]
    described = [p.describe() for p in result.problems]
    assert any("'acme' rule ACME001 on" in d and "a.py:1" in d and "boom" in d for d in described)
    assert any(
        "'acme' scan_file on " in d and "b.py" in d and "whole-file boom" in d for d in described
    )
    assert sum("ACME001" in d for d in described) == 2  # once per file, not once per node


class NewerRule:
    """A rule object from a plugin built against a future pipetune (not our Rule class)."""

    id = "FUT001"
    name = "from-the-future"
    summary = "future"
    proposal = "future.fix"
    api = 99
    node_types = (ast.Call,)

    @staticmethod
    def check(node, ctx):
        return None


class DuckRule:
    """Same attributes as Rule, another class (another pipetune release), plus an extra."""

    id = "DUCK001"
    name = "duck"
    summary = "duck-typed rule"
    proposal = "duck.fix"
    node_types = (ast.Call,)
    call_names = frozenset({"print"})
    extra_attribute_from_a_newer_release = True

    @staticmethod
    def check(node, ctx):
        return ctx.finding(node, "quack")


class MixedPlugin:
    @hookimpl
    def scan_rules(self):
        return [NewerRule(), DuckRule(), object()]


def test_forward_compatibility_of_rule_objects(tmp_path):
    pm = make_plugin_manager(("mixed", MixedPlugin()), strict=False)
    ruleset = collect_rules(pm)
    assert sorted(ruleset.rules) == ["DUCK001"]
    messages = " | ".join(p.describe() for p in ruleset.problems)
    assert "FUT001" in messages and "plugin API 99" in messages and "'mixed'" in messages
    assert "not a pipetune Rule" in messages
    _write(tmp_path, "a.py", "print(1)\n")
    assert [f.rule for f in scan([tmp_path], pm).findings] == ["DUCK001"]


def test_duplicate_rule_ids_name_both_plugins():
    class Copy:
        @hookimpl
        def scan_rules(self):
            return [Rule(id="PT-LLM001", name="copy", summary="s", proposal="x.y")]

    pm = make_plugin_manager(("copycat", Copy()), builtins=True)
    with pytest.raises(DuplicateError, match=r"'llm' and 'copycat'|'copycat' and 'llm'"):
        collect_rules(pm)


def test_hooks_take_a_subset_of_arguments():
    class Minimal:
        @hookimpl
        def scan_rules(self):
            return [Rule(id="MIN001", name="m", summary="s", proposal="min.fix")]

        @hookimpl
        def scan_file(self, tree):
            return [Finding(rule="MIN001", path="", line=1, message=f"{len(tree.body)} stmts")]

    found = scan_source("x = 1\ny = 2\n", make_plugin_manager(("minimal", Minimal())))
    assert [(f.rule, f.message, f.plugin, f.proposal) for f in found] == [
        ("MIN001", "2 stmts", "minimal", "min.fix")
    ]


def test_invalid_rules_are_refused_with_the_reason():
    from pipetune.scan.rules import RuleError

    with pytest.raises(RuleError, match="id must look like"):
        Rule(id="lower1", name="x", summary="s", proposal="a.b")
    with pytest.raises(RuleError, match="severity"):
        Rule(id="X1", name="x", summary="s", proposal="a.b", severity="fatal")
    with pytest.raises(RuleError, match="needs a check"):
        Rule(id="X1", name="x", summary="s", proposal="a.b", node_types=(ast.Call,))


@pytest.mark.slow
def test_parallel_jobs_give_the_same_findings(tmp_path, builtin_pm):
    for i in range(6):
        _write(tmp_path, f"m{i}.py", "import faiss\nindex = faiss.IndexFlatL2(8)\n" * (i + 1))
    one = scan([tmp_path], builtin_pm, ScanOptions(jobs=1), root=tmp_path)
    two = scan([tmp_path], builtin_pm, ScanOptions(jobs=2), root=tmp_path)
    assert two.jobs == 2 and not two.notes
    assert [f.to_dict() for f in one.findings] == [f.to_dict() for f in two.findings]
    assert (one.files, one.lines) == (two.files, two.lines)


def test_parallel_falls_back_for_plugins_that_are_not_modules(tmp_path):
    for i in range(3):
        _write(tmp_path, f"m{i}.py", "print(1)\n")
    pm = make_plugin_manager(("mixed", MixedPlugin()), strict=False)
    result = scan([tmp_path], pm, ScanOptions(jobs=2))
    assert result.jobs == 1 and "not an importable module" in result.notes[0]
    assert len(result.findings) == 3
