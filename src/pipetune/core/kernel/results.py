"""What the loop produces: profiles, proposals, tuned changes, fidelity, trials, recipes.

All frozen dataclasses that round-trip through JSON (``to_dict`` / ``from_dict``). Field
names are the JSON report contract: fields may be added, never renamed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pipetune.core.kernel.serial import from_dict, to_dict

SCHEMA_VERSION = "1.0"

Effort = Literal["minutes", "hours", "days", "weeks"]
Risk = Literal["none", "low", "medium", "high"]
#: Effort in hours, for ranking proposals by gain per unit of effort.
EFFORT_HOURS: Mapping[str, float] = {"minutes": 0.1, "hours": 2.0, "days": 16.0, "weeks": 80.0}


class _Serializable:
    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):  # type: ignore[no-untyped-def]
        return from_dict(cls, data)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def evolve(self, **changes: Any):  # type: ignore[no-untyped-def]
        return replace(self, **changes)  # type: ignore[type-var]


# -- the machine ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Machine(_Serializable):
    """The host a measurement was taken on. ``fingerprint`` identifies comparable hosts."""

    cpu: str
    cores: int
    logical_cores: int = 0
    vendor: str = ""
    isa: tuple[str, ...] = ()
    memory_gb: float | None = None
    gpu: str | None = None
    gpu_memory_gb: float | None = None
    gpu_compute_capability: str | None = None
    apple_silicon: bool = False
    os: str = ""
    python: str = ""
    threads: Mapping[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    #: CPUs this process may use (affinity mask capped by a cgroup quota); None: unknown.
    usable_cores: float | None = None
    numa_nodes: int | None = None
    gpu_count: int = 0
    gpu_driver: str | None = None


# -- the profile -------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyStats(_Serializable):
    p50: float
    p95: float
    p99: float
    max: float
    mean: float = 0.0


@dataclass(frozen=True)
class StageStats(_Serializable):
    """One stage's share of end-to-end time. The list always ends with an ``other`` entry
    (glue between stages) so that shares sum to 1."""

    name: str
    kind: str
    share: float
    p50_ms: float
    mean_ms: float = 0.0
    p99_ms: float = 0.0
    cpu_ratio: float | None = None  # CPU seconds per wall second while the stage ran
    holds_gil: bool | None = None
    calls: int = 0
    p95_ms: float = 0.0
    max_ms: float = 0.0
    #: Throughput with 2 threads calling the stage over 1 thread (the GIL check); None when
    #: not measured.
    gil_scaling: float | None = None
    #: Median GPU time of the stage (CUDA events), when it ran on a CUDA device.
    gpu_ms: float | None = None


@dataclass(frozen=True)
class ConcurrencyPoint(_Serializable):
    concurrency: int
    throughput_rps: float
    p50_ms: float
    p99_ms: float
    p95_ms: float = 0.0
    samples: int = 0
    errors: int = 0


@dataclass(frozen=True)
class HotFunction(_Serializable):
    function: str
    share: float  # of the stage's sampled time
    calls: int = 0
    self_ms: float = 0.0  # per stage call, excluding callees
    cum_ms: float = 0.0  # per stage call, including callees


@dataclass(frozen=True)
class LayerTime(_Serializable):
    layer: str
    ms: float  # per stage call
    share: float  # of the stage's time in the layer pass
    calls: int = 0  # forward calls per stage call
    module: str = ""  # the module's class name


@dataclass(frozen=True)
class ErrorSummary(_Serializable):
    """Inputs that failed during a run (with ``on_error="skip"``), per stage."""

    count: int = 0
    by_stage: Mapping[str, int] = field(default_factory=dict)
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class Profile(_Serializable):
    """Where the time goes, measured on one workload.

    ``stage_ms`` holds the recorded per-item stage times (rows: items; columns: the
    pipeline's stages in order, then ``other``); the planner replays them with one stage
    scaled to estimate a proposal's end-to-end effect on any metric. ``facts`` holds the
    domain measurements each plugin added, keyed by plugin name.
    """

    pipeline: str
    mode: str
    samples: int
    throughput_rps: float
    latency_ms: LatencyStats
    stages: tuple[StageStats, ...]
    machine: Machine
    stage_ms: tuple[tuple[float, ...], ...] = ()
    concurrency: tuple[ConcurrencyPoint, ...] = ()
    knee: int | None = None
    hot_functions: Mapping[str, tuple[HotFunction, ...]] = field(default_factory=dict)
    layers: Mapping[str, tuple[LayerTime, ...]] = field(default_factory=dict)
    memory_peak_mb: float | None = None
    gpu: Mapping[str, Any] = field(default_factory=dict)
    facts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    hints: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    errors: ErrorSummary = field(default_factory=ErrorSummary)
    workload: Mapping[str, Any] = field(default_factory=dict)
    created: str = ""
    schema_version: str = SCHEMA_VERSION
    #: The knee of the concurrency sweep in words, labelled as specific to this host.
    knee_note: str = ""
    #: Mode-specific runtime figures: workers, offered vs achieved rate, queue wait,
    #: overload, batch sizes (online); time to first output, per-output latency (stream).
    runtime: Mapping[str, Any] = field(default_factory=dict)
    #: Peak memory details (RSS high-water mark, Python heap per stage, CUDA peak).
    memory: Mapping[str, Any] = field(default_factory=dict)
    #: Which profiler passes ran, on how many inputs, how long they took, or why skipped.
    passes: Mapping[str, Any] = field(default_factory=dict)
    #: True when the run was interrupted (Ctrl-C): the figures cover what was measured.
    stopped: bool = False
    #: Accuracy against the workload's labels, when it has them: ``metric``, ``value``,
    #: ``n`` (inputs judged), or ``reason`` when no plugin measures it for the output kind.
    accuracy: Mapping[str, Any] = field(default_factory=dict)

    def stage(self, name: str) -> StageStats:
        for stats in self.stages:
            if stats.name == name:
                return stats
        raise KeyError(name)

    def share(self, name: str) -> float:
        try:
            return self.stage(name).share
        except KeyError:
            return 0.0

    def metric(self, metric: str) -> float:
        """The value of a metric named by :attr:`Requirements.metric`."""
        if metric == "throughput":
            return self.throughput_rps
        return float(getattr(self.latency_ms, metric))

    def summary(self) -> dict[str, Any]:
        """The report contract's ``baseline``/``final`` object."""
        return {
            "mode": self.mode,
            "samples": self.samples,
            "throughput_rps": self.throughput_rps,
            "latency_ms": {
                "p50": self.latency_ms.p50,
                "p95": self.latency_ms.p95,
                "p99": self.latency_ms.p99,
                "max": self.latency_ms.max,
            },
            "stages": [
                {"name": s.name, "kind": s.kind, "share": s.share, "p50_ms": s.p50_ms}
                for s in self.stages
            ],
            **({"accuracy": dict(self.accuracy)} if self.accuracy else {}),
        }


# -- proposals and changes ---------------------------------------------------------------


@dataclass(frozen=True)
class InFlight(_Serializable):
    """What a change needs in flight to show its gain (batching, continuous batching).

    A batch of one cannot be batched: the comparison that validates such a change gives
    every timed pass at least ``inputs`` inputs (``pass_inputs``: a few full batches), and
    with ``arrival="backlog"`` offers them all at once (offline: back to back, as a batch
    job does; online and stream without a rate or trace of the user's: every request of
    a pass arrives at its start). ``arrival="workload"`` keeps the workload's own arrival
    process (an online batcher whose gain depends on the real rate). ``assumes`` is the
    sentence the estimate carries ("8 requests in flight at once"). ``in_order``: the
    change carries state from one input to the next (a frame gate reusing the last frame's
    result), so timed passes take contiguous runs of the split in its order rather than
    inputs spread over it.
    """

    inputs: int = 1
    arrival: Literal["backlog", "workload"] = "backlog"
    assumes: str = ""
    batches_per_pass: int = 2
    in_order: bool = False

    def __post_init__(self) -> None:
        from pipetune.core.kernel.errors import ConfigError

        if not isinstance(self.inputs, int) or self.inputs < 1:
            raise ConfigError(f"in_flight inputs must be an integer >= 1, not {self.inputs!r}")
        if self.arrival not in ("backlog", "workload"):
            raise ConfigError(
                f"in_flight arrival must be 'backlog' or 'workload', not {self.arrival!r}"
            )
        if not isinstance(self.batches_per_pass, int) or self.batches_per_pass < 1:
            raise ConfigError("in_flight batches_per_pass must be an integer >= 1")

    @property
    def pass_inputs(self) -> int:
        """The fewest inputs a timed pass may hold."""
        return self.inputs * self.batches_per_pass

    def describe(self) -> str:
        if self.assumes:
            return self.assumes
        how = "arriving at once" if self.arrival == "backlog" else "at the workload's arrivals"
        return f"{self.inputs} inputs in flight, {how}"


@dataclass(frozen=True)
class ExecutionContext(_Serializable):
    """The thread and runtime settings a measurement was taken under.

    A recipe carries the context its figures were measured in, and ``load_recipe`` applies
    it (or warns, naming both settings, when the process differs): the same change can be
    several times faster or slower under another thread count or calling thread.

    Fields:
        calling_thread: where the timed passes ran: ``main`` (the process's main thread,
            as a plain script calls ``pipeline.run``), ``caller`` (the thread that asked
            for the measurement, not the main one) or ``worker`` (a runtime worker thread;
            online and stream serving).
        mode: the runtime mode (offline, online, stream).
        threads_requested: the count pinned for every library (``--threads``); ``None``
            when the process's own settings were measured as they were.
        torch_intra_op, torch_inter_op: torch's counts in force (``None``: not loaded).
        faiss_omp: faiss's count, in recipes written before ``pools`` (now in ``pools``).
        blas: the native thread pools in force, by library (threadpoolctl's view:
            ``{"openblas": 2, "openmp": 2}``), when threadpoolctl is installed.
        env: the thread environment variables (``OMP_NUM_THREADS``...) as they were.
        cpu_affinity: the CPUs the process could run on.
        stages: the thread plan, by stage name: the settings each stage's calls run under
            (``{"classify": {"threads": 1, "spinning": False}}``); empty: the process's
            settings for every stage.
        notes: what could not be set or recorded.
        pools: the plugin-registered thread pools in force, by name (``{"faiss": 1}``).
    """

    calling_thread: str = "main"
    mode: str = "offline"
    threads_requested: int | None = None
    torch_intra_op: int | None = None
    torch_inter_op: int | None = None
    faiss_omp: int | None = None
    blas: Mapping[str, int] = field(default_factory=dict)
    env: Mapping[str, str | None] = field(default_factory=dict)
    cpu_affinity: int | None = None
    stages: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    pools: Mapping[str, int] = field(default_factory=dict)

    def all_pools(self) -> dict[str, int]:
        """``pools``, with an older recipe's ``faiss_omp`` read as the faiss pool."""
        pools = dict(self.pools)
        if self.faiss_omp is not None:
            pools.setdefault("faiss", self.faiss_omp)
        return pools

    def describe(self) -> str:
        """One line: ``main thread; torch 2 intra-op / 2 inter-op; openblas 2``."""
        parts = [f"{self.calling_thread} thread"]
        if self.threads_requested is not None:
            parts.append(f"pinned to {self.threads_requested}")
        if self.torch_intra_op is not None:
            parts.append(f"torch {self.torch_intra_op} intra-op / {self.torch_inter_op} inter-op")
        parts += [f"{name} {count}" for name, count in sorted(self.all_pools().items())]
        parts += [f"{name} {count}" for name, count in sorted(self.blas.items())]
        set_env = {k: v for k, v in self.env.items() if v is not None}
        if set_env:
            parts.append(" ".join(f"{k}={v}" for k, v in sorted(set_env.items())))
        if self.stages:
            plan = ", ".join(
                f"{stage} {settings.get('threads')}" for stage, settings in self.stages.items()
            )
            parts.append(f"thread plan: {plan}")
        return "; ".join(parts)


#: ``Proposal.stage`` (and ``Change.stage``) for a change to the whole pipeline (serving with
#: dynamic batching, a recipe).
ALL_STAGES = "*"


@dataclass(frozen=True)
class Proposal(_Serializable):
    """A change a plugin proposes for one stage.

    ``id`` is dotted and stable: ``<plugin>.<change>`` (``recsys.ann_two_stage``).
    ``est_stage_speedup`` is the plugin's estimate for the stage alone; the planner turns it
    into ``est_e2e_speedup`` for the metric the requirements name. ``status`` is
    ``proposed`` or ``unavailable`` (a missing dependency or hardware: ``reason`` and
    ``install`` say why and how). ``applicable=False`` marks advice the loop cannot apply
    (distillation: weeks of work), listed with its effort. ``fidelity_kind`` overrides the
    pipeline's output kind when the change needs a stricter check (exact ids).
    """

    id: str
    plugin: str
    stage: str
    title: str
    rationale: str = ""
    est_stage_speedup: float = 1.0
    effort: Effort = "minutes"
    accuracy_risk: Risk = "none"
    status: Literal["proposed", "unavailable"] = "proposed"
    reason: str = ""
    install: str | None = None
    applicable: bool = True
    params: Mapping[str, Any] = field(default_factory=dict)
    conflicts: tuple[str, ...] = ()
    fidelity_kind: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    est_e2e_speedup: float | None = None
    #: What the estimate assumes in flight (a batch needs several inputs at once); the
    #: validator sizes its passes from it (see :class:`InFlight`).
    in_flight: InFlight | None = None

    @property
    def key(self) -> str:
        """Unique per pipeline: the same change may be proposed for several stages."""
        return f"{self.id}@{self.stage}"


@dataclass(frozen=True)
class Tuned(_Serializable):
    """What a plugin's tune step found: parameters, built artifacts, and its evidence.

    ``artifacts`` maps a name to a path relative to the artifact store (a built index, an
    exported model); materialize reloads them instead of rebuilding. ``notes`` carries the
    search (the agreement curve of a truncation search, the recall/latency points of an
    index sweep) for the report.
    """

    params: Mapping[str, Any] = field(default_factory=dict)
    artifacts: Mapping[str, str] = field(default_factory=dict)
    notes: Mapping[str, Any] = field(default_factory=dict)
    est_stage_speedup: float | None = None
    #: What the tuned setting needs in flight to show its gain (the batch size found);
    #: overrides the proposal's.
    in_flight: InFlight | None = None


@dataclass(frozen=True)
class Change(_Serializable):
    """A proposal with its tuned parameters: what a recipe stores and materialize builds.

    ``params_version`` is the params schema version of the change type that made it
    (``None``: a change from a plugin that registers no change types, or a recipe written
    before versions were recorded, read as version 1).
    """

    proposal: str
    plugin: str
    stage: str
    params: Mapping[str, Any] = field(default_factory=dict)
    artifacts: Mapping[str, str] = field(default_factory=dict)
    fidelity_kind: str | None = None
    params_version: int | None = None
    in_flight: InFlight | None = None

    @classmethod
    def from_proposal(cls, proposal: Proposal, tuned: Tuned | None = None) -> Change:
        tuned = tuned or Tuned(params=proposal.params)
        return cls(
            proposal=proposal.id,
            plugin=proposal.plugin,
            stage=proposal.stage,
            params={**proposal.params, **tuned.params},
            artifacts=dict(tuned.artifacts),
            fidelity_kind=proposal.fidelity_kind,
            in_flight=tuned.in_flight or proposal.in_flight,
        )


# -- validation --------------------------------------------------------------------------


@dataclass(frozen=True)
class Fidelity(_Serializable):
    """How close a candidate's outputs are to the baseline's. ``value`` is always
    higher-is-better (agreement, recall, 1 - normalized error); raw figures go in
    ``details``. ``ci`` is a confidence interval for ``value`` (Wilson for proportions).
    ``judged_by`` is the plugin whose metric judged, ``output_kind`` the output kind it
    judged (empty for a change-specific assessment); the host sets both.

    ``gate`` is set by the validator: ``met`` (for a proportion, the interval's lower bound
    clears the threshold too), ``unproven`` (the value clears it but the lower bound does
    not: too few items to tell; ``items_to_prove`` more, agreeing as these did, would
    prove it) or ``missed``."""

    metric: str
    value: float
    threshold: float | None = None
    n: int = 0
    ci: tuple[float, float] | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    judged_by: str = ""
    output_kind: str = ""
    gate: Literal["met", "unproven", "missed"] | None = None
    items_to_prove: int | None = None

    @property
    def passed(self) -> bool:
        return self.threshold is None or self.value >= self.threshold

    @property
    def unproven(self) -> bool:
        return self.gate == "unproven"


@dataclass(frozen=True)
class Trial(_Serializable):
    """One proposal tried on the workload. ``status``: accepted, rejected, or deferred
    (validated as far as this machine allows; ``artifact`` and ``command`` say how to
    finish elsewhere)."""

    proposal: str
    status: Literal["accepted", "rejected", "deferred"]
    reason: str
    stage: str = ""
    plugin: str = ""
    speedup: float | None = None
    speedup_ci: tuple[float, float] | None = None
    est_speedup: float | None = None
    metric: str = "throughput"
    fidelity: Fidelity | None = None
    change: Change | None = None
    notes: Mapping[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    artifact: str | None = None
    command: str | None = None


@dataclass(frozen=True)
class Recipe(_Serializable):
    """The accepted changes, in order, with their parameters and artifacts. Re-appliable
    to the same pipeline (``pipetune apply --recipe``, ``pipetune.load_recipe``)."""

    pipeline: str
    changes: tuple[Change, ...]
    stages: tuple[str, ...] = ()
    machine_fingerprint: str = ""
    pipetune_version: str = ""
    created: str = ""
    fidelity: Fidelity | None = None
    schema_version: str = SCHEMA_VERSION
    #: The thread and runtime settings the recipe's figures were measured under;
    #: ``load_recipe`` applies them (or warns when the process differs).
    execution: ExecutionContext | None = None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json() + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        from pipetune.core.kernel.errors import ConfigError, read_json_file

        data = read_json_file(path, "recipe")
        if not isinstance(data, Mapping) or "changes" not in data:
            raise ConfigError(f"{path} is not a pipetune recipe (no 'changes')")
        return cls.from_dict(data)
