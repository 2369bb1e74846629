"""Fixtures for the llm plugin's tests: tiny config-built models (random weights) so every
test runs in seconds. Tests that need torch/transformers skip with the reason when the
``llm`` extra is missing."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest


@pytest.fixture(scope="session")
def torch():
    torch = pytest.importorskip("torch", reason="the llm extra (torch) is not installed")
    # correctness tests on tiny models: one thread avoids OpenMP spinning on a busy machine
    torch.set_num_threads(1)
    return torch


@pytest.fixture(scope="session")
def transformers(torch):
    return pytest.importorskip(
        "transformers", reason="the llm extra (transformers) is not installed"
    )


@pytest.fixture(scope="session")
def tokenizer():
    from pipetune.plugins.llm.model_loading import ByteTokenizer

    return ByteTokenizer()


@pytest.fixture(scope="session")
def llama(transformers):
    from pipetune.plugins.llm.model_loading import config_model

    return config_model("llama", layers=2, hidden=64, heads=4, context=256, seed=1)


@pytest.fixture(scope="session")
def gpt2(transformers):
    from pipetune.plugins.llm.model_loading import config_model

    return config_model("gpt2", layers=2, hidden=64, heads=4, context=256, seed=2)


@pytest.fixture(params=["llama", "gpt2"])
def model(request: Any, llama: Any, gpt2: Any) -> Any:
    return llama if request.param == "llama" else gpt2


SYSTEM = "<system>\nYou are a terse assistant. Answer in one line.\n"


@pytest.fixture(scope="session")
def requests_(tokenizer):
    """Mixed-length requests sharing a system prompt (budgets 1..24 tokens)."""
    from pipetune.plugins.llm.records import GenerationRequest

    system = tokenizer.encode(SYSTEM)
    out = []
    for i in range(8):
        body = tokenizer.encode(f"<user>\nquestion {i}: " + "abcdefgh"[: i + 1] * (i % 3 + 1))
        out.append(GenerationRequest(tuple(system + body), max_new_tokens=3 * i + 1, id=f"r{i}"))
    return out


def state_digest(model: Any) -> str:
    """A hash of a model's weights and buffers (the no-mutation checks)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
