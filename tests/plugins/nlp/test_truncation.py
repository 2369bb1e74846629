"""Truncation search on a small calibrated case: the answer is known by construction."""

from __future__ import annotations

import pytest

import pipetune
from pipetune import Pipeline, Proposal, Rejected, Requirements, Stage, Workload
from pipetune.core.kernel.artifacts import ArtifactStore
from pipetune.core.kernel.context import TuneContext
from pipetune.plugins.nlp.truncation import split_indices

from .toys import ToyWordPiece

FILLER = ["the", "report", "was", "filed", "on", "time", "and", "reviewed", "by", "the", "team"]


def _document(index: int) -> str:
    """Easy documents carry their class in the first tokens; every tenth is 'hard': two
    'good' early, four 'bad' between tokens ~70 and ~110, so only max_length >= 128 sees
    its true majority."""
    words = []
    if index % 10 == 9:
        words += ["good", "good"] + FILLER * 6 + ["bad"] * 4 + FILLER * 2
    else:
        label = "good" if index % 2 else "bad"
        words += [label] * 3 + FILLER * 12
    return " ".join(words)


def vote(text, *, tokenizer, max_length):
    tokens = tokenizer.tokenize(text)[: max_length - 2]
    return "good" if tokens.count("good") > tokens.count("bad") else "bad"


@pytest.fixture()
def calibrated(legacy_tokenizer):
    toy = ToyWordPiece(dict(legacy_tokenizer.vocab))
    stage = Stage("vote", vote, kind="inference", slots={"tokenizer": toy, "max_length": 512})
    pipeline = Pipeline("vote", (stage,), output_kind="labels")
    workload = Workload(items=tuple(_document(i) for i in range(120)))
    return pipeline, workload


def _tune(pipeline, workload, tmp_path, floor=None):
    pm = pipetune.get_plugin_manager(entry_points=False)
    context = TuneContext(
        pm, pipeline, workload, Requirements(), ArtifactStore(tmp_path), fidelity_floor=floor
    )
    proposal = Proposal(
        "nlp.truncation", "nlp", "vote", "truncate", params={"slot_stage": "vote", "current": 512}
    )
    tuned = pm.tune(proposal, pipeline, context)
    return pm, proposal, tuned


def test_search_finds_the_shortest_safe_length_and_reports_the_curve(calibrated, tmp_path):
    pipeline, workload = calibrated
    pm, proposal, tuned = _tune(pipeline, workload, tmp_path)
    assert tuned.params["max_length"] == 128
    curve = tuned.notes["curve"]
    tried = [(p["max_length"], p["split"], p["passed"]) for p in curve]
    assert tried == [
        (32, "calibration", False),
        (64, "calibration", False),
        (128, "calibration", True),
        (128, "holdout", True),
    ]
    assert 0.85 < curve[0]["agreement"] < 0.95 and curve[2]["agreement"] == 1.0
    assert tuned.notes["calibration_items"] + tuned.notes["holdout_items"] == len(workload)
    new = pm.materialize(pm.make_change(proposal, tuned), pipeline, tmp_path)
    assert new.stage("vote").slots["max_length"] == 128
    assert pipeline.stage("vote").slots["max_length"] == 512


def test_search_rejects_when_no_length_keeps_the_answers(calibrated, tmp_path):
    pipeline, _ = calibrated
    # The deciding words sit past token 300 in every third document: only 512 sees them.
    late = " ".join(["good", "good", *FILLER * 28, *["bad"] * 4])
    items = tuple(late if i % 3 == 0 else _document(2 * i) for i in range(30))
    with pytest.raises(Rejected, match=r"no max length below 512 .*curve: 32: "):
        _tune(pipeline, Workload(items=items), tmp_path)
    assert pipeline.stage("vote").slots["max_length"] == 512


def test_split_is_disjoint_and_deterministic():
    cal, hold = split_indices(50, 0.6, seed=1)
    assert len(cal) == 30 and len(hold) == 20 and not set(cal) & set(hold)
    assert split_indices(50, 0.6, seed=1) == (cal, hold)
