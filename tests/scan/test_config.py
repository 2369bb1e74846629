"""[tool.pipetune.scan] options."""

from __future__ import annotations

import pytest

from pipetune.core.kernel.errors import ConfigError
from pipetune.scan.config import ScanOptions, options_from_table


def test_keys_with_dashes_or_underscores():
    options = options_from_table(
        {
            "select": ["pt-nlp", "PT-LLM001,PT-GEN"],
            "ignore": "PT-GEN002",
            "fail-on": "error",
            "min_confidence": 0.5,
            "exclude": ["tests/*"],
            "max-file-size": 2,
            "jobs": 2,
        },
        "pyproject.toml [tool.pipetune.scan]",
    )
    assert options.select == ("PT-NLP", "PT-LLM001", "PT-GEN")
    assert options.ignore == ("PT-GEN002",)
    assert (options.fail_on, options.min_confidence, options.jobs) == ("error", 0.5, 2)
    assert options.max_file_size == 2 * 1024 * 1024
    merged = options.merged(select=["PT-REC"], ignore=["PT-NLP001"], exclude=["b/*"])
    assert merged.select == ("PT-REC",)
    assert merged.ignore == ("PT-GEN002", "PT-NLP001")
    assert merged.exclude == ("tests/*", "b/*")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"selcet": ["PT"]}, "did you mean 'select'"),
        ({"fail-on": "sometimes"}, "fail-on must be one of"),
        ({"min-confidence": 2}, "between 0 and 1"),
        ({"select": [1]}, "list of strings"),
        ({"jobs": "two"}, "whole number"),
    ],
)
def test_bad_configuration_names_the_table(table, message):
    with pytest.raises(ConfigError, match=message) as info:
        options_from_table(table, "pyproject.toml [tool.pipetune.scan]")
    assert "[tool.pipetune.scan]" in str(info.value)


def test_default_fail_on_is_warning():
    assert ScanOptions().fail_on == "warning"
