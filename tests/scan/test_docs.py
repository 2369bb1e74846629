"""docs/scan.md documents every built-in rule (generated from the rules) and the CI recipe
uploads SARIF."""

from __future__ import annotations

import re
from pathlib import Path

from pipetune.core.kernel.manager import get_plugin_manager
from pipetune.scan.docgen import update
from pipetune.scan.ruleset import collect_rules

ROOT = Path(__file__).resolve().parents[2]


def test_rule_reference_is_up_to_date():
    assert not update(ROOT / "docs" / "scan.md", check=True), (
        "docs/scan.md is out of date: python -m pipetune.scan.docgen docs/scan.md"
    )


def test_every_rule_has_an_entry_with_its_proposal():
    text = (ROOT / "docs" / "scan.md").read_text()
    rules = collect_rules(get_plugin_manager(entry_points=False)).rules
    assert len(rules) >= 15
    for rule_id, loaded in rules.items():
        entry = text.split(f"### {rule_id}\n", 1)[1].split("###", 1)[0]
        assert f"`{loaded.rule.proposal}`" in entry
        assert "Why it is slow:" in entry and "Measured effect:" in entry


def test_rules_map_to_proposal_ids_their_plugins_emit():
    """Each rule names a real proposal id (grepped from the plugins' sources)."""
    source = "\n".join(p.read_text() for p in (ROOT / "src/pipetune/plugins").rglob("*.py"))
    emitted = set(re.findall(r'"((?:generic|recsys|nlp|vision|llm|hardware)\.[a-z_]+)"', source))
    emitted |= {f"generic.{n}" for n in re.findall(r'f"\{PLUGIN\}\.([a-z_]+)"', source)}
    rules = collect_rules(get_plugin_manager(entry_points=False)).rules
    for loaded in rules.values():
        assert loaded.rule.proposal in emitted, loaded.rule.proposal


def test_ci_recipe_runs_scan_and_uploads_sarif():
    text = (ROOT / "docs" / "ci.md").read_text()
    assert "pipetune scan . --format sarif -o pipetune.sarif" in text
    assert "github/codeql-action/upload-sarif" in text
    assert "security-events: write" in text


def test_the_tutorials_scan_rule_example_runs():
    text = (ROOT / "docs" / "writing-plugins.md").read_text()
    block = re.search(r"<!-- test: scan-rule-example -->\n```python\n(.*?)\n```", text, re.S)
    assert block, "the scan rule example is missing from docs/writing-plugins.md"
    exec(compile(block.group(1), "writing-plugins.md", "exec"), {"__name__": "tutorial"})


def test_the_tutorial_covers_scan_rules_and_the_scaffold():
    text = (ROOT / "docs" / "writing-plugins.md").read_text()
    assert "## 7. Scan rules" in text and "## 8. Start from a scaffold" in text
    assert "pipetune plugins new" in text
