"""``pipetune scan``: exit codes, formats (SARIF validated against the schema), config."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest

DATA = Path(__file__).resolve().parents[1] / "scan" / "data"
HIT = "out = model.generate(x, use_cache=False)\n"
NOTE_ONLY = (
    "import torch\nfrom concurrent.futures import ProcessPoolExecutor\n"
    "pool = ProcessPoolExecutor(2)\n"
)


def _project(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_exit_codes(invoke, tmp_path, monkeypatch):
    monkeypatch.chdir(_project(tmp_path, {"dirty.py": HIT, "clean.py": "x = 1\n"}))
    assert invoke("scan", "clean.py").exit_code == 0
    result = invoke("scan", "dirty.py")
    assert result.exit_code == 1
    assert "dirty.py:1:7: PT-LLM001 [warning, high confidence]" in result.output
    assert "(fix: llm.kv_cache)" in result.output
    assert invoke("scan", "dirty.py", "--fail-on", "error").exit_code == 0
    assert invoke("scan", "dirty.py", "--fail-on", "never").exit_code == 0
    assert invoke("scan", "dirty.py", "--ignore", "PT-LLM").exit_code == 0


def test_notes_do_not_fail_by_default(invoke, tmp_path, monkeypatch):
    monkeypatch.chdir(_project(tmp_path, {"pool.py": NOTE_ONLY}))
    result = invoke("scan", "pool.py")
    assert result.exit_code == 0 and "PT-HW002 [note" in result.output
    assert invoke("scan", "pool.py", "--fail-on", "note").exit_code == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("missing_dir",), "missing_dir: no such file or directory"),
        (("empty",), "no Python files to scan in empty"),
        (("dirty.py", "--select", "PT-NOPE"), "unknown rule id or prefix 'PT-NOPE'"),
        (("dirty.py", "--fail-on", "sometimes"), "Invalid value for '--fail-on'"),
    ],
)
def test_usage_errors_exit_2(invoke, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(_project(tmp_path, {"dirty.py": HIT, "empty/README.md": "hi"}))
    result = invoke("scan", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_json_report(invoke, tmp_path, monkeypatch):
    monkeypatch.chdir(_project(tmp_path, {"pkg/a.py": HIT, "pkg/bad.py": "def (:\n"}))
    result = invoke("scan", "pkg", "--format", "json", "-o", "report.json")
    assert result.exit_code == 1
    report = json.loads((tmp_path / "report.json").read_text())
    (finding,) = report["findings"]
    assert finding["path"] == "pkg/a.py" and finding["proposal"] == "llm.kv_cache"
    assert finding["plugin"] == "llm" and len(finding["fingerprint"]) == 32
    assert report["summary"]["files"] == 1 and report["summary"]["skipped"] == 1
    assert report["skipped"][0]["path"] == "pkg/bad.py"
    assert {r["id"] for r in report["rules"]} >= {"PT-LLM001", "PT-NLP001", "PT-VIS001"}
    assert "skipped pkg/bad.py: syntax error" in result.output  # stderr


def _sarif(invoke, *args: str) -> dict:
    result = invoke("scan", *args, "--format", "sarif")
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def test_sarif_is_valid_and_deduplicable(invoke, tmp_path, monkeypatch):
    code = "import faiss\nindex = faiss.IndexFlatIP(64)\n" + HIT
    monkeypatch.chdir(_project(tmp_path, {"src/app.py": code, "src/broken.py": "def (:\n"}))
    log = _sarif(invoke, "src")
    schema = json.loads((DATA / "sarif-2.1.0-subset.schema.json").read_text())
    jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker()).validate(log)
    official = os.environ.get("PIPETUNE_SARIF_SCHEMA")
    if official:  # the full OASIS schema, where a copy is available
        full = json.loads(Path(official).read_text())
        jsonschema.validate(log, full, cls=jsonschema.Draft7Validator)
    run = log["runs"][0]
    assert log["version"] == "2.1.0"
    rules = run["tool"]["driver"]["rules"]
    results = run["results"]
    assert [r["ruleId"] for r in results] == ["PT-REC002", "PT-LLM001"]
    for r in results:
        assert rules[r["ruleIndex"]]["id"] == r["ruleId"]
        assert r["partialFingerprints"]["pipetune/v1"]
        assert r["properties"]["proposal"] in r["message"]["text"]
        location = r["locations"][0]["physicalLocation"]
        assert location["artifactLocation"] == {"uri": "src/app.py", "uriBaseId": "%SRCROOT%"}
    assert results[0]["level"] == "warning" and results[0]["rank"] == 50.0
    descriptor = rules[results[1]["ruleIndex"]]
    assert descriptor["properties"]["proposal"] == "llm.kv_cache"
    assert "llm.kv_cache" in descriptor["help"]["markdown"]
    notes = run["invocations"][0]["toolExecutionNotifications"]
    assert notes[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == (
        "src/broken.py"
    )

    # Lines added above: the same fingerprints, so code scanning sees the same alerts.
    (tmp_path / "src" / "app.py").write_text("import os\n\n" + code)
    again = _sarif(invoke, "src")["runs"][0]["results"]
    assert [r["partialFingerprints"] for r in again] == [r["partialFingerprints"] for r in results]
    assert [r["locations"][0]["physicalLocation"]["region"]["startLine"] for r in again] == [4, 5]


def test_configuration_in_pyproject(invoke, tmp_path, monkeypatch):
    monkeypatch.chdir(
        _project(
            tmp_path,
            {
                "pyproject.toml": (
                    "[tool.pipetune.scan]\nignore = ['PT-LLM001']\nexclude = ['gen_*']\n"
                ),
                "a.py": HIT + "import faiss\nindex = faiss.IndexFlatIP(8)\n",
                "gen_b.py": HIT,
            },
        )
    )
    result = invoke("scan", ".", "--format", "json")
    report = json.loads(result.stdout)
    assert [f["rule"] for f in report["findings"]] == ["PT-REC002"]
    assert report["summary"]["files"] == 1
    # the command line's --select replaces the file's select; --ignore adds
    result = invoke("scan", ".", "--format", "json", "--select", "PT-LLM")
    assert json.loads(result.stdout)["findings"] == []
    (tmp_path / "pyproject.toml").write_text("[tool.pipetune.scan]\nfail_onn = 'note'\n")
    bad = invoke("scan", ".")
    assert bad.exit_code == 2 and "did you mean 'fail_on'" in bad.output


def test_list_rules(invoke):
    result = invoke("scan", "--list-rules", "--select", "PT-VIS")
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert [line.split()[0] for line in lines] == [
        "PT-VIS001",
        "PT-VIS002",
        "PT-VIS003",
        "PT-VIS004",
    ]
    rows = json.loads(invoke("scan", "--list-rules", "--format", "json").output)
    assert len(rows) >= 15 and all(row["proposal"] and row["plugin"] for row in rows)


def test_inline_suppression_through_the_cli(invoke, tmp_path, monkeypatch):
    monkeypatch.chdir(
        _project(tmp_path, {"a.py": HIT.rstrip() + "  # pipetune: ignore[PT-LLM001]\n"})
    )
    result = invoke("scan", "a.py")
    assert result.exit_code == 0 and "1 suppressed" in result.output
