"""The CPU encoder benchmark measures each backend against eager through ``compare`` at
batch 1 and at a serving batch size of 32; its rows show intervals, P99 (or n/a with the
samples), coverage and load, and read "pending a quiet run" while the recorded results
predate those fields."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from benchmarks.hardware import encoder
from benchmarks.render.documents import render_all
from benchmarks.render.registry import Results

from pipetune.core.runtime.serving import ServingOptions

COMMAND = "python -m benchmarks.hardware.encoder"


def _encoded(length: int) -> dict[str, Any]:
    ids = torch.arange(1, length + 1).unsqueeze(0)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _hidden(**batch: Any) -> Any:
    """A stand-in encoder: hidden states of shape ``batch x length x 2``."""
    ids = batch["input_ids"].float()
    return torch.stack([ids, batch["attention_mask"].float()], dim=-1)


def test_collate_pads_each_batch_to_its_longest_sentence() -> None:
    batch = encoder.collate([_encoded(3), _encoded(5)])
    assert batch["input_ids"].tolist() == [[1, 2, 3, 0, 0], [1, 2, 3, 4, 5]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]


def test_the_batched_pipeline_is_served_in_batches_and_answers_per_sentence() -> None:
    pipeline = encoder.as_pipeline("fake", _hidden, batch=32)
    assert ServingOptions.of(pipeline).batch_size == 32
    outputs = pipeline.stages[0].batch_fn([_encoded(3), _encoded(5)])
    assert [tuple(o.shape) for o in outputs] == [(3, 2), (5, 2)]  # padding cut off
    assert ServingOptions.of(encoder.as_pipeline("fake", _hidden)).batch_size == 1


@pytest.mark.parametrize(
    ("inputs", "rounds", "expected"), [(512, 8, 64), (64, 2, 64), (600, 8, 96), (10, 8, 64)]
)
def test_a_batched_pass_is_whole_batches_covering_every_input(
    inputs: int, rounds: int, expected: int
) -> None:
    size = encoder.pass_size(inputs, rounds, 32)
    assert size == expected and size % 32 == 0
    assert size * rounds >= inputs


@pytest.mark.slow
def test_every_variant_is_compared_against_eager_at_both_batch_sizes() -> None:
    variants = {"eager": _hidden, "other": _hidden}
    items = [_encoded(2 + i % 7) for i in range(64)]
    b1, b32 = (
        encoder.side_by_side(
            variants, items, reference="eager", rounds=2, threads=None, log=print, batch=batch
        )
        for batch in (1, 32)
    )
    for row in (b1["other"], b32["other"]):
        assert row["harness"] == "pipetune.core.measure.comparison.compare"
        assert row["inputs_timed"] == row["inputs_total"] == 64
        assert row["ci"][0] <= row["speedup"] <= row["ci"][1]
        assert "run_queue_wait" in row["host_load"]
    assert b32["other"]["items_per_round"] == 64
    rows = encoder.variant_rows(["eager", "other"], 1.0, b1, b32, {}, {})
    for row in rows:
        latency = row["latency_b1"]
        if b1["other"]["p99_note"]:  # too few samples: no P99, and the note says why
            assert latency["p99_ms"] is None and latency["p99_note"].startswith("n/a (")
        assert row["throughput_b32"]["sentences_per_s"] > 0


def _comparison(speedup: float, samples: int, wait: float, total: int) -> dict[str, Any]:
    enough = samples >= 100
    return {
        "speedup": speedup,
        "ci": [speedup - 0.1, speedup + 0.1],
        "inputs_timed": total,
        "inputs_total": total,
        "samples_per_side": samples,
        "p50_ms": {"a": 10.0, "b": 10.0 / speedup},
        "p99_ms": {"a": 20.0, "b": 20.0 / speedup},
        "p99_speedup": speedup if enough else None,
        "p99_note": None if enough else f"n/a ({samples} samples)",
        "host_load": {"run_queue_wait": wait, "other_cpu": 0.0, "cores": 2, "busy": False},
    }


def _variant(name: str, b1: dict[str, Any] | None, b32: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "variant": name,
        "b1": b1,
        "b32": b32,
        "latency_b1": {
            "p50_ms": 5.0,
            "p99_ms": None if b1 and b1["p99_note"] else 9.0,
            "p99_note": (b1 or {}).get("p99_note"),
        },
        "throughput_b32": {"sentences_per_s": 100.0},
        "latency_speedup": b1["speedup"] if b1 else 1.0,
        "throughput_speedup": b32["speedup"] if b32 else 1.0,
        "cosine_min": 0.99,
        "max_abs_diff": 0.1,
        "label_agreement": 1.0,
    }


def _section(samples: int) -> dict[str, Any]:
    return {
        "command": COMMAND,
        "quick": False,
        "threads": 2,
        "host_load": {"run_queue_wait": 0.01, "other_cpu": 0.0, "cores": 2, "busy": False},
        "workloads": {"b1": {"serving_batch_size": 1}, "b32": {"serving_batch_size": 32}},
        "variants": [
            _variant("eager", None, None),
            _variant(
                "onnxruntime int8",
                _comparison(3.0, samples, 0.02, 200),
                _comparison(2.0, 1024, 0.04, 512),
            ),
        ],
    }


def _render(tmp_path: Path, **sections: Any) -> dict[str, str]:
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "hardware.json").write_text(json.dumps(sections))
    return render_all(Results(folder))


def test_the_row_shows_intervals_p99_coverage_and_load(tmp_path: Path) -> None:
    rendered = _render(tmp_path, cpu_encoder=_section(samples=800))
    row = rendered["hardware.summary.cpu"]
    assert "onnxruntime int8 **3.00x** [2.90, 3.10]" in row
    assert "batch 32: onnxruntime int8 **2.00x** [1.90, 2.10]" in row
    assert "P50 3.33 ms (eager 10.00 ms), P99 3.00x lower" in row
    assert "batch 1: each variant timed on 200 of 200 sentences, 800 samples per side" in row
    assert "timed on 512 of 512 sentences (served in batches of 32), 1,024 samples" in row
    assert "run-queue wait 1 %" in row and "run-queue wait per comparison 2 %–4 %" in row
    assert "pending" not in row
    assert "Run-queue wait per comparison: 2 %–4 %." in rendered["hardware.cpu"]


def test_too_few_samples_for_a_p99_say_so(tmp_path: Path) -> None:
    rendered = _render(tmp_path, cpu_encoder=_section(samples=76))
    assert "P99 n/a (76 samples)" in rendered["hardware.summary.cpu"]
    assert "5.00 / n/a (76 samples)" in rendered["hardware.cpu"]


def test_results_from_before_compare_read_pending_with_the_command(tmp_path: Path) -> None:
    faster = {**_variant("onnxruntime int8", None, None), "latency_speedup": 4.43}
    old = {
        "command": COMMAND,
        "quick": False,
        "threads": 2,
        "conditions": {"runqueue_wait_share": 0.009},
        "sizes": {"latency_sentences": 200, "throughput_sentences": 512, "rounds": 3},
        "variants": [_variant("eager", None, None), faster],
    }
    rendered = _render(tmp_path, cpu_encoder=old)
    row = rendered["hardware.summary.cpu"]
    pending = f"pending a quiet run (`{COMMAND}`)"
    assert "onnxruntime int8 **4.43x**" in row
    assert f"onnxruntime int8 at batch 1: P99 {pending}" in row
    assert "a run before compare (200 sentences × 3 rounds); intervals, " in row
    assert row.count(pending) == 2
    assert pending in rendered["hardware.cpu"] and pending in rendered["readme.hardware"]


def test_a_section_without_the_serving_batch_is_not_taken_as_the_new_run(tmp_path: Path) -> None:
    section = _section(samples=800)
    del section["workloads"]
    row = _render(tmp_path, cpu_encoder=section)["hardware.summary.cpu"]
    assert f"P99 pending a quiet run (`{COMMAND}`)" in row


def test_a_smoke_run_is_never_the_headline(tmp_path: Path) -> None:
    smoke = {**_section(samples=800), "quick": True, "command": f"{COMMAND} --quick"}
    row = _render(tmp_path, cpu_encoder_quick=smoke)["hardware.summary.cpu"]
    assert "pending a quiet run (only a smoke run recorded" in row
    assert "3.00x" not in row
