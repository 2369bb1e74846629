"""The nlp benchmark's part 3 (pipelines through ``compare``): its rows render with their
intervals, what they rest on and the host's load; results written before part 3 went
through ``compare`` still render, labelled; ``--parts pipelines`` merges its keys into an
existing results file and reuses part 2's truncation length only from a like run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmarks.nlp import pipelines
from benchmarks.nlp import run as nlp_run
from benchmarks.render.documents import render_all
from benchmarks.render.registry import EFFECTS, Results

LOAD = {"run_queue_wait": 0.02, "other_cpu": 0.1, "cores": 2, "busy": False}
COMMAND = "python -m benchmarks.nlp.run --parts pipelines"


def _row(speedup: float, inputs: int, samples: int, rounds: int) -> dict:
    """A comparison row as ``benchmarks.nlp.pipelines`` writes it."""
    return {
        "harness": "pipetune.core.measure.comparison.compare",
        "speedup": speedup,
        "ci": [speedup * 0.9, speedup * 1.1],
        "rounds": rounds,
        "inputs_timed": inputs,
        "inputs_total": 310,
        "samples_per_side": samples,
        "throughput_rps": {"a": 2.0, "b": 2.0 * speedup},
        "ms_per_item": {"a": 500.0, "b": 500.0 / speedup},
        "p50_ms": {"a": 450.0, "b": 450.0 / speedup},
        "p99_ms": {"a": 900.0, "b": 900.0 / speedup},
        "p99_speedup": None,
        "p99_note": f"n/a ({samples} samples)",
        "host_load": dict(LOAD),
        "round_speedups": [speedup] * rounds,
    }


def _pipelines(command: str = COMMAND) -> dict:
    library = _row(8.0, 128, 256, 2)
    return {
        "harness": "pipetune.core.measure.comparison.compare",
        "command": command,
        "quick": "--quick" in command,
        "machine": {"cpu": "AMD EPYC", "cores": 2},
        "documents": 310,
        "rows": [
            {"name": "baseline", "kind": "baseline", "docs_per_s": 2.0,
             "vs_library_defaults": pipelines.inverse(library)},
            {"name": "dynamic padding alone", "kind": "alone", "docs_per_s": 10.0,
             "vs_baseline": _row(5.0, 12, 24, 4),
             "agreement_on_sample": {"agreement": 1.0, "n": 12}},
            {"name": "nlp + batching + section cache", "kind": "composed", "docs_per_s": 20.0,
             "vs_baseline": _row(10.0, 128, 256, 2), "vs_library_defaults": _row(1.3, 128, 256, 2),
             "cache_hit_rate": 0.1},
            {"name": "library defaults (AutoTokenizer)", "kind": "competent", "docs_per_s": 16.0,
             "vs_baseline": library, "vs_library_defaults": None},
        ],
    }  # fmt: skip


def _render(tmp_path: Path, nlp: dict) -> dict[str, str]:
    folder = tmp_path / "results"
    folder.mkdir(parents=True)
    (folder / "nlp.json").write_text(json.dumps(nlp))
    results = Results(folder)
    rendered = render_all(results)
    rendered.update({rule: effect.render(results) for rule, effect in EFFECTS.items()})
    return rendered


def test_part_three_rows_carry_their_interval_coverage_and_load(tmp_path: Path) -> None:
    top = {"command": "python -m benchmarks.nlp.run", "pipelines": _pipelines(),
           "fidelity_all_documents": {"nlp + batching + section cache": {"agreement": 1.0,
                                                                          "n": 310}}}  # fmt: skip
    rendered = _render(tmp_path, top)
    table = rendered["nlp.pipelines"]
    assert "10.00x [9.00, 11.00]" in table and "1.30x [1.17, 1.43]" in table
    assert "timed on 128 of 310 documents, 256 samples per side, 2 rounds" in table
    assert "run-queue wait 2 %" in table and "not through compare" not in table
    assert "0.12x [0.11, 0.14]" in table  # the baseline against the library defaults
    effect = rendered["PT-NLP002"]
    assert "**5.00x** [4.50, 5.50]" in effect and "12 of 310 documents" in effect
    assert "through `compare`" in effect and "hand-timed" not in effect


def test_results_from_before_compare_render_labelled(tmp_path: Path) -> None:
    old = {
        "command": "python -m benchmarks.nlp.run",
        "pipelines": {"documents": 16, "rounds": 2, "rows": [
            {"name": "dynamic padding alone", "docs_per_s": 10.9, "speedup_vs_baseline": 5.14,
             "speedup_vs_baseline_per_round": [4.27, 6.0], "speedup_vs_competent": 0.67,
             "agreement_on_sample": {"agreement": 1.0, "n": 16}, "cache_hit_rate": None}]},
    }  # fmt: skip
    rendered = _render(tmp_path, old)
    for text in (rendered["nlp.pipelines"], rendered["PT-NLP002"]):
        assert "5.14x" in text and "hand-timed on the first 16 documents" in text
        assert f"pending a quiet run (`{COMMAND}`)" in text


def test_a_smoke_part_three_is_never_a_headline(tmp_path: Path) -> None:
    top = {
        "command": "python -m benchmarks.nlp.run",
        "pipelines": _pipelines(COMMAND + " --quick --output /tmp/nlp_quick.json"),
    }
    rendered = _render(tmp_path, top)
    for text in (rendered["nlp.pipelines"], rendered["PT-NLP002"]):
        assert "only a smoke run recorded" in text and "5.00x" not in text


def test_inverse_reads_a_comparison_the_other_way() -> None:
    row = _row(8.0, 128, 256, 2)
    back = pipelines.inverse(row)
    assert back["speedup"] == pytest.approx(0.125)
    assert back["ci"] == pytest.approx([1 / 8.8, 1 / 7.2])
    assert back["throughput_rps"] == {"a": 16.0, "b": 2.0}


def test_timed_indices_are_spread_and_distinct() -> None:
    timed = pipelines._timed_indices(310, 4, 3)
    assert len(timed) == 12 and timed[0] < 31 and timed[-1] > 279
    assert pipelines._timed_indices(3, 2, 2) == [0, 1, 2]


def test_a_partial_run_keeps_the_other_keys(tmp_path: Path) -> None:
    path = tmp_path / "nlp.json"
    path.write_text(
        json.dumps(
            {
                "command": "python -m benchmarks.nlp.run",
                "optimize": {"x": 1},
                "pipelines": {"old": True},
                "demo_time": {"wall_s": 1.0},
            }
        )
    )
    previous = json.loads(path.read_text())
    results = {"command": COMMAND, "machine": {}, "pipelines": {"new": True},
               "length_bucketing_batch": 16, "fidelity_all_documents": {}}  # fmt: skip
    nlp_run.merge_results(path, results, previous, ["pipelines"])
    data = json.loads(path.read_text())
    assert data["pipelines"] == {"new": True} and data["optimize"] == {"x": 1}
    assert data["command"] == "python -m benchmarks.nlp.run" and data["demo_time"]


def test_part_three_alone_reuses_part_two_only_from_a_like_run() -> None:
    full = {"command": "python -m benchmarks.nlp.run", "truncation": {"chosen_max_length": 256}}
    quick = {**full, "command": "python -m benchmarks.nlp.run --quick"}
    assert nlp_run._chosen_length(full, quick=False) == 256
    assert nlp_run._chosen_length(full, quick=True) is None
    assert nlp_run._chosen_length(quick, quick=True) == 256
    assert nlp_run._chosen_length({}, quick=False) is None


def test_a_partial_smoke_run_may_not_write_the_full_results() -> None:
    with pytest.raises(SystemExit):
        nlp_run.main(["--quick", "--parts", "pipelines"])
