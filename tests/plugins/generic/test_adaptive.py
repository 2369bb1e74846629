"""Adaptive computation: a declared smaller model gets the inputs it is sure about, the
threshold is tuned for fidelity on a calibration split, and the change is refused (with the
figures) when it does not pay."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest

from pipetune.core.kernel.artifacts import ArtifactStore
from pipetune.core.kernel.context import Observations, TuneContext
from pipetune.core.kernel.errors import ConfigError, PipelineError, Rejected
from pipetune.core.kernel.manager import get_plugin_manager
from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
from pipetune.core.kernel.results import Change
from pipetune.core.kernel.state import component_stats, reset_state
from pipetune.core.loop.optimize import LoopSettings, optimize
from pipetune.core.loop.recipes import load_recipe, make_recipe
from pipetune.plugins.generic import adaptive, adaptive_routing, adaptive_span, adaptive_tune
from pipetune.plugins.generic.changes import adaptive_computation
from tests.core.loop_toys import FAST_VALIDATOR

CLASSES = ("neg", "pos")


class Scorer:
    """Logits for [neg, pos]: a boundary at ``offset``, sharpness ``scale``, a cost."""

    def __init__(self, offset: float, scale: float, delay: float):
        self.weights = np.array([offset, scale])  # the 'model state' checked for mutation
        self.delay = delay

    def __call__(self, x: float) -> np.ndarray:
        time.sleep(self.delay)
        z = self.weights[1] * (x - self.weights[0])
        return np.array([-z, z])


def features(x):
    return float(x)


def score(x, *, model):
    return model(x)


def score_batch(xs, *, model):
    return [model(x) for x in xs]


def label(logits):
    return CLASSES[int(np.argmax(logits))]


LARGE = Scorer(0.0, 3.0, 0.002)
SMALL = Scorer(0.25, 2.0, 0.0)
SLOW_SMALL = Scorer(0.25, 2.0, 0.006)  # three times the large model


def pipeline(small=SMALL, large=LARGE, batch: bool = False) -> Pipeline:
    return Pipeline(
        "signs",
        (
            Stage("features", features, kind="preprocess"),
            Stage(
                "model",
                score,
                kind="inference",
                slots={"model": large, "small_model": small},
                batch_fn=score_batch if batch else None,
            ),
            Stage("label", label, kind="postprocess", output_kind="labels"),
        ),
        output_kind="labels",
    )


def items(n: int, seed: int = 0) -> tuple[float, ...]:
    return tuple(np.random.default_rng(seed).uniform(-3, 3, n).round(4))


def context(pm, original, workload, tmp_path, requirements=None) -> TuneContext:
    requirements = requirements or Requirements(max_accuracy_drop=0.02)
    return TuneContext(pm, original, workload, requirements, ArtifactStore(tmp_path))


def digest(scorer: Scorer) -> str:
    return hashlib.sha256(scorer.weights.tobytes()).hexdigest()


@pytest.fixture
def pm():
    return get_plugin_manager(entry_points=False)


def test_the_span_and_the_declaration() -> None:
    span = adaptive_span.find_span(pipeline())
    assert span is not None
    assert span.names == ("model",) and span.small == {"model": {"model": "small_model"}}
    assert not span.explicit
    plain = Pipeline("plain", (Stage("f", features),))
    assert adaptive_span.find_span(plain) is None
    broken = Pipeline("broken", (Stage("m", score, slots={"small_model": SMALL}),))
    with pytest.raises(ConfigError, match="no 'model' slot"):
        adaptive_span.find_span(broken)
    (advice,) = adaptive.proposals(broken, None, {})  # type: ignore[arg-type]
    assert not advice.applicable and "no 'model' slot" in advice.reason


def test_routing_takes_the_small_result_only_when_confident() -> None:
    routed = adaptive_routing.route(pipeline(), threshold=0.95)
    original = pipeline()
    for x in items(200):
        small_logits = SMALL(x)
        confidence = adaptive_span.default_confidence(small_logits)
        expected = label(small_logits) if confidence >= 0.95 else original.run(x)
        assert routed.run(x) == expected
    stats = component_stats(routed)["model"]["adaptive"]
    assert stats["small"] + stats["large"] == 200
    assert 0.5 < stats["small_share"] < 1.0
    reset_state(routed)
    assert component_stats(routed)["model"]["adaptive"]["small"] == 0
    # stage names and order are kept; the original pipeline is untouched
    assert routed.stage_names == original.stage_names
    assert "small_model" in routed.stage("model").slots


def test_batches_route_the_same_way() -> None:
    routed = adaptive_routing.route(pipeline(batch=True), threshold=0.9)
    xs = list(items(64, seed=3))
    assert routed.run_batch(xs) == [routed.run(x) for x in xs]


def test_an_explicit_confidence_over_a_span_of_stages() -> None:
    def head(values, *, head):
        return CLASSES[int(np.argmax(head(values)))]

    def sure(values, *, head):
        logits = head(values)
        p = np.exp(logits - logits.max())
        return float(p.max() / p.sum())

    large_head = lambda v: np.array([-v[0], v[0]])  # noqa: E731
    small_head = lambda v: np.array([-(v[0] - 0.2), v[0] - 0.2])  # noqa: E731
    span_pipeline = Pipeline(
        "two-stage",
        (
            Stage(
                "embed",
                lambda x, *, model: np.array([x * model]),
                slots={"model": 1.0, "small_model": 0.9},
            ),
            Stage(
                "classify",
                head,
                slots={"head": large_head, "small_head": small_head, "confidence": sure},
                output_kind="labels",
            ),
        ),
        output_kind="labels",
    )
    span = adaptive_span.find_span(span_pipeline)
    assert span is not None and span.names == ("embed", "classify") and span.explicit
    routed = adaptive_routing.route(span_pipeline, threshold=0.8)
    for x in items(100, seed=5):
        small_value = np.array([x * 0.9])
        confident = sure(small_value, head=small_head) >= 0.8
        expected = head(small_value, head=small_head) if confident else span_pipeline.run(x)
        assert routed.run(x) == expected


@pytest.mark.slow
def test_tune_finds_a_threshold_that_keeps_fidelity(pm, tmp_path) -> None:
    original = pipeline()
    workload = Workload(items(300))
    (proposal,) = adaptive.proposals(original, _profile_stub(), {})
    tuned = adaptive_tune.tune(
        proposal,
        original,
        workload,
        Requirements(max_accuracy_drop=0.02),
        context(pm, original, workload, tmp_path),
    )
    notes = tuned.notes
    assert 0.3 < notes["small_share"] < 1.0
    assert notes["fidelity_budget"] == pytest.approx(0.02)
    assert notes["calibration_fidelity"] >= 0.98
    # the 90 % bound on what the routing costs stays within the budget
    share, changed = notes["small_share"], notes["changed_routed"]
    routed = round(share * 300)
    assert share * adaptive_tune.wilson_upper(changed, routed) <= 0.02 + 1e-9
    assert notes["small_ms"] > 0 and notes["large_ms"] > 0
    # the chosen threshold, applied, gives the calibration figures
    applied = adaptive_computation.materialize(
        Change.from_proposal(proposal, tuned), routed_pipeline := original, tmp_path
    )
    outputs = [applied.run(x) for x in workload.items]
    agreement = np.mean(
        [a == b for a, b in zip(outputs, map(original.run, workload.items), strict=True)]
    )
    assert agreement == pytest.approx(notes["calibration_fidelity"])
    assert routed_pipeline is original


@pytest.mark.slow
def test_refused_with_figures_when_the_small_model_is_as_slow(pm, tmp_path) -> None:
    slow = pipeline(small=SLOW_SMALL)
    workload = Workload(items(120))
    (proposal,) = adaptive.proposals(slow, _profile_stub(), {})
    with pytest.raises(Rejected, match=r"does not pay: the small path costs .* ms per input"):
        adaptive_tune.tune(
            proposal,
            slow,
            workload,
            Requirements(max_accuracy_drop=0.02),
            context(pm, slow, workload, tmp_path),
        )


def test_refused_when_the_small_model_is_never_reliable(pm, tmp_path) -> None:
    wrong = pipeline(small=Scorer(0.0, -3.0, 0.0))  # confidently wrong everywhere
    workload = Workload(items(100))
    (proposal,) = adaptive.proposals(wrong, _profile_stub(), {})
    strict = Requirements(max_accuracy_drop=0.005)  # one wrong answer in 100 is too many
    with pytest.raises(Rejected, match="not reliable enough"):
        adaptive_tune.tune(
            proposal,
            wrong,
            workload,
            strict,
            context(pm, wrong, workload, tmp_path, strict),
        )


def test_a_small_calibration_split_cannot_certify_a_tight_budget(pm, tmp_path) -> None:
    flawless = pipeline(small=Scorer(0.0, 3.0, 0.0))  # agrees everywhere
    workload = Workload(items(60))
    strict = Requirements(max_accuracy_drop=0.01)
    (proposal,) = adaptive.proposals(flawless, _profile_stub(), {})
    with pytest.raises(Rejected, match=r"too small .* at least 165 inputs"):
        adaptive_tune.tune(
            proposal, flawless, workload, strict, context(pm, flawless, workload, tmp_path, strict)
        )


def test_the_upper_bound() -> None:
    assert adaptive_tune.wilson_upper(0, 100) == pytest.approx(0.0162, abs=1e-3)
    assert adaptive_tune.wilson_upper(5, 100) > 0.05
    assert adaptive_tune.wilson_upper(0, 0) == 1.0


def test_profile_facts_and_the_proposal(pm) -> None:
    original = pipeline()
    observed = Observations(indices=[0, 1, 2], inputs={"model": [2.0, -1.5, 0.1]})
    facts = adaptive.observe(original, _profile_stub(), observed)
    assert facts is not None and facts["span"] == ["model"]
    assert facts["small_ms"] > 0 and facts["large_ms"] == pytest.approx(2.1)
    assert len(facts["confidence"]) == 3
    (proposal,) = adaptive.proposals(original, _profile_stub(), {"adaptive": facts})
    assert proposal.id == "generic.adaptive_computation" and proposal.stage == "model"
    assert proposal.est_stage_speedup >= 1.0
    assert proposal.evidence["small_ms"] == facts["small_ms"]
    assert proposal.evidence["confident_share"] == pytest.approx(2 / 3)  # 0.1 is near 0.25
    assert "observed inputs" in proposal.rationale


def test_a_recipe_reapplies_the_threshold_and_nothing_is_mutated(pm, tmp_path) -> None:
    before_large, before_small = digest(LARGE), digest(SMALL)
    original = pipeline()
    change = Change(
        proposal=adaptive.PROPOSAL,
        plugin="generic",
        stage="model",
        params={"threshold": 0.9, "span": ["model"]},
    )
    recipe = make_recipe(original, [change])
    loaded = load_recipe(pipeline(), recipe, pm=pm, artifacts_dir=tmp_path)
    direct = adaptive_routing.route(original, 0.9)
    xs = items(50, seed=9)
    assert [loaded.run(x) for x in xs] == [direct.run(x) for x in xs]
    assert digest(LARGE) == before_large and digest(SMALL) == before_small
    with pytest.raises(PipelineError, match=r"already routed|declares no smaller"):
        adaptive.materialize(change, loaded)
    with pytest.raises(ConfigError, match="threshold"):
        adaptive.materialize(Change(adaptive.PROPOSAL, "generic", "model"), original)


@pytest.mark.slow
def test_the_loop_accepts_it_and_reports_the_routed_share(pm, tmp_path) -> None:
    original = pipeline()
    workload = Workload(items(400, seed=11), warmup=0, repeats=1)
    settings = LoopSettings(
        validator=FAST_VALIDATOR,
        detailed_profiles=False,
        profile_options={"gil_check": False},
        max_trials=3,
    )
    optimized, report = optimize(
        original,
        workload,
        Requirements(max_accuracy_drop=0.02, optimize_for="p50"),
        pm=pm,
        settings=settings,
        store=tmp_path,
    )
    trial = next(t for t in report.trials if t.proposal == adaptive.PROPOSAL)
    assert trial.status == "accepted", trial.reason
    routing = trial.notes["stats"]["model"]["adaptive"]
    assert routing["small"] > 0 and routing["large"] > 0  # the held-out split's shares
    assert 0 < routing["small_share"] < 1
    assert trial.notes["tune"]["small_share"] > 0
    assert trial.fidelity is not None and trial.fidelity.value >= 0.98
    from pipetune.core.report import format as fmt

    (row,) = [r for r in fmt.trial_rows(report.to_dict()) if r["proposal"] == adaptive.PROPOSAL]
    assert "routed" in row["reason"] and "to the small model" in row["reason"]
    assert optimized.stage("model").meta["generic.adaptive"]["threshold"] == pytest.approx(
        trial.change.params["threshold"]
    )


def _profile_stub():
    from pipetune.core.kernel.results import LatencyStats, Machine, Profile, StageStats

    return Profile(
        pipeline="signs",
        mode="offline",
        samples=10,
        throughput_rps=400.0,
        latency_ms=LatencyStats(2.1, 2.2, 2.3, 2.4),
        stages=(
            StageStats("features", "preprocess", 0.01, 0.001, mean_ms=0.001),
            StageStats("model", "inference", 0.97, 2.1, mean_ms=2.1),
            StageStats("label", "postprocess", 0.01, 0.01, mean_ms=0.01),
            StageStats("other", "other", 0.01, 0.0),
        ),
        machine=Machine(cpu="test", cores=2),
    )
