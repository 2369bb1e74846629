"""Capacity for a Ray cluster: per-stage workers and nodes for the growth figures
(``pipetune capacity --engine ray``).

The stages are grouped as ``pipetune run --engine ray`` would run them
(:mod:`pipetune.scale.plan`), and each group is sized for each horizon's rate from the
profile's per-input stage times:

* a CPU-bound group needs ``rate x time per input`` CPUs, planned at ``utilization`` (80 %
  by default) so queues stay short: that many one-CPU workers;
* an I/O-bound group needs ``rate x wall time x headroom`` calls in flight (threads, not
  cores) and only the CPU it burns while waiting;
* nodes = the CPUs of every group over the CPUs per node.

What one machine cannot measure is stated with the plan: moving each row between stage
groups through the object store and the network, and anything that does not scale with
workers (the driver writing the output, a shared database).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace
from typing import Any

from pipetune.core.kernel.model import Growth
from pipetune.scale import plan as planning


@dataclass(frozen=True)
class GroupNeed:
    name: str
    io_bound: bool
    per_item_ms: float
    cpu_ms: float
    workers: int
    threads: int
    cpus: float


@dataclass(frozen=True)
class ClusterHorizon:
    name: str
    rps: float
    groups: tuple[GroupNeed, ...]
    cpus: float
    nodes: int


@dataclass(frozen=True)
class ClusterPlan:
    pipeline: str
    node_cpus: float
    utilization: float
    horizons: tuple[ClusterHorizon, ...]
    assumptions: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [
            f"Ray cluster for {self.pipeline}: nodes of {self.node_cpus:g} CPUs, CPU-bound "
            f"stages planned at {self.utilization:.0%} utilization"
        ]
        for horizon in self.horizons:
            groups = "; ".join(
                f"{g.name} {g.workers} worker(s)"
                + (f" x {g.threads} calls" if g.threads > 1 else "")
                + f" ({g.cpus:.1f} CPU)"
                for g in horizon.groups
            )
            out.append(
                f"  {horizon.name} ({horizon.rps:,.1f} rows/s): {horizon.nodes} node(s), "
                f"{horizon.cpus:.1f} CPUs — {groups}"
            )
        out.append("  assumptions:")
        out.extend(f"    - {a}" for a in self.assumptions)
        return out


def plan_cluster(
    profile: Any,
    growth: Growth,
    *,
    node_cpus: float,
    batch: int = 1,
    utilization: float = 0.8,
) -> ClusterPlan:
    """Per-stage workers and nodes for each growth horizon (see the module docstring)."""
    stages = [
        SimpleNamespace(name=s.name, kind=s.kind) for s in profile.stages if s.name != "other"
    ]
    costs = planning.costs_from_profile(profile, stages, {}, batch)
    groups = planning.fuse_stages(costs)
    horizons = []
    for name, rps in _horizons(growth):
        needs = tuple(_need(group, rps, utilization) for group in groups)
        cpus = sum(n.cpus for n in needs)
        horizons.append(
            ClusterHorizon(name, rps, needs, cpus, max(1, math.ceil(cpus / node_cpus - 1e-9)))
        )
    return ClusterPlan(
        pipeline=profile.pipeline,
        node_cpus=float(node_cpus),
        utilization=utilization,
        horizons=tuple(horizons),
        assumptions=_assumptions(profile, len(groups)),
    )


def _horizons(growth: Growth) -> list[tuple[str, float]]:
    found = [("now", growth.now_rps)]
    for label, value in (
        ("at peak", growth.peak_rps),
        ("in 12 months", growth.in_12_months_rps),
        ("in 24 months", growth.in_24_months_rps),
    ):
        if value is not None:
            found.append((label, value))
    return found


def _need(group: Sequence[planning.StageCost], rps: float, utilization: float) -> GroupNeed:
    wall = sum(c.per_item_ms for c in group)
    cpu = sum(c.cpu_ms for c in group)
    name = "+".join(c.name for c in group)
    if planning.is_io_bound(group):
        calls = max(1, math.ceil(rps * wall / 1000.0 * planning.IO_HEADROOM))
        threads = min(planning.MAX_IO_THREADS, calls)
        workers = math.ceil(calls / threads)
        cpus = rps * cpu / 1000.0 / utilization
        return GroupNeed(name, True, wall, cpu, workers, threads, cpus)
    cpus = rps * wall / 1000.0 / utilization
    return GroupNeed(name, False, wall, cpu, max(1, math.ceil(cpus - 1e-9)), 1, cpus)


def _assumptions(profile: Any, groups: int) -> tuple[str, ...]:
    machine = f"{profile.machine.cpu} ({profile.machine.cores} cores)"
    return (
        f"stage costs are this machine's ({machine}, {profile.samples} profiled inputs); "
        "a node's CPU is assumed as fast",
        "CPU-bound groups scale linearly with one-CPU workers; an I/O-bound group's waits "
        "stay the same at any concurrency (the service it waits on keeps up)",
        f"not measured on one machine: moving each row between the {groups} stage group(s) "
        "(object store and network, per row), Ray's per-task overhead, and the driver "
        "writing the output; run `pipetune run --engine ray` on a sample on the cluster to "
        "measure them",
    )
