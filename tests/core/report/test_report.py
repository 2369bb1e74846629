"""Reports: the JSON contract, terminal, Markdown, self-contained HTML, cost."""

from __future__ import annotations

import io
import json
import re

import pytest

from pipetune.core.kernel.model import Requirements
from pipetune.core.kernel.results import (
    Change,
    ConcurrencyPoint,
    Fidelity,
    Recipe,
    Trial,
)
from pipetune.core.report import cost, html, markdown, terminal
from pipetune.core.report import json as report_json
from pipetune.core.report.model import Report
from tests.core.loop.test_planner import make_profile

HOST_LOAD = {
    "seconds": 40.0,
    "run_queue_wait": 0.03,
    "other_cpu": 0.2,
    "other_cpu_share": 0.1,
    "load_average": 0.5,
    "cores": 2,
    "threshold": 0.1,
    "busy": False,
}


def sample_report(**overrides) -> Report:
    baseline = make_profile([[8.0, 2.0, 0.2]] * 20 + [[30.0, 2.0, 0.2]] * 2).evolve(
        pipeline="<b>docs</b>",
        concurrency=(
            ConcurrencyPoint(1, 100.0, 9.0, 30.0),
            ConcurrencyPoint(4, 180.0, 20.0, 60.0),
        ),
    )
    final = make_profile([[2.0, 2.0, 0.2]] * 22).evolve(
        concurrency=(ConcurrencyPoint(1, 230.0, 4.0, 5.0), ConcurrencyPoint(4, 410.0, 9.0, 14.0))
    )
    fid = Fidelity(
        metric="label_agreement",
        value=0.996,
        threshold=0.99,
        n=2000,
        ci=(0.992, 0.998),
        gate="met",
    )
    change = Change(proposal="toy.fast", plugin="toy", stage="a", params={"k": 2})
    trials = (
        Trial(
            proposal="toy.fast",
            status="accepted",
            reason="faster: 2.30x [2.10, 2.50] on throughput",
            stage="a",
            plugin="toy",
            speedup=2.3,
            speedup_ci=(2.1, 2.5),
            est_speedup=2.5,
            fidelity=fid,
            change=change,
        ),
        Trial(
            proposal="toy.coreml",
            status="deferred",
            reason="Core ML predictions need macOS",
            stage="a",
            plugin="toy",
            artifact="ab/model.mlpackage",
            command="pipetune apply app:p --recipe r.json",
        ),
    )
    comparison = {
        "metric": "throughput",
        "speedup": {"throughput": 2.3, "p50": 2.0, "p95": 2.1, "p99": 3.5},
        "ci": {
            k: [v * 0.9, v * 1.1]
            for k, v in {"throughput": 2.3, "p50": 2.0, "p95": 2.1, "p99": 3.5}.items()
        },
        "rounds": 8,
        "items_per_round": 20,
        "a": {
            "throughput_rps": 100.0,
            "latency_ms": {"p50": 9.0, "p95": 20.0, "p99": 31.0},
            "stage_ms": {},
            "passes": 16,
            "items": 320,
        },
        "b": {
            "throughput_rps": 230.0,
            "latency_ms": {"p50": 4.5, "p95": 9.0, "p99": 8.9},
            "stage_ms": {},
            "passes": 16,
            "items": 320,
        },
        "cdf_ms": {"before": [float(i) for i in range(101)], "after": [i / 2 for i in range(101)]},
        "inputs_timed": 160,
        "inputs_total": 300,
        "samples_per_side": 320,
        "coverage_note": "",
        "host_load": HOST_LOAD,
    }
    values = {
        "pipeline": "<b>docs</b>",
        "machine": baseline.machine,
        "requirements": Requirements(cost_per_hour=3.6, monthly_volume=10_000_000),
        "baseline": baseline,
        "final": final,
        "trials": trials,
        "proposals": (
            {
                "id": "toy.fast",
                "plugin": "toy",
                "stage": "a",
                "title": "Fast path",
                "est_e2e_speedup": 2.5,
                "effort": "minutes",
                "accuracy_risk": "low",
                "status": "proposed",
                "reason": "",
                "applicable": True,
                "note": "",
            },
            {
                "id": "toy.distill",
                "plugin": "toy",
                "stage": "a",
                "title": "Distill",
                "est_e2e_speedup": 4.0,
                "effort": "weeks",
                "accuracy_risk": "medium",
                "status": "proposed",
                "reason": "weeks of work",
                "applicable": False,
            },
            {
                "id": "toy.trt",
                "plugin": "toy",
                "stage": "a",
                "title": "TensorRT",
                "est_e2e_speedup": 3.0,
                "effort": "hours",
                "accuracy_risk": "low",
                "status": "unavailable",
                "reason": "tensorrt is not installed",
                "install": 'pip install "pipetune[tensorrt]"',
            },
        ),
        "comparison": comparison,
        "requirements_met": True,
        "stopped": "requirements met",
        "recipe": Recipe(pipeline="<b>docs</b>", changes=(change,)),
        "fidelity": fid,
        "run_id": "20260101-000000-abc123",
        "warnings": ("the workload is tiny",),
        "host_load": HOST_LOAD,
    }
    values.update(overrides)
    return Report(**values)


def test_the_json_report_follows_the_contract_and_its_schema(tmp_path):
    data = sample_report().to_dict()
    assert data["speedup"]["throughput"] == 2.3 and data["speedup"]["p99_latency"] == 3.5
    assert data["trials"][1]["command"].startswith("pipetune apply")
    problems = report_json.write(data, tmp_path / "r.json")
    pytest.importorskip("jsonschema", reason="the dev extra checks the schema")
    assert problems == []
    assert json.loads((tmp_path / "r.json").read_text())["pipeline"] == "<b>docs</b>"


def test_cost_per_1000_and_per_month():
    figures = cost.estimate(Requirements(cost_per_hour=3.6, monthly_volume=10_000_000), 100, 200)
    # 3.60 $/h = 0.001 $/s; 1,000 predictions take 10 s before, 5 s after
    assert figures["per_1000_before"] == pytest.approx(0.01)
    assert figures["per_1000_after"] == pytest.approx(0.005)
    assert figures["monthly_before"] == pytest.approx(100.0)
    assert figures["monthly_after"] == pytest.approx(50.0)
    assert figures["instances_before"] == 1 and figures["provisioned_monthly_before"] == 3.6 * 730
    assert cost.estimate(Requirements(), 100, 200) is None


def test_the_html_page_is_self_contained_with_three_plots(tmp_path):
    page = html.render(sample_report().to_dict())
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 3
    for external in ("http://", "https://", "src=", "href=", "<script", "@import", "url("):
        assert external not in page, external
    assert "&lt;b&gt;docs&lt;/b&gt;" in page and "<b>docs</b>" not in page  # escaped
    assert "pipetune apply app:p --recipe r.json" in page  # the deferred command
    assert "pip install &quot;pipetune[tensorrt]&quot;" in page
    assert "$0.0100" in page and "$100" in page  # cost before/after
    polyline = re.findall(r"<polyline points=\"([^\"]+)\"", page)
    assert len(polyline) >= 4  # two CDF curves and two concurrency curves
    html.write(sample_report().to_dict(), tmp_path / "r.html")
    assert (tmp_path / "r.html").read_text(encoding="utf-8") == page


def test_markdown_and_terminal_say_the_same_things():
    from rich.console import Console

    data = sample_report().to_dict()
    text = markdown.render(data)
    assert "| throughput | 100.0/s | 230.0/s | 2.30x [2.07, 2.53] |" in text
    assert "`toy.distill`" in text and "Core ML predictions need macOS" in text
    buffer = io.StringIO()
    terminal.render(data, Console(file=buffer, width=140, color_system=None))
    out = buffer.getvalue()
    assert "2.30x [2.07, 2.53]" in out and "requirements met" in out
    assert "finish with: pipetune apply app:p --recipe r.json" in out
    assert "tensorrt is not installed" in out and "Advice" in out


def test_a_report_without_a_comparison_uses_the_profiles():
    data = sample_report(comparison=None, requirements=Requirements()).to_dict()
    assert data["speedup"]["measured"] == "profiles" and data["cost"] is None
    assert "<svg" in html.render(data)


def test_the_terminal_prints_brackets_literally():
    from rich.console import Console

    base = sample_report()
    trial = base.trials[0].evolve(reason="needs pipetune[vision] and [bold]nothing[/bold]")
    data = sample_report(pipeline="docs[v2]", trials=(trial,), warnings=("see [red]x",)).to_dict()
    buffer = io.StringIO()
    terminal.render(data, Console(file=buffer, width=200, color_system=None))
    out = buffer.getvalue()
    assert "docs[v2]" in out and "needs pipetune[vision] and [bold]nothing[/bold]" in out
    assert "see [red]x" in out


def _rendered(data) -> dict[str, str]:
    from rich.console import Console

    buffer = io.StringIO()
    terminal.render(data, Console(file=buffer, width=200, color_system=None))
    return {
        "terminal": buffer.getvalue(),
        "markdown": markdown.render(data),
        "html": html.render(data),
    }


def test_every_renderer_says_what_the_figures_rest_on_and_the_host_load():
    data = sample_report().to_dict()
    assert data["comparison"]["inputs_timed"] == 160 and data["speedup"]["samples_per_side"] == 320
    assert data["host_load"]["run_queue_wait"] == 0.03
    for name, text in _rendered(data).items():
        assert "timed on 160 of 300 inputs, 320 latency samples per side" in text, name
        assert "run-queue wait 3%" in text and "other processes 0.2 of 2 cores" in text, name
        assert "BUSY" not in text, name


def test_a_quantile_with_too_few_samples_is_not_shown_anywhere():
    comparison = dict(sample_report().comparison, samples_per_side=40, inputs_timed=20)
    data = sample_report(comparison=comparison).to_dict()
    for name, text in _rendered(data).items():
        assert "n/a (40 samples)" in text, name  # P99 needs 100 a side
        assert "3.50x" not in text, name  # the P99 ratio is not printed
        assert "2.00x" in text, name  # P50 has enough samples behind it


def test_a_busy_host_is_called_noisy_in_every_renderer():
    busy = dict(HOST_LOAD, run_queue_wait=0.35, busy=True)
    data = sample_report(host_load=busy).to_dict()
    for name, text in _rendered(data).items():
        assert "run-queue wait 35%" in text and "BUSY: the figures are noisy" in text, name


def test_an_unproven_gate_is_never_printed_as_met():
    fid = Fidelity(
        metric="label_agreement",
        value=1.0,
        threshold=0.99,
        n=186,
        ci=(0.980, 1.0),
        gate="unproven",
        items_to_prove=195,
    )
    data = sample_report(fidelity=fid, requirements_met=False).to_dict()
    for name, text in _rendered(data).items():
        assert "UNPROVEN: 195 more items would prove it" in text, name


def test_an_exact_gate_shows_no_interval_that_contradicts_it():
    # a 1.000 gate (every held-out item must agree) is a check of each item: its Wilson
    # interval's lower bound is below 1 on any sample, and printed beside "requirements
    # met" it reads as a contradiction
    exact = Fidelity(
        metric="tokens_exact", value=1.0, threshold=1.0, n=18, ci=(0.806, 1.0), gate="met"
    )
    data = sample_report(fidelity=exact).to_dict()
    assert data["requirements_met"] and data["fidelity"]["gate"] == "met"
    for name, text in _rendered(data).items():
        assert "requirements met" in text, name
        assert "exact gate: identical on all 18 held-out items" in text, name
        assert "0.806" not in text and "≥ 1.000" not in text, name
    older = exact.evolve(gate=None)  # a report from before gates had a status
    for name, text in _rendered(sample_report(fidelity=older).to_dict()).items():
        assert "exact gate: identical on all 18 held-out items" in text, name
    missed = exact.evolve(value=0.944, ci=(0.742, 0.990), gate="missed")
    data = sample_report(fidelity=missed, requirements_met=False).to_dict()
    for name, text in _rendered(data).items():
        assert "exact gate MISSED: not identical on all 18 held-out items" in text, name


def test_a_statistical_gate_says_whether_it_is_met():
    for name, text in _rendered(sample_report().to_dict()).items():
        assert "label_agreement 0.996 [0.992, 0.998] (gate ≥ 0.990: met)" in text, name


def test_an_unproven_or_missed_gate_never_sits_beside_requirements_met():
    # a report flagged met whose cumulative gate is not: every renderer says NOT met
    for gate in ("unproven", "missed"):
        fid = Fidelity(
            metric="label_agreement",
            value=0.995,
            threshold=0.99,
            n=186,
            ci=(0.97, 0.999),
            gate=gate,
            items_to_prove=400 if gate == "unproven" else None,
        )
        data = sample_report(fidelity=fid, requirements_met=True, stopped="done").to_dict()
        for name, text in _rendered(data).items():
            assert f"requirements NOT met: the fidelity gate is {gate}" in text, (name, gate)
            assert "requirements met" not in text, (name, gate)


def test_every_renderer_says_why_each_proposal_was_not_tried():
    base = sample_report()
    untried = (
        *base.proposals,
        {
            "id": "toy.next",
            "plugin": "toy",
            "stage": "b",
            "title": "Next",
            "est_e2e_speedup": 2.83,
            "effort": "hours",
            "accuracy_risk": "none",
            "status": "proposed",
            "reason": "",
            "not_tried": "not reached: the time budget (60 s) was spent",
            "estimated_on": "after toy.fast",
            "ceiling": 603179.73,
            "ceiling_informative": False,
        },
        {  # a report written before the loop gave reasons: the plan's exclusion
            "id": "toy.exact",
            "plugin": "toy",
            "stage": "a",
            "title": "Exact",
            "est_e2e_speedup": 2.25,
            "effort": "days",
            "accuracy_risk": "none",
            "status": "proposed",
            "reason": "",
            "excluded": "conflicts with toy.fast, already applied",
        },
    )
    data = sample_report(proposals=untried, stopped="nothing left worth trying").to_dict()
    for name, text in _rendered(data).items():
        assert "not reached: the time budget (60 s) was spent" in text, name
        assert "conflicts with toy.fast, already applied" in text, name
        assert "2.83x" in text and "2.25x" in text, name
        assert "not reached: nothing left worth trying" not in text, name
        assert "603179" not in text, name
    pytest.importorskip("jsonschema", reason="the dev extra checks the schema")
    assert report_json.schema_problems(data) == []
