"""[tool.pipetune]: every key and value checked, with the file, table, key and type."""

from __future__ import annotations

import pytest

from pipetune.core.kernel.config import load_config
from pipetune.core.kernel.errors import ConfigError


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[tool.pipetune.workload]\nconcurrency = "16"\n', "not the string '16'"),
        ("[tool.pipetune.workload]\nitems = 0\n", "items must be a whole number >= 1"),
        ("[tool.pipetune.workload]\nrate = -1\n", "rate must be a number"),
        ("[tool.pipetune.workload]\nseed = -357\n", "seed must be a whole number >= 0"),
        ('[tool.pipetune.workload]\nmode = "batch"\n', 'mode must be one of "offline"'),
        ("[tool.pipetune.requirements]\np99ms = 5\n", "did you mean 'p99_ms'?"),
        ("[tool.pipetune.requirements]\nmin_gain = true\n", "not the boolean true"),
        ("[tool.pipetune.requirements.growth]\npeak_rps = 5\n", "now_rps"),
        ("[tool.pipetune]\nmonitor = 1\n", "monitor must be a table"),
    ],
)
def test_a_value_of_the_wrong_type_names_where_and_what(tmp_path, toml, message):
    path = tmp_path / "pyproject.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=r"pyproject\.toml") as caught:
        load_config(path)
    assert message in str(caught.value)


def test_a_single_concurrency_level_is_a_list_of_one(tmp_path):
    path = tmp_path / "pyproject.toml"
    path.write_text("[tool.pipetune.workload]\nconcurrency = 4\n")
    assert load_config(path).workload["concurrency"] == [4]
