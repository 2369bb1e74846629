"""Instance advice: cost per 1,000 predictions on CPU, T4-, A100- and H100-class machines.

This is advice, not a measurement: only the current machine is measured. The other rows
are estimates from the measured profile and stated assumptions, shown with the result:

* CPU-side work (every stage but the model) scales linearly with vCPUs at this machine's
  per-core speed (parallel workers; no GIL-bound stage assumed).
* The model runs on the GPU at a fraction (:data:`GPU_EFFICIENCY`) of the card's dense
  fp16/bf16 tensor throughput, with batched serving (a batch-1 request stream reaches far
  less); its cost per prediction is the model's FLOPs per call (measured with torch's
  FLOP counter during profiling) times the calls per prediction.
* A machine's throughput is the slower of its CPU side and its GPU side.
* Prices are on-demand list prices at the time of writing, for one GPU's share of an
  instance; pass your own with ``catalog=``. ``Requirements.cost_per_hour`` prices the
  current machine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Fraction of peak tensor-core throughput batched transformer inference reaches.
GPU_EFFICIENCY = 0.25
HOURS_PER_MONTH = 730.0


@dataclass(frozen=True)
class InstanceClass:
    name: str
    example: str
    vcpus: int
    price_per_hour: float
    gpu: str | None = None
    #: Dense fp16/bf16 tensor TFLOPS (no sparsity), from the vendor's data sheet.
    gpu_tflops: float | None = None


CATALOG: tuple[InstanceClass, ...] = (
    InstanceClass("CPU (8 vCPU)", "AWS c7i.2xlarge, on demand", 8, 0.357),
    InstanceClass("T4-class", "AWS g4dn.xlarge, on demand", 4, 0.526, "NVIDIA T4 16 GB", 65.0),
    InstanceClass(
        "A100-class", "GCP a2-highgpu-1g, on demand", 12, 3.67, "NVIDIA A100 40 GB", 312.0
    ),
    InstanceClass(
        "H100-class",
        "1/8 of an AWS p5.48xlarge, on demand (after the June 2025 price cut)",
        24,
        6.88,
        "NVIDIA H100 80 GB SXM",
        989.0,
    ),
)


@dataclass(frozen=True)
class Workload:
    """What one prediction costs on the measured machine."""

    per_item_ms: float  # end-to-end, measured
    model_ms: float  # the part a GPU would take over, measured
    model_gflops: float | None  # model FLOPs per prediction, measured; None if unknown
    cores: int  # of the measured machine
    throughput_rps: float  # measured


def estimate(
    workload: Workload,
    current_price_per_hour: float | None,
    monthly_volume: float | None = None,
    catalog: Sequence[InstanceClass] = CATALOG,
) -> dict[str, Any]:
    """Rows (one per instance class, the measured machine first), the cheapest per 1,000
    predictions, and the assumptions."""
    rows = []
    if current_price_per_hour:
        rows.append(
            _row(
                "this machine (measured)",
                f"{workload.cores} cores, your price",
                current_price_per_hour,
                workload.throughput_rps,
                "measured",
                monthly_volume,
            )
        )
    cpu_part_s = max(workload.per_item_ms - workload.model_ms, 0.0) / 1000
    for instance in catalog:
        scale = instance.vcpus / max(workload.cores, 1)
        if instance.gpu is None:
            rps = workload.throughput_rps * scale
            rows.append(
                _row(
                    instance.name,
                    instance.example,
                    instance.price_per_hour,
                    rps,
                    "cpu",
                    monthly_volume,
                )
            )
            continue
        if not workload.model_gflops or not instance.gpu_tflops:
            rows.append(
                {
                    "instance": instance.name,
                    "example": instance.example,
                    "gpu": instance.gpu,
                    "price_per_hour": instance.price_per_hour,
                    "throughput_rps": None,
                    "per_1000": None,
                    "bound": "unknown: the model's FLOPs were not measured",
                }
            )
            continue
        gpu_rps = instance.gpu_tflops * 1e3 * GPU_EFFICIENCY / workload.model_gflops
        cpu_rps = scale / cpu_part_s if cpu_part_s > 0 else math.inf
        rps = min(gpu_rps, cpu_rps)
        bound = "gpu" if gpu_rps <= cpu_rps else "cpu (the stages around the model)"
        row = _row(
            instance.name, instance.example, instance.price_per_hour, rps, bound, monthly_volume
        )
        row["gpu"] = instance.gpu
        rows.append(row)
    priced = [r for r in rows if r.get("per_1000") is not None]
    best = min(priced, key=lambda r: r["per_1000"]) if priced else None
    return {
        "rows": rows,
        "cheapest": best["instance"] if best else None,
        "assumptions": assumptions(),
    }


def assumptions() -> list[str]:
    return [
        "only the current machine is measured; other rows are estimates",
        "CPU-side stages scale linearly with vCPUs at this machine's per-core speed",
        f"the model reaches {GPU_EFFICIENCY:.0%} of the GPU's dense fp16/bf16 tensor "
        "TFLOPS with batched serving (batch-1 traffic gets much less)",
        "a machine's throughput is the slower of its CPU side and its GPU side",
        "prices: on-demand list prices at the time of writing (USD/hour); pass your own",
    ]


def _row(
    name: str,
    example: str,
    price: float,
    rps: float,
    bound: str,
    monthly_volume: float | None,
) -> dict[str, Any]:
    per_1000 = price / (rps * 3600) * 1000 if rps > 0 else None
    row: dict[str, Any] = {
        "instance": name,
        "example": example,
        "price_per_hour": price,
        "throughput_rps": round(rps, 2),
        "per_1000": per_1000,
        "bound": bound,
    }
    if monthly_volume and rps > 0:
        seconds = HOURS_PER_MONTH * 3600
        instances = max(1, math.ceil(monthly_volume / seconds / rps))
        row["instances_for_volume"] = instances
        row["monthly_cost"] = instances * price * HOURS_PER_MONTH
    return row


def summarize(result: Mapping[str, Any]) -> str:
    """One sentence for a proposal's rationale."""
    rows = [r for r in result["rows"] if r.get("per_1000") is not None]
    if not rows:
        return "no instance could be priced"
    best = min(rows, key=lambda r: r["per_1000"])
    current = next((r for r in rows if r["bound"] == "measured"), None)
    text = f"cheapest per 1,000 predictions: {best['instance']} at ${best['per_1000']:.4f}"
    if current is not None and current is not best:
        text += f" (this machine: ${current['per_1000']:.4f}, measured)"
    return text + " — an estimate; see the assumptions"
