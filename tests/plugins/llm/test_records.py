"""GenerateConfig and the plain records: no torch needed."""

from __future__ import annotations

import pytest

from pipetune.core.kernel.errors import ConfigError
from pipetune.plugins.llm.records import GenerateConfig, Generation, GenerationRequest, token_list


def test_config_round_trips_through_json_data():
    config = GenerateConfig(max_new_tokens=12, prefixes=((1, 2, 3),), batching="continuous")
    again = GenerateConfig.from_dict(config.to_dict())
    assert again == config
    assert config.describe()["prefixes"] == [3]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batching": "dynamic"}, "batching must be one of"),
        ({"max_new_tokens": -1}, "max_new_tokens"),
        ({"speculative": "medusa"}, "speculative must be"),
        ({"batching": "continuous", "use_cache": False}, "needs the KV cache"),
        ({"max_batch": 0}, "max_batch"),
    ],
)
def test_config_refuses_bad_options_with_a_clear_message(options, message):
    with pytest.raises(ConfigError, match=message):
        GenerateConfig(**options)


def test_unknown_option_is_named():
    with pytest.raises(ConfigError, match=r"unknown generate option.*beam"):
        GenerateConfig.from_dict({"beam": 4})


def test_generation_equality_ignores_timings():
    a = Generation((1, 2), "eos", stats={"ttft_s": 0.1})
    b = Generation((1, 2), "eos", stats={"ttft_s": 0.9})
    assert a == b
    assert a != Generation((1, 3), "eos")
    assert token_list(a) == [1, 2]
    assert GenerationRequest([1, 2]).prompt_ids == (1, 2)


def test_plugin_modules_import_without_torch_or_transformers():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import pipetune.plugins.llm.plugin\n"
        "from pipetune.plugins.llm import analysis, blocks, cuda_graphs, engine, "
        "fidelity, kv_cache, model_loading, prefix_cache, facts, proposals, changes, quality, "
        "recognize, records, scheduler, speculative, traffic\n"
        "assert len(changes.change_types()) == 6\n"
        "import pipetune.demos.llm.demo\n"
        "print(sorted(m for m in ('torch', 'transformers', 'gguf') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
