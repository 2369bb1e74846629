"""The profiler: shares, percentiles, passes, warnings, Ctrl-C, modes, schema."""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipetune.core.kernel.errors import StageError
from pipetune.core.kernel.model import Pipeline, Stage, Trace, Workload
from pipetune.core.kernel.results import ConcurrencyPoint, Machine, Profile
from pipetune.core.measure import probes
from pipetune.core.measure.profile_summary import summarize
from pipetune.core.measure.profiler import profile
from pipetune.core.runtime.observe import input_size
from pipetune.core.runtime.offline import run_offline

FAST = {"sweep_budget_s": 0.15, "gil_budget_s": 0.05, "hot_items": 8, "memory_items": 2}


def tokenize(text: str) -> list[int]:
    return [ord(c) for c in text]


def _sum_of_squares(values: list[int]) -> int:
    total = 0
    for value in values:
        total += value * value
    return total


def score(ids: list[int]) -> float:
    return _sum_of_squares(ids * 5) / (len(ids) or 1)


def label(value: float) -> str:
    return "pos" if value > 5000 else "neg"


def text_pipeline() -> Pipeline:
    return Pipeline(
        "text",
        (
            Stage("tokenize", tokenize, kind="tokenize"),
            Stage("score", score, kind="inference"),
            Stage("label", label, kind="postprocess"),
        ),
        output_kind="labels",
    )


def texts(n: int = 40) -> tuple[str, ...]:
    return tuple("review " * (1 + i % 7) + str(i) for i in range(n))


def quick(pipeline: Pipeline, workload: Workload, **options: Any) -> Profile:
    return profile(pipeline, workload, **{**FAST, **options})


@pytest.mark.slow
def test_shares_sum_to_one_with_other_last_and_percentiles_ordered() -> None:
    prof = quick(text_pipeline(), Workload(items=texts(), repeats=2, concurrency=(1, 2)))
    names = [s.name for s in prof.stages]
    assert names == ["tokenize", "score", "label", "other"]
    assert math.isclose(sum(s.share for s in prof.stages), 1.0, abs_tol=1e-9)
    lat = prof.latency_ms
    assert 0 < lat.p50 <= lat.p95 <= lat.p99 <= lat.max
    for stage in prof.stages:
        assert stage.p50_ms <= stage.p95_ms <= stage.p99_ms <= stage.max_ms
    assert prof.samples == 80 and len(prof.stage_ms) == 80
    assert prof.throughput_rps > 0
    assert prof.mode == "offline" and not prof.stopped


def test_profile_validates_against_the_schema_and_round_trips() -> None:
    pytest.importorskip("jsonschema", reason="dev extra (jsonschema) not installed")
    from pipetune.core.report.schema import validate

    prof = quick(text_pipeline(), Workload(items=texts(), repeats=1, concurrency=(1, 2)))
    data = json.loads(prof.to_json())
    validate("profile", data)
    validate("profile", {**prof.summary(), "pipeline": "text", "machine": data["machine"]})
    again = Profile.from_dict(data)
    assert again.stages == prof.stages and again.concurrency == prof.concurrency


def test_stage_cpu_ratio_and_machine_threads_are_recorded() -> None:
    prof = quick(text_pipeline(), Workload(items=texts()), threads=1)
    assert all(s.cpu_ratio is not None for s in prof.stages[:-1])
    assert prof.machine.threads["pinned"] is True and prof.machine.threads["requested"] == 1
    assert prof.machine.cpu and prof.machine.cores >= 1


@pytest.mark.slow
def test_concurrency_sweep_has_a_point_per_level() -> None:
    nap = Pipeline("nap", (Stage("nap", lambda x: time.sleep(0.002) or x),))
    prof = quick(nap, Workload(items=tuple(range(40)), concurrency=(1, 2, 4)))
    assert [p.concurrency for p in prof.concurrency] == [1, 2, 4]
    assert all(p.samples > 0 and p.throughput_rps > 0 for p in prof.concurrency)
    assert prof.passes["sweep"]["levels"] == [1, 2, 4]
    assert "specific to this host" in prof.knee_note


def test_find_knee_and_its_note() -> None:
    def point(c: int, rps: float, p99: float = 10.0) -> ConcurrencyPoint:
        return ConcurrencyPoint(c, rps, 5.0, p99)

    flat = [point(1, 100), point(2, 190), point(4, 200, 40), point(8, 202, 90)]
    assert probes.find_knee(flat) == 2
    assert probes.find_knee([point(1, 100), point(2, 200), point(4, 400)]) is None
    assert probes.find_knee([point(1, 100)]) is None
    machine = Machine(cpu="Test CPU", cores=4)
    note = probes.knee_note(flat, 2, machine)
    assert "Knee at concurrency 2" in note and "Test CPU, 4 cores" in note
    assert "specific to this host" in note
    assert "still rises" in probes.knee_note([point(1, 1), point(2, 2)], None, machine)


def test_gil_classification_rules() -> None:
    assert probes.classify_gil(0.05, None, 8) is False  # waits: sleep, I/O, a device
    assert probes.classify_gil(3.5, None, 8) is False  # native threads on several cores
    assert probes.classify_gil(1.0, 1.02, 8) is True  # busy, does not scale: the GIL
    assert probes.classify_gil(1.0, 1.9, 8) is False  # busy, scales: releases the GIL
    assert probes.classify_gil(1.0, None, 8) is None  # busy, not checked: cannot tell
    assert probes.classify_gil(1.0, 1.0, 1) is None  # one core: threads cannot overlap
    assert probes.classify_gil(None, 1.0, 8) is None


@pytest.mark.slow
def test_gil_pass_checks_heavy_stages_and_clears_a_sleeping_one() -> None:
    p = Pipeline(
        "mixed",
        (
            Stage("sleepy", lambda x: time.sleep(0.003) or x),
            Stage("busy", lambda x: _sum_of_squares(list(range(30_000))) and x),
        ),
    )
    prof = quick(p, Workload(items=tuple(range(30))), sweep=False)
    sleepy = prof.stage("sleepy")
    assert sleepy.cpu_ratio is not None and sleepy.cpu_ratio < 0.5
    assert sleepy.holds_gil is False
    checked = prof.passes["gil"]["stages"]
    if prof.passes["gil"]["cores"] >= 2:
        assert set(checked) == {"sleepy", "busy"}
        assert prof.stage("busy").gil_scaling is not None
    assert "criterion" in prof.passes["gil"]


@pytest.mark.slow
def test_cpu_ratio_counts_a_batch_once_on_both_sides() -> None:
    """In a batch, every input carries the batch's wall time; its CPU time is counted once,
    so the wall time must be too: a busy stage served in batches of 8 is as busy as one
    served one at a time (counted per input, it looked 8 times less busy). Compared within
    the test, so the host's load cancels."""
    from pipetune.core.runtime.serving import with_serving

    def busy(x: int) -> int:
        return _sum_of_squares(list(range(20_000))) and x

    def busy_batch(xs: list[int]) -> list[int]:
        return [busy(x) for x in xs]

    p = Pipeline("batched", (Stage("busy", busy, batch_fn=busy_batch),))
    workload = Workload(items=tuple(range(32)))
    one = quick(p, workload, sweep=False, gil_check=False).stage("busy").cpu_ratio
    batched = quick(with_serving(p, batch_size=8), workload, sweep=False, gil_check=False)
    ratio = batched.stage("busy").cpu_ratio
    assert one is not None and ratio is not None and ratio > one / 3


def test_a_stage_that_breaks_under_threads_gets_a_hint() -> None:
    import threading

    inside = threading.Lock()

    def not_thread_safe(x: int) -> int:
        if not inside.acquire(blocking=False):
            raise RuntimeError("Already borrowed")
        try:
            time.sleep(0.002)
            return x
        finally:
            inside.release()

    prof = quick(
        Pipeline("unsafe", (Stage("tok", not_thread_safe),)),
        Workload(items=tuple(range(20)), concurrency=(1, 2)),
    )
    if prof.passes["gil"]["cores"] >= 2:
        assert any("not thread-safe" in h or "thread-safe" in h for h in prof.hints)


def test_hot_functions_name_the_python_helper() -> None:
    prof = quick(text_pipeline(), Workload(items=texts()), sweep=False, gil_check=False)
    functions = [f.function for f in prof.hot_functions["score"]]
    assert any(f.startswith("_sum_of_squares") for f in functions)
    top = prof.hot_functions["score"][0]
    assert top.share > 0 and top.self_ms > 0 and top.calls > 0
    assert prof.passes["hot_functions"]["inputs"] == FAST["hot_items"]
    # pipetune's own Stage wrapper is not reported as user code.
    assert not any("model.py" in f for f in functions)


@pytest.mark.slow
def test_layer_pass_times_torch_layers_and_leaves_the_model_untouched() -> None:
    torch = pytest.importorskip("torch", reason="torch extra not installed")
    import hashlib

    model = torch.nn.Sequential(
        torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4)
    ).eval()

    def digest() -> str:
        h = hashlib.sha256()
        for name, tensor in model.state_dict().items():
            h.update(name.encode())
            h.update(tensor.numpy().tobytes())
        return h.hexdigest()

    before = digest()

    def infer(x: Any, *, model: Any) -> Any:
        with torch.inference_mode():
            return model(x)

    p = Pipeline("torch", (Stage("infer", infer, kind="inference", slots={"model": model}),))
    items = tuple(torch.randn(2 + i % 3, 32) for i in range(12))
    prof = quick(p, Workload(items=items), sweep=False, gil_check=False, layer_items=4)
    layers = prof.layers["infer"]
    names = [layer.layer for layer in layers]
    assert {"model.0", "model.1", "model.2"} <= set(names)
    assert names[-1] in ("(outside leaf layers)", "(other layers and glue)")
    assert math.isclose(sum(layer.share for layer in layers), 1.0, abs_tol=1e-6)
    assert next(layer for layer in layers if layer.layer == "model.0").module == "Linear"
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert digest() == before


def test_memory_peak_and_python_heap_per_stage() -> None:
    def allocate(x: int) -> int:
        block = np.ones(1_000_000)  # 8 MB, traced by tracemalloc
        return x + int(block[0])

    p = Pipeline("mem", (Stage("small", lambda x: x), Stage("allocate", allocate)))
    prof = quick(p, Workload(items=tuple(range(10))), sweep=False, gil_check=False)
    assert prof.memory_peak_mb is not None and prof.memory_peak_mb > 0
    heap = prof.memory["python_peak_mb_by_stage"]
    assert heap["allocate"] > 7 and heap["small"] < 1
    assert "method" in prof.memory


def test_gpu_section_says_why_it_is_empty_without_cuda() -> None:
    prof = quick(text_pipeline(), Workload(items=texts(10)), sweep=False)
    assert prof.gpu["available"] is False and prof.gpu["reason"]
    assert all(s.gpu_ms is None for s in prof.stages)
    assert "transfers" not in prof.passes


def test_warnings_for_an_unrealistic_workload() -> None:
    same = Workload(items=("same text",) * 12)
    prof = quick(text_pipeline(), same, sweep=False)
    text = " | ".join(prof.warnings)
    assert "every input has the same size (len 9)" in text
    assert "only one concurrency level" in text
    assert "P99 rests on 36 samples; 1000 are needed" in text
    assert "tiny workload: 12 distinct inputs" in text
    assert prof.workload["sizes"]["distinct"] == 1


@pytest.mark.slow
def test_varied_sizes_and_several_levels_do_not_warn_about_them() -> None:
    prof = quick(text_pipeline(), Workload(items=texts(40), concurrency=(1, 2)))
    text = " | ".join(prof.warnings)
    assert "same size" not in text and "one concurrency level" not in text
    assert prof.workload["sizes"]["measure"] == "len"


def test_input_sizes() -> None:
    assert input_size("abc") == ("len", 3.0)
    assert input_size(np.zeros((2, 3))) == ("elements", 6.0)
    assert input_size({"text": "ab", "ids": [1, 2, 3]}) == ("len", 5.0)
    assert input_size(object()) is None
    assert probes.size_summary([object(), "a"]) is None


def test_skipped_errors_are_counted_and_warned_about() -> None:
    def picky(text: str) -> str:
        if text.endswith("3"):
            raise ValueError("no threes")
        return text

    p = Pipeline("picky", (Stage("picky", picky),))
    prof = quick(p, Workload(items=texts(20)), on_error="skip", sweep=False, gil_check=False)
    assert prof.errors.count == 2 * 3  # 2 inputs x 3 repeats
    assert prof.errors.by_stage == {"picky": 6}
    assert any("failed and were skipped" in w for w in prof.warnings)
    with pytest.raises(StageError, match="'picky'"):
        quick(p, Workload(items=texts(20)), sweep=False)


@pytest.mark.slow
def test_progress_is_monotone_and_completes() -> None:
    seen: list[tuple[int, int]] = []
    passes: list[str] = []
    quick(
        text_pipeline(),
        Workload(items=texts(20), concurrency=(1, 2)),
        progress=lambda done, total: seen.append((done, total)),
        on_pass=passes.append,
    )
    assert seen and all(a[0] <= b[0] for a, b in itertools.pairwise(seen))
    assert seen[-1][0] == seen[-1][1]
    assert {total for _, total in seen} == {seen[0][1]}
    assert any(p.startswith("timing") for p in passes)
    assert any(p.startswith("concurrency sweep") for p in passes)


def test_ctrl_c_keeps_what_was_measured() -> None:
    calls = {"n": 0}

    def flaky(x: int) -> int:
        calls["n"] += 1
        if calls["n"] == 50:  # inside the timing pass (warm-up used 16 calls)
            raise KeyboardInterrupt
        return x

    prof = quick(Pipeline("k", (Stage("s", flaky),)), Workload(items=tuple(range(40))))
    assert prof.stopped is True
    assert 0 < prof.samples < 120
    assert prof.warnings[0].startswith("interrupted")
    assert "sweep" not in prof.passes  # nothing ran after the interruption


def test_ctrl_c_before_anything_was_measured_reraises() -> None:
    def stop(x: int) -> int:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        quick(Pipeline("k", (Stage("s", stop),)), Workload(items=(1, 2)))


@pytest.mark.slow
def test_online_profile_reports_queueing_and_rates() -> None:
    nap = Pipeline("nap", (Stage("nap", lambda x: time.sleep(0.002) or x),))
    workload = Workload(items=tuple(range(40)), mode="online", rate=100, repeats=1)
    prof = quick(nap, workload, sweep=False, gil_check=False)
    assert prof.mode == "online"
    online = prof.runtime["online"]
    assert online["offered_rps"] == 100 and online["requests_per_run"] == 40
    assert online["queue_ms"]["p50"] >= 0 and "verdict" in online
    assert math.isclose(sum(s.share for s in prof.stages), 1.0, abs_tol=1e-9)
    assert prof.latency_ms.p50 >= prof.stage("nap").p50_ms * 0.5


def test_online_profile_without_a_rate_offers_measured_capacity() -> None:
    prof = quick(text_pipeline(), Workload(items=texts(30), mode="online", repeats=1))
    assert any("no arrival rate" in w for w in prof.warnings)
    assert prof.runtime["online"]["offered_rps"] > 0


@pytest.mark.slow
def test_stream_profile_and_fallback() -> None:
    from tests.core.runtime.test_stream import generation

    workload = Workload(items=("abc", "defgh", "ij") * 4, mode="stream", rate=300, repeats=1)
    prof = quick(generation(), workload)
    assert prof.mode == "stream"
    stream = prof.runtime["stream"]
    assert stream["ttft_ms"]["p50"] <= stream["completion_ms"]["p50"]
    assert prof.concurrency == ()  # the server owns its concurrency
    fallback = quick(text_pipeline(), Workload(items=texts(10), mode="stream", rate=500))
    assert fallback.mode == "online"
    assert any("no stage implements serve" in w for w in fallback.warnings)


def test_trace_replay_profile() -> None:
    arrivals = Trace(tuple(0.004 * i for i in range(30)))
    workload = Workload(items=texts(10), mode="online", trace=arrivals, repeats=1)
    prof = quick(text_pipeline(), workload, sweep=False)
    assert prof.runtime["online"]["source"] == "trace"
    assert prof.samples == 30


def test_chrome_trace_is_written(tmp_path: Path) -> None:
    out = tmp_path / "run.trace.json"
    quick(text_pipeline(), Workload(items=texts(10)), sweep=False, chrome_trace=out)
    events = json.loads(out.read_text())["traceEvents"]
    names = {e["name"] for e in events if e["ph"] == "X"}
    assert names == {"tokenize", "score", "label"}


def test_summarize_with_nothing_completed_keeps_shares_summing_to_one() -> None:
    def broken(x: int) -> int:
        raise ValueError("always")

    p = Pipeline("b", (Stage("b", broken),))
    result = run_offline(p, [1, 2], on_error="skip")
    prof = summarize(p, Workload(items=(1, 2)), [result])
    assert [s.share for s in prof.stages] == [0.0, 1.0]
    assert prof.samples == 0 and prof.errors.count == 2


@pytest.mark.slow
def test_same_size_arrays_get_a_softer_warning() -> None:
    prof = quick(
        Pipeline("vec", (Stage("norm", lambda v: float(np.linalg.norm(v))),)),
        Workload(items=tuple(np.ones(64) * i for i in range(40)), concurrency=(1, 2)),
    )
    warning = next(w for w in prof.warnings if "same size" in w)
    assert warning.startswith("every input has the same size (64 elements)")
    assert "fixed-size features" in warning


@pytest.mark.slow
def test_bounded_passes_stop_at_their_time_budget() -> None:
    slow = Pipeline("slow", (Stage("slow", lambda x: time.sleep(0.05) or x),))
    prof = quick(
        slow,
        Workload(items=tuple(range(6)), warmup=0, repeats=1, concurrency=(1, 2)),
        pass_budget_s=0.01,
        hot_items=32,
        memory_items=32,
        sweep_budget_s=0.05,
    )
    # Each bounded pass took its first input, then found its budget spent.
    assert prof.passes["hot_functions"]["inputs"] == 1
    assert prof.passes["memory"]["inputs"] == 1
    level_two = next(p for p in prof.concurrency if p.concurrency == 2)
    assert 0 < level_two.samples < 20  # the time box ended the level
