"""The plan: how a pipeline runs on Ray Data, derived from what its profile measured.

The usual port of a pipeline to Ray is one ``map_batches`` over the whole pipeline function
with Ray Data's defaults. It throws away what the profile knows. The plan keeps it:

* **Groups.** Every stage with at least :data:`CHEAP_SHARE` of the per-input time (and
  always the slowest) is a ``map_batches`` of its own; each run of cheaper stages between
  them is fused into one.
* **Tasks or actors.** A group whose stages can be shipped (small, picklable components)
  runs as stateless tasks; a group holding a model (a component too big or impossible to
  pickle) runs as an actor pool, each actor building it once (``load_recipe``, no re-tuning).
* **I/O-bound groups** (under :data:`IO_BOUND_RATIO` CPU seconds per wall second in the
  profile) get concurrency beyond the cores: each worker runs ``threads`` calls at once,
  twice what keeping up with the CPU-bound groups needs (at least four per CPU), and
  reserves no CPU (its threads mostly wait).
* **Pool sizes** share the cluster's CPUs between the CPU-bound groups in proportion to
  their per-input time, so the slowest stage gets the most workers.
* **Batch sizes**: inputs go through each stage in the recipe's batches (its dynamic
  batching change, else one at a time); a ``map_batches`` call carries a whole number of
  them, about :data:`TARGET_CALL_MS` of work, so Ray's per-call cost is amortized.

The expected rate assumes the sampled costs hold on every node and ignores transfer
between groups (the object store and the network are not measured on one machine).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pipetune.core.kernel.errors import ConfigError

#: CPU seconds per wall second below which a stage mostly waits. Low on purpose: on a busy
#: host a CPU-bound stage gets a share of a core and measures well under 1.
IO_BOUND_RATIO = 0.25
#: Stages under this share of the per-input time are fused with their neighbours.
CHEAP_SHARE = 0.10
#: About how long one map_batches call should take.
TARGET_CALL_MS = 100.0
MAX_BATCH = 1024
MAX_IO_THREADS = 32
#: The most concurrent calls planned for one I/O-bound group.
MAX_IO_CONCURRENCY = 256
#: Concurrency for an I/O-bound group: this much more than the planned rate needs, and at
#: least IO_CALLS_PER_CPU per CPU of the cluster (threads that mostly wait are cheap; too
#: few would make the I/O stage the bottleneck when the sample underestimated the rate).
IO_HEADROOM = 2.0
IO_CALLS_PER_CPU = 4
MIN_CPUS = 0.05
#: Concurrent tasks of a task group, at least: each call is a new task, and one at a time
#: would add every task's scheduling to the job's time.
MIN_TASKS = 2
#: CPUs left out of the plan for reading and parsing the input files.
READ_CPUS = 0.1
#: A group whose share of the CPUs is below this reserves none (like the readers and the
#: I/O-bound groups): Ray accounts CPUs per node, and small fractions left on every node
#: cannot hold a task that asks for more, so a job could wait forever for rows no task
#: can be scheduled to read. Their concurrency is bounded by their worker count instead.
RESERVE_FROM = 0.25


@dataclass(frozen=True)
class StageCost:
    """What the profile measured for one stage, per input."""

    name: str
    per_item_ms: float
    cpu_ratio: float | None = None
    ships: bool = True  # its components can be pickled to workers
    kind: str = "other"

    @property
    def cpu_ms(self) -> float:
        """CPU milliseconds per input: the wall time, less what the stage spent waiting."""
        if self.cpu_ratio is None:
            return self.per_item_ms
        return self.per_item_ms * min(1.0, max(0.0, self.cpu_ratio))


@dataclass(frozen=True)
class GroupPlan:
    """One ``map_batches``: its stages, how it runs and why."""

    stages: tuple[str, ...]
    compute: str  # tasks, actors (Ray); threads, processes (local)
    workers: int
    cpus_per_worker: float
    threads: int
    batch_size: int  # rows per map_batches call
    recipe_batch: int  # inputs per batch_fn call (1: fn per input)
    per_item_ms: float
    cpu_ms: float
    io_bound: bool
    why: str

    @property
    def name(self) -> str:
        return "+".join(self.stages)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stages": list(self.stages), "name": self.name}


@dataclass(frozen=True)
class Plan:
    pipeline: str
    engine: str
    cpus: float
    groups: tuple[GroupPlan, ...]
    recipe_batch: int = 1
    expected_rps: float | None = None
    source: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "engine": self.engine,
            "cpus": self.cpus,
            "groups": [g.to_dict() for g in self.groups],
            "recipe_batch": self.recipe_batch,
            "expected_rps": self.expected_rps,
            "source": self.source,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        groups = tuple(
            GroupPlan(
                **{**{k: v for k, v in g.items() if k != "name"}, "stages": tuple(g["stages"])}
            )
            for g in data["groups"]
        )
        return cls(**{**data, "groups": groups, "notes": tuple(data.get("notes", ()))})

    def lines(self) -> list[str]:
        """The plan as text, one line per group."""
        where = f" ({self.source})" if self.source else ""
        head = f"plan for {self.pipeline} on {self.engine}, {self.cpus:g} CPU(s){where}:"
        out = [head]
        for number, g in enumerate(self.groups, start=1):
            batching = f" in batch_fn calls of {g.recipe_batch}" if g.recipe_batch > 1 else ""
            if g.compute in ("threads", "processes"):
                out.append(
                    f"  {number}. {g.name}: {g.workers} worker {g.compute}{batching} — {g.why}"
                )
                continue
            threads = f", {g.threads} calls at once" if g.threads > 1 else ""
            out.append(
                f"  {number}. {g.name}: {g.compute}, {g.workers} x {g.cpus_per_worker:g} CPU"
                f"{threads}; {g.batch_size} rows per call{batching}; "
                f"{g.per_item_ms:.2f} ms/row — {g.why}"
            )
        if self.expected_rps:
            out.append(
                f"  expected about {self.expected_rps:,.1f} rows/s if the sampled costs hold "
                "on every CPU (transfer between groups not included)"
            )
        out.extend(f"  note: {note}" for note in self.notes)
        return out


# -- deriving the plan --------------------------------------------------------------------------


def derive_plan(
    costs: Sequence[StageCost],
    *,
    pipeline: str,
    cpus: float,
    recipe_batch: int = 1,
    rows: int | None = None,
    source: str = "",
    threads_per_worker: int = 1,
) -> Plan:
    """The Ray Data plan for stages with these ``costs`` on a cluster of ``cpus`` CPUs."""
    if not costs:
        raise ConfigError("cannot plan a pipeline without stages")
    if not cpus > 0:
        raise ConfigError(f"the cluster has no CPU to plan for ({cpus!r})")
    batch = max(1, int(recipe_batch))
    groups = fuse_stages(costs)
    total_ms = sum(c.per_item_ms for c in costs)
    # CPU-milliseconds per input at full speed: CPU-bound groups use their wall time,
    # I/O-bound ones only the CPU they burn while waiting.
    demand_ms = sum(_cpu_demand_ms(g) for g in groups)
    usable = max(MIN_CPUS, cpus - READ_CPUS)
    rate = 1000.0 * usable / demand_ms if demand_ms > 0 else None
    least_io = max(1, math.ceil(IO_CALLS_PER_CPU * cpus))
    planned = []
    for stages in groups:
        planned.append(
            _size_group(
                stages,
                rate,
                batch,
                rows,
                total_ms,
                threads_per_worker,
                slowest=_slowest(costs),
                least_io=least_io,
            )
        )
    notes = []
    if threads_per_worker > 1:
        notes.append(f"{threads_per_worker} torch/BLAS threads per worker")
    return Plan(
        pipeline=pipeline,
        engine="Ray Data",
        cpus=float(cpus),
        groups=tuple(planned),
        recipe_batch=batch,
        expected_rps=rate,
        source=source,
        notes=tuple(notes),
    )


def _slowest(costs: Sequence[StageCost]) -> str:
    return max(costs, key=lambda c: c.per_item_ms).name


def fuse_stages(costs: Sequence[StageCost]) -> list[list[StageCost]]:
    """Significant stages alone, runs of cheap stages together (see the module docstring)."""
    total = sum(c.per_item_ms for c in costs)
    slowest = _slowest(costs)
    groups: list[list[StageCost]] = []
    cheap: list[StageCost] = []
    for cost in costs:
        significant = cost.name == slowest or (
            total > 0 and cost.per_item_ms >= CHEAP_SHARE * total
        )
        if not significant:
            cheap.append(cost)
            continue
        if cheap:
            groups.append(cheap)
            cheap = []
        groups.append([cost])
    if cheap:
        groups.append(cheap)
    return groups


def is_io_bound(stages: Sequence[StageCost]) -> bool:
    wall = sum(c.per_item_ms for c in stages)
    measured = all(c.cpu_ratio is not None for c in stages)
    return measured and wall > 0 and sum(c.cpu_ms for c in stages) / wall < IO_BOUND_RATIO


def _cpu_demand_ms(stages: Sequence[StageCost]) -> float:
    if is_io_bound(stages):
        return sum(c.cpu_ms for c in stages)
    return sum(c.per_item_ms for c in stages)


def _size_group(
    stages: Sequence[StageCost],
    rate: float | None,
    batch: int,
    rows: int | None,
    total_ms: float,
    threads_per_worker: int,
    *,
    slowest: str,
    least_io: int = 1,
) -> GroupPlan:
    wall = sum(c.per_item_ms for c in stages)
    cpu = sum(c.cpu_ms for c in stages)
    io = is_io_bound(stages)
    ships = all(c.ships for c in stages)
    if io:  # concurrency to keep up with the planned rate, in threads, not cores
        needed = math.ceil(rate * wall / 1000.0 * IO_HEADROOM) if rate else MAX_IO_THREADS
        needed = max(least_io, needed)
        needed = max(1, min(needed, MAX_IO_CONCURRENCY, rows or MAX_IO_CONCURRENCY))
        threads = min(MAX_IO_THREADS, needed)
        workers = math.ceil(needed / threads)
        cpus_each = 0.0  # mostly waiting: its CPU is counted in the rate, not reserved
        per_call = threads * max(1, math.ceil(TARGET_CALL_MS / max(wall, 1e-3)))
    else:  # a share of the CPUs in proportion to the time per input
        share = (rate or 0.0) * wall / 1000.0
        workers = max(1, round(share / threads_per_worker))
        cpus_each = _floor_cpus(share / workers, float(threads_per_worker))
        if share < RESERVE_FROM:
            cpus_each = 0.0
        threads = 1
        per_call = math.ceil(TARGET_CALL_MS / max(wall, 1e-3))
    if ships and workers < MIN_TASKS:  # a task per call: let two overlap their start-up
        cpus_each = _floor_cpus(cpus_each * workers / MIN_TASKS, 1.0) if cpus_each else 0.0
        workers = MIN_TASKS
    return GroupPlan(
        stages=tuple(c.name for c in stages),
        compute="tasks" if ships else "actors",
        workers=workers,
        cpus_per_worker=cpus_each,
        threads=threads,
        batch_size=_batch_rows(per_call, batch, rows, workers, least=threads),
        recipe_batch=batch,
        per_item_ms=wall,
        cpu_ms=cpu,
        io_bound=io,
        why=_why(stages, wall, total_ms, io, ships, slowest),
    )


def _floor_cpus(value: float, most: float) -> float:
    stepped = math.floor(value / MIN_CPUS + 1e-9) * MIN_CPUS
    return round(min(most, max(MIN_CPUS, stepped)), 2)


def _batch_rows(
    per_call: int, batch: int, rows: int | None, workers: int, *, least: int = 1
) -> int:
    """Rows per call: a whole number of recipe batches, about TARGET_CALL_MS of work, and
    small enough that every worker gets a few calls (but at least ``least``)."""
    size = max(batch, min(MAX_BATCH, per_call))
    if rows:
        size = min(size, max(batch, least, math.ceil(rows / (workers * 4))))
    return max(batch, least, size // batch * batch)


def _why(
    stages: Sequence[StageCost],
    wall: float,
    total_ms: float,
    io: bool,
    ships: bool,
    slowest: str,
) -> str:
    share = wall / total_ms if total_ms > 0 else 0.0
    reasons = []
    if len(stages) > 1:
        reasons.append(f"cheap stages fused ({share:.0%} of the time)")
    elif stages[0].name == slowest:
        most = "" if io else ": the most workers"
        reasons.append(f"the slowest stage ({share:.0%}){most}")
    elif share < CHEAP_SHARE:
        reasons.append(f"a cheap stage ({share:.0%} of the time)")
    else:
        reasons.append(f"{share:.0%} of the time")
    if io:
        cpu = sum(c.cpu_ms for c in stages)
        reasons.append(
            f"I/O-bound ({cpu / wall:.2f} CPU s per wall s): concurrency beyond the cores, "
            "no CPU reserved"
        )
    reasons.append("shipped to stateless tasks" if ships else "holds a model: built once per actor")
    return "; ".join(reasons)


# -- costs from a profile ---------------------------------------------------------------------


def costs_from_profile(
    profile: Any, stages: Sequence[Any], ships: Mapping[str, bool], batch: int = 1
) -> list[StageCost]:
    """Per-input stage costs from a :class:`~pipetune.core.kernel.results.Profile` of the
    pipeline about to run. With batching a profiled stage time is its batch's, so it is
    divided by the batch size."""
    names = [s.name for s in stages]
    profiled = [s.name for s in profile.stages if s.name != "other"]
    if profiled != names:
        raise ConfigError(
            f"the profile is of stages {profiled}, but the pipeline to run has {names} "
            "(profile the pipeline with its recipe applied)"
        )
    costs = []
    batch = max(1, min(batch, int(profile.samples or batch)))  # a sample smaller than a batch
    for stage in stages:
        stats = profile.stage(stage.name)
        costs.append(
            StageCost(
                name=stage.name,
                per_item_ms=max(0.0, float(stats.mean_ms)) / batch,
                cpu_ratio=stats.cpu_ratio,
                ships=ships.get(stage.name, False),
                kind=stage.kind,
            )
        )
    return costs


def local_plan(
    pipeline: str, stages: Sequence[str], *, workers: int, executor: str, batch: int
) -> Plan:
    """The local engine's plan: the whole pipeline per input, on worker threads or
    processes, in the recipe's batches."""
    group = GroupPlan(
        stages=tuple(stages),
        compute="threads" if executor == "thread" else "processes",
        workers=workers,
        cpus_per_worker=1.0,
        threads=1,
        batch_size=batch,
        recipe_batch=batch,
        per_item_ms=0.0,
        cpu_ms=0.0,
        io_bound=False,
        why="the existing runtime (pipetune.core.runtime.offline.run_offline)",
    )
    return Plan(
        pipeline=pipeline,
        engine="the local runtime",
        cpus=float(workers),
        groups=(group,),
        recipe_batch=batch,
    )
