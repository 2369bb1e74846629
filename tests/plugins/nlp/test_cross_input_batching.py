"""``nlp.cross_input_batching`` on plain user code (a pure-Python tokenizer and a text
model in slots, one document per call): proposed with the Rust tokenizer and inference
mode as parts, tuned, each part kept only where it holds, and reloaded from a recipe."""

from __future__ import annotations

import numpy as np
import pytest

from pipetune.core.kernel.artifacts import ArtifactStore
from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.manager import get_plugin_manager
from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
from pipetune.core.kernel.results import Change, Proposal
from pipetune.core.measure.profiler import profile
from pipetune.plugins.generic import crossbatch
from pipetune.plugins.nlp import proposals as nlp_proposals
from pipetune.plugins.nlp.changes import cross_input_batching
from pipetune.plugins.nlp.tokenizers_swap import ids_of

OPTIONS = {"sweep": False, "hot_functions": False, "layers": False, "memory": False}
WEIGHTS = np.random.default_rng(0).normal(size=(3, 32)).astype(np.float32)


def classify(text, *, tokenizer, model):
    """A document classifier written one document at a time, as user code often is."""
    import torch

    enc = tokenizer(text, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        states = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    embedding = ((states * mask).sum(1) / mask.sum(1))[0].numpy()
    return "abc"[int(np.argmax(WEIGHTS @ embedding))]


@pytest.fixture(scope="module")
def pm():
    return get_plugin_manager(entry_points=False)


@pytest.fixture(scope="module")
def plain(legacy_tokenizer, tiny_bert, documents):
    stage = Stage(
        "classify",
        classify,
        kind="inference",
        slots={"tokenizer": legacy_tokenizer, "model": tiny_bert},
    )
    texts = tuple(doc.text[: 150 + 40 * (i % 6)] for i, doc in enumerate(documents))
    return Pipeline("plain", (stage,), output_kind="labels"), Workload(items=texts * 2)


@pytest.mark.slow
def test_a_one_at_a_time_text_stage_gets_the_batching_with_its_parts(pm, plain):
    pipeline, workload = plain
    found = profile(pipeline, workload, pm=pm, **OPTIONS)
    assert "classify" in found.facts["generic"]["coalesce"]
    throughput = Requirements(optimize_for="throughput")
    proposals = nlp_proposals.propose(pipeline, found, throughput)
    batching = [p for p in proposals if p.id == nlp_proposals.CROSS_BATCHING]
    assert len(batching) == 1
    assert batching[0].params == {"slots": ["model"], "tokenizer_slot": "tokenizer"}
    assert "generic.cross_input_batching" in batching[0].conflicts
    assert "Rust tokenizer" in batching[0].rationale
    latency = Requirements(p99_ms=100)  # offline latency: batching cannot lower it
    assert not [
        p
        for p in nlp_proposals.propose(pipeline, found, latency)
        if p.id == nlp_proposals.CROSS_BATCHING
    ]


@pytest.mark.slow
def test_tune_keeps_the_parts_that_hold_and_a_recipe_rebuilds_it(pm, plain, tmp_path):
    pipeline, workload = plain
    store = ArtifactStore(tmp_path)
    requirements = Requirements(optimize_for="throughput", max_accuracy_drop=0.05)
    context = TuneContext(pm, pipeline, workload, requirements, store)
    proposal = Proposal(
        cross_input_batching.ID,
        "nlp",
        "classify",
        "batch",
        params={"slots": ["model"], "tokenizer_slot": "tokenizer"},
    )
    tuned = cross_input_batching.tune(proposal, pipeline, context)
    parts = tuned.notes["parts"]
    assert set(parts) == {"rust_tokenizer", "inference_mode"}
    if parts["rust_tokenizer"]["kept"]:
        assert tuned.params["tokenizer_slot"] == "tokenizer" and "tokenizer" in tuned.artifacts
    else:
        assert "tokenizer_slot" not in tuned.params and not tuned.artifacts
    change = Change(cross_input_batching.ID, "nlp", "classify", tuned.params, tuned.artifacts)
    rebuilt = cross_input_batching.materialize(change, pipeline, store.root)
    stage = rebuilt.stage("classify")
    assert pipeline.stage("classify").batch_fn is None
    # Whether batching pays is the host's call (a busy host can make it not): then the
    # parts that held are kept one input at a time, and the stage stays unbatched.
    if tuned.params["batch_size"] > 1:
        assert stage.batch_fn is not None
    else:
        assert "batching" in tuned.notes and any(p["kept"] for p in parts.values())
    items = list(workload.items)
    outputs = crossbatch.batched_outputs(rebuilt, items)
    agree = np.mean(
        [a == b for a, b in zip(outputs, [pipeline.run(x) for x in items], strict=True)]
    )
    assert agree >= 0.95
    if parts["rust_tokenizer"]["kept"]:
        texts = list(workload.items)
        assert ids_of(stage.slots["tokenizer"], texts) == ids_of(
            pipeline.stage("classify").slots["tokenizer"], texts
        )
