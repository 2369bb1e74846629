"""Fixtures for the hardware plugin's tests: tiny real models (a 2-layer MLP, a 2-layer
BERT built from a config with random weights), a shared artifact store so the slow step
(the ONNX export) happens once per session, and a small text pipeline around them."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the hardware plugin's models are torch modules")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "test_machine" not in item.nodeid:
            item.add_marker(pytest.mark.filterwarnings("ignore::DeprecationWarning"))


@pytest.fixture(autouse=True, scope="package")
def _one_torch_thread() -> Any:
    """The tiny test models gain nothing from a second thread, and on a loaded shared
    machine an OpenMP pool waiting for a descheduled thread turns a 3 ms forward pass into
    hundreds of ms. Restored afterwards: other tests see torch as they left it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class MLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = torch.nn.Linear(16, 32)
        self.second = torch.nn.Linear(32, 4)

    def forward(self, x: Any) -> Any:
        return self.second(torch.relu(self.first(x)))


@pytest.fixture(scope="session")
def mlp() -> MLP:
    torch.manual_seed(0)
    return MLP().eval()


@pytest.fixture(scope="session")
def tiny_bert() -> Any:
    transformers = pytest.importorskip("transformers", reason="tiny BERT needs transformers")
    config = transformers.BertConfig(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    return transformers.BertModel(config).eval()


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from pipetune.core.kernel.artifacts import ArtifactStore

    return ArtifactStore(tmp_path_factory.mktemp("hardware-artifacts"))


def encode(text: str) -> dict[str, Any]:
    """A deterministic toy tokenizer: words hashed into the tiny vocabulary."""
    ids = [int(hashlib.md5(w.encode()).hexdigest(), 16) % 110 + 5 for w in text.split()][:40]
    ids = [1, *ids, 2]
    return {
        "input_ids": torch.tensor([ids]),
        "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
    }


def encode_batch(texts: list[str]) -> dict[str, Any]:
    rows = [encode(t)["input_ids"][0] for t in texts]
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask}


@pytest.fixture(scope="session")
def head() -> Any:
    torch.manual_seed(1)
    return torch.nn.Linear(32, 3).eval()


def classify(text: str, *, model: Any, head: Any) -> int:
    with torch.no_grad():
        hidden = model(**encode(text)).last_hidden_state
        return int(head(hidden[:, 0]).argmax())


def classify_batch(texts: list[str], *, model: Any, head: Any) -> list[int]:
    with torch.no_grad():
        hidden = model(**encode_batch(texts)).last_hidden_state
        return [int(i) for i in head(hidden[:, 0]).argmax(dim=-1)]


def texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    words = [f"word{i}" for i in range(200)]
    return [" ".join(rng.choice(words, size=int(rng.integers(3, 20)))) for _ in range(n)]


@pytest.fixture
def text_pipeline(tiny_bert: Any, head: Any) -> Any:
    from pipetune import Pipeline, Stage

    stage = Stage(
        "classify",
        classify,
        kind="inference",
        slots={"model": tiny_bert, "head": head},
        batch_fn=classify_batch,
    )
    return Pipeline("tiny-text", (stage,), output_kind="labels")


@pytest.fixture
def fast_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministic timings: every candidate is twice as fast as the current stage, so
    tests check the tune step's logic, never this machine's speed (benchmarks do that)."""
    from pipetune.plugins.hardware import tune_choice

    def fake_times(stages: Any, inputs: Any, *, batch_size: int = 1, rounds: int = 3) -> Any:
        for stage in stages.values():  # still run each once: errors must surface
            stage(inputs[0])
        return {name: [0.010 if name == "current" else 0.005] for name in stages}

    monkeypatch.setattr(tune_choice, "interleaved_times", fake_times)
    monkeypatch.setattr(tune_choice, "MAX_TIMING_INPUTS", 4)


@pytest.fixture(scope="session")
def bert_call(tiny_bert: Any) -> Any:
    from pipetune.plugins.hardware.export import capture_calls

    with capture_calls(tiny_bert) as calls:
        tiny_bert(**encode("the first example call of the tiny encoder"))
    return calls[0]


@pytest.fixture(scope="session")
def bert_export(tiny_bert: Any, bert_call: Any, store: Any) -> Any:
    pytest.importorskip("onnxscript", reason="torch.onnx's default exporter needs onnxscript")
    from pipetune.plugins.hardware.export import ensure_export

    return ensure_export(tiny_bert, bert_call, store, name="model")
