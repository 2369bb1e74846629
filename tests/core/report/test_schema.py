"""The JSON Schemas for the profile and the report, and the validator's numeric rules."""

from __future__ import annotations

import builtins
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from pipetune.core.kernel.errors import ConfigError, MissingDependency
from pipetune.core.report import schema

pytest.importorskip("jsonschema", reason="dev extra (jsonschema) not installed")

SCHEMA_DIR = Path(schema.__file__).resolve().parents[2] / "schemas"


def _summary() -> dict[str, Any]:
    return {
        "mode": "offline",
        "samples": 300,
        "throughput_rps": 120.5,
        "latency_ms": {"p50": 7.9, "p95": 9.0, "p99": 12.5, "max": 20.1},
        "stages": [
            {"name": "tokenize", "kind": "tokenize", "share": 0.6, "p50_ms": 4.7},
            {"name": "model", "kind": "inference", "share": 0.35, "p50_ms": 2.8},
            {"name": "other", "kind": "other", "share": 0.05, "p50_ms": 0.4},
        ],
    }


def _report() -> dict[str, Any]:
    return {
        "schema_version": "1.0",
        "pipeline": "sentiment",
        "machine": {"cpu": "Intel Xeon", "cores": 2, "gpu": None, "threads": {"torch": 2}},
        "baseline": _summary(),
        "proposals": [
            {
                "id": "nlp.rust_tokenizer",
                "plugin": "nlp",
                "stage": "tokenize",
                "title": "Rust tokenizer",
                "est_e2e_speedup": 1.9,
                "effort": "minutes",
                "accuracy_risk": "none",
                "status": "proposed",
                "reason": "",
            },
            {
                "id": "hardware.tensorrt",
                "plugin": "hardware",
                "stage": "model",
                "title": "TensorRT engine",
                "est_e2e_speedup": None,
                "effort": "hours",
                "accuracy_risk": "low",
                "status": "unavailable",
                "reason": "no CUDA device",
            },
        ],
        "trials": [
            {
                "proposal": "nlp.rust_tokenizer",
                "status": "accepted",
                "reason": "1.8x faster, identical labels",
                "speedup": 1.8,
                "speedup_ci": [1.7, 1.9],
                "fidelity": {
                    "metric": "label_agreement",
                    "value": 1.0,
                    "threshold": 0.99,
                    "details": {"n": 500},
                    "gate": "met",
                    "items_to_prove": None,
                },
                "measured": _coverage(),
            },
            {
                "proposal": "nlp.truncate",
                "status": "rejected",
                "reason": "fidelity below threshold",
                "speedup": None,
                "speedup_ci": None,
                "fidelity": None,
            },
        ],
        "final": _summary(),
        "speedup": {"throughput": 1.8, "p99_latency": 1.6},
        "cost": {
            "per_1000_before": 0.01,
            "per_1000_after": 0.005,
            "monthly_before": 100.0,
            "monthly_after": 50.0,
        },
        "requirements_met": True,
        "comparison": _coverage(),
        "host_load": _host_load(),
    }


def _coverage() -> dict[str, Any]:
    return {
        "inputs_timed": 100,
        "inputs_total": 180,
        "samples_per_side": 1600,
        "coverage_note": "",
        "quantiles_shown": {"p50": True, "p95": True, "p99": True},
        "host_load": _host_load(),
    }


def _host_load() -> dict[str, Any]:
    return {"run_queue_wait": 0.03, "other_cpu": 0.2, "other_cpu_share": 0.1, "busy": False}


def test_schema_files_are_valid_json_schemas() -> None:
    import jsonschema

    for kind, name in schema.SCHEMAS.items():
        document = json.loads((SCHEMA_DIR / name).read_text())
        jsonschema.validators.validator_for(document).check_schema(document)
        assert schema.load_schema(kind) == document


def test_a_complete_report_is_valid() -> None:
    schema.validate("report", _report())


def test_unknown_fields_are_allowed_because_fields_may_be_added() -> None:
    report = _report()
    report["recipe"] = {"changes": []}
    report["trials"][0]["duration_s"] = 3.2
    schema.validate("report", report)


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda r: r["trials"][0].update(status="maybe"), "trials[0].status"),
        (lambda r: r["proposals"][0].update(status="done"), "proposals[0].status"),
        (lambda r: r["proposals"][0].update(id="nodots"), "proposals[0].id"),
        (lambda r: r.pop("requirements_met"), "(document)"),
        (lambda r: r["baseline"].update(mode="batch"), "baseline.mode"),
        (lambda r: r["trials"][0].update(fidelity=None), "trials[0].fidelity"),
        (lambda r: r["baseline"]["stages"].pop(), "baseline.stages"),
        # every side-by-side figure says what it rests on, and the host's load
        (lambda r: r.pop("host_load"), "(document)"),
        (lambda r: r["host_load"].pop("run_queue_wait"), "host_load"),
        (lambda r: r["comparison"].pop("inputs_timed"), "comparison"),
        (lambda r: r["comparison"].pop("samples_per_side"), "comparison"),
        (lambda r: r["trials"][0]["measured"].pop("inputs_total"), "trials[0].measured"),
        (lambda r: r["trials"][0]["fidelity"].update(gate="proven"), "trials[0].fidelity"),
    ],
)
def test_contract_violations_are_named_with_their_path(mutate: Any, where: str) -> None:
    report = _report()
    mutate(report)
    with pytest.raises(schema.SchemaError) as info:
        schema.validate("report", report)
    assert any(p.startswith(where) for p in info.value.problems), info.value.problems
    assert isinstance(info.value, ConfigError)


def test_shares_must_sum_to_one() -> None:
    report = _report()
    report["final"]["stages"][0]["share"] = 0.5
    found = schema.problems("report", report)
    assert found == ["final.stages: shares sum to 0.900000, not 1"]


def test_percentiles_must_be_ordered() -> None:
    report = _report()
    report["baseline"]["latency_ms"]["p99"] = 8.0
    found = schema.problems("report", report)
    assert found == ["baseline.latency_ms: p95 (9) > p99 (8)"]


def test_profile_schema_requires_machine() -> None:
    data = copy.deepcopy(_summary())
    data["pipeline"] = "p"
    with pytest.raises(schema.SchemaError, match="machine"):
        schema.validate("profile", data)


def test_unknown_kind_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown schema"):
        schema.validate("recipe", {})


def test_missing_jsonschema_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "jsonschema":
            raise ImportError("no jsonschema")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(MissingDependency, match=r"pipetune\[dev\]"):
        schema.validate("report", _report())
