"""Stage hints come only from the domains whose components a pipeline holds: a document
encoder or an image classifier is not told about the recsys user-embedding cache, an
image encoder is not told to declare a text model, and a recommender still is."""

from __future__ import annotations

import numpy as np
import pytest

from pipetune.core.kernel.manager import get_plugin_manager
from pipetune.core.kernel.model import Pipeline, Stage

torch = pytest.importorskip("torch", reason="torch is not installed: pip install torch")


@pytest.fixture(scope="module")
def pm():
    return get_plugin_manager(entry_points=False)


def _hints(pm, pipeline: Pipeline) -> list[str]:
    found = []
    for stage in pipeline.stages:
        for answer in pm.hook.stage_hints(stage=stage, pipeline=pipeline):
            found.extend(answer or ())
    return found


def encode(value, *, model):
    with torch.no_grad():
        return model(torch.as_tensor(value, dtype=torch.float32)[None])[0].numpy()


def rank(vector, *, items):
    return np.argsort(-(items @ vector))[:10]


def test_an_image_classifier_gets_no_recsys_or_nlp_hint(pm):
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())
    image = Pipeline(
        "images", (Stage("encode_image", encode, kind="inference", slots={"model": cnn}),)
    )
    hints = _hints(pm, image)
    assert not any("user_id" in h for h in hints)
    assert not any("text model" in h for h in hints)
    opaque = Pipeline("images", (Stage("embed_image", lambda x: x, kind="inference"),))
    assert not any("text model" in h for h in _hints(pm, opaque))


def test_a_document_encoder_gets_no_recsys_hint(pm):
    model = torch.nn.Sequential(torch.nn.Embedding(100, 8), torch.nn.Flatten())
    docs = Pipeline(
        "docs",
        (
            Stage("tokenize", lambda text: [hash(w) % 100 for w in text.split()], kind="tokenize"),
            Stage("embed", encode, kind="inference", slots={"model": model}),
        ),
    )
    hints = _hints(pm, docs)
    assert not any("user_id" in h for h in hints)
    assert any("`tokenizer` slot" in h for h in hints)  # its own domain's hint stays


def test_a_recommender_still_gets_the_user_embedding_hint(pm):
    tower = torch.nn.Linear(4, 8)
    items = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    recommender = Pipeline(
        "recs",
        (
            Stage("user", encode, kind="inference", slots={"model": tower}),
            Stage("rank", rank, kind="retrieval", slots={"items": items}),
        ),
    )
    assert any("user_id" in h for h in _hints(pm, recommender))
