"""``pipetune run`` as a library call: check the destinations, plan, run, summarize, record.

::

    request = RunRequest(job, inputs=("docs/*.jsonl",), output=Path("labels.jsonl"),
                         engine="ray")
    plan, sample = plan_job(request, pipeline)      # what --plan prints
    summary = run_job(request, pipeline, plan=plan)

The plan of the Ray engine comes from a profile: the one given, or one measured now on the
first ``sample`` well-formed input rows with pipetune's profiler (per-stage wall and CPU
time). The local engine runs on the existing runtime and needs no profile.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.model import Pipeline, Workload
from pipetune.core.kernel.registry import require
from pipetune.core.runtime.serving import ServingOptions
from pipetune.scale import plan as planning
from pipetune.scale.collect import Collector, JobSummary
from pipetune.scale.job import JobSpec, ship_stages
from pipetune.scale.rows import InputFile, RowOptions, expand_inputs, sample_inputs
from pipetune.scale.sinks import (
    ErrorSink,
    OutputSink,
    check_destinations,
    default_errors_path,
    output_format,
)

ENGINES = ("local", "ray")
DEFAULT_SAMPLE = 32
SAMPLE_NAME = "run-sample"

Log = Callable[[str], None]


@dataclass(frozen=True)
class RunRequest:
    """One ``pipetune run``.

    Args:
        job: how workers rebuild the pipeline (TARGET, recipe, artifacts).
        inputs: files, folders or globs; output: a .jsonl or .parquet file; errors: the
            errors file (default: beside the output, ``NAME.errors.jsonl``).
        engine: ``local`` or ``ray``; address: a Ray cluster (default: start a local Ray);
            connect_timeout_s: how long it may take to answer.
        workers, executor: the local engine's worker threads or processes.
        batch_size: override the recipe's batch size (inputs per ``batch_fn`` call).
        sample: rows measured to plan the Ray engine when no profile is given.
        cpus: plan for this many CPUs instead of the connected cluster's.
        local_files: Python files workers cannot import by name (a TARGET file): stages
            from them are shipped by value.
    """

    job: JobSpec
    inputs: tuple[str, ...]
    output: Path
    errors: Path | None = None
    overwrite: bool = False
    rows: RowOptions = field(default_factory=RowOptions)
    engine: str = "local"
    address: str | None = None
    workers: int = 1
    executor: str = "thread"
    batch_size: int | None = None
    sample: int = DEFAULT_SAMPLE
    cpus: float | None = None
    local_files: tuple[str, ...] = ()
    connect_timeout_s: float = 30.0

    @property
    def errors_path(self) -> Path:
        return self.errors or default_errors_path(self.output)


def check_request(request: RunRequest) -> list[InputFile]:
    """Everything that can be refused before any work: engine, inputs, destinations."""
    if request.engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, not {request.engine!r}")
    files = expand_inputs(request.inputs)
    if output_format(request.output) == "parquet" or any(f.format == "parquet" for f in files):
        require("pyarrow", "ray", "Parquet files")
    if request.errors_path.resolve() == request.output.resolve():
        raise ConfigError("the errors file and the output must be different files")
    inputs = {f.path for f in files}
    for path in (request.output, request.errors_path):
        if path.resolve() in inputs:
            raise ConfigError(f"{path} is one of the inputs: write the results elsewhere")
    check_destinations([request.output, request.errors_path], request.overwrite)
    return files


def recipe_batch(request: RunRequest, pipeline: Pipeline) -> int:
    if request.batch_size is not None:
        if request.batch_size < 1:
            raise ConfigError("--batch-size must be >= 1")
        return request.batch_size
    return ServingOptions.of(pipeline).batch_size


# -- planning -----------------------------------------------------------------------------------


def plan_job(
    request: RunRequest,
    pipeline: Pipeline,
    *,
    profile: Any = None,
    cpus: float | None = None,
    pm: Any = None,
    log: Log | None = None,
) -> tuple[planning.Plan, Any]:
    """The plan, and the profile it came from (measured now when none is given)."""
    files = expand_inputs(request.inputs)
    batch = recipe_batch(request, pipeline)
    if request.engine == "local":
        plan = planning.local_plan(
            pipeline.name,
            pipeline.stage_names,
            workers=request.workers,
            executor=request.executor,
            batch=batch,
        )
        return plan, None
    if profile is None:
        profile = sample_profile(pipeline, files, request, batch, pm=pm, log=log)
    if profile.workload.get("name") == SAMPLE_NAME:
        source = f"costs measured on {profile.samples} sampled rows"
    else:
        source = f"costs from the profile of {profile.created or 'the given run'}"
    ships = {
        stage.name: ship_stages([stage], request.local_files) is not None for stage in pipeline
    }
    costs = planning.costs_from_profile(profile, pipeline.stages, ships, batch)
    total = request.cpus or cpus
    if not total:
        raise ConfigError("plan_job needs the cluster's CPU count (cpus=...)")
    from pipetune.scale.rows import count_rows

    return (
        planning.derive_plan(
            costs,
            pipeline=pipeline.name,
            cpus=total,
            recipe_batch=batch,
            rows=count_rows(files),
            source=source,
            threads_per_worker=request.job.threads,
        ),
        profile,
    )


def sample_profile(
    pipeline: Pipeline,
    files: list[InputFile],
    request: RunRequest,
    batch: int,
    *,
    pm: Any = None,
    log: Log | None = None,
) -> Any:
    """Profile ``pipeline`` on the first well-formed input rows (per-stage wall and CPU), on
    as many threads as each worker will have."""
    count = max(request.sample, 2 * batch)
    items = sample_inputs(files, request.rows, count)
    if not items:
        raise ConfigError("no well-formed input row to measure the pipeline on")
    if log:
        log(f"measuring {pipeline.name} on {len(items)} input rows to plan the job")
    workload = Workload(items=tuple(items), warmup=1, repeats=1, name=SAMPLE_NAME)
    return service_profile(pipeline, workload, pm, on_error="skip", threads=request.job.threads)


def service_profile(
    pipeline: Pipeline,
    workload: Workload,
    pm: Any,
    *,
    sweep: bool | Sequence[int] = False,
    **options: Any,
) -> Any:
    """Single-worker service times on ``workload``: one offline pass, without the GIL
    check, hot functions, layers or memory (what sizing a deployment needs), and without
    the concurrency sweep unless ``sweep`` names its levels (capacity planning)."""
    from pipetune.core.measure.profiler import profile

    return profile(
        pipeline,
        workload,
        pm=pm,
        mode="offline",
        sweep=sweep,
        gil_check=False,
        hot_functions=False,
        layers=False,
        memory=False,
        **options,
    )


# -- running ----------------------------------------------------------------------------------


def run_job(
    request: RunRequest,
    pipeline: Pipeline,
    *,
    plan: planning.Plan | None = None,
    profile: Any = None,
    progress: Callable[[int], None] | None = None,
    pm: Any = None,
    log: Log | None = None,
) -> JobSummary:
    """Run the job; every input ends as one output row or one error row."""
    files = check_request(request)
    output = OutputSink(request.output)
    errors = ErrorSink(request.errors_path)
    collector = Collector(output, errors, pipeline.stage_names, progress)
    started = time.perf_counter()
    try:
        if request.engine == "local":
            plan = plan or plan_job(request, pipeline)[0]
            stopped = _run_local(request, pipeline, files, collector)
        else:
            plan, stopped = _run_ray(request, pipeline, files, collector, plan, profile, pm, log)
    finally:
        collector.close()
    return collector.summary(
        plan.engine,
        pipeline.name,
        wall_s=time.perf_counter() - started,
        stopped=stopped,
        plan=plan.to_dict(),
    )


def _run_local(
    request: RunRequest, pipeline: Pipeline, files: list[InputFile], collector: Collector
) -> bool:
    from pipetune.scale.local import run_local

    return run_local(
        pipeline,
        files,
        request.rows,
        collector,
        job=request.job,
        workers=request.workers,
        executor=request.executor,
        batch=recipe_batch(request, pipeline),
    )


def _run_ray(
    request: RunRequest,
    pipeline: Pipeline,
    files: list[InputFile],
    collector: Collector,
    plan: planning.Plan | None,
    profile: Any,
    pm: Any,
    log: Log | None,
) -> tuple[planning.Plan, bool]:
    from pipetune.scale import ray_data
    from pipetune.scale.ray_env import cluster_cpus, configure_data, ray_session

    with ray_session(
        request.address, timeout_s=request.connect_timeout_s, purpose="pipetune run --engine ray"
    ) as ray:
        if plan is None:
            plan, _ = plan_job(
                request, pipeline, profile=profile, cpus=cluster_cpus(ray), pm=pm, log=log
            )
        plan, shipped = ship_plan(plan, pipeline, request.local_files)
        configure_data(ray)
        if log:
            log(f"running on Ray Data ({cluster_cpus(ray):g} CPUs)")
        dataset = ray_data.build_dataset(ray, request.job, plan, files, request.rows, shipped)
        return plan, ray_data.collect(dataset, collector)


def ship_plan(
    plan: planning.Plan, pipeline: Pipeline, local_files: tuple[str, ...]
) -> tuple[planning.Plan, dict[str, bytes | None]]:
    """Pickle each task group's stages; a group that cannot be shipped runs as actors."""
    shipped: dict[str, bytes | None] = {}
    groups = []
    for group in plan.groups:
        blob = None
        if group.compute == "tasks":
            blob = ship_stages([pipeline.stage(name) for name in group.stages], local_files)
            if blob is None:
                group = dataclasses.replace(group, compute="actors")
        shipped[group.name] = blob
        groups.append(group)
    return dataclasses.replace(plan, groups=tuple(groups)), shipped


# -- the run store ----------------------------------------------------------------------------


def record_start(pipeline: Pipeline, target: str, profile: Any = None) -> str:
    """Record the job as a run in the run store (with its sample profile); returns its id."""
    from pipetune.core.loop.store import RunStore
    from pipetune.core.runtime.machine import detect_machine

    with RunStore() as store:
        run_id = store.start_run(
            pipeline.name, machine_fingerprint=detect_machine().fingerprint, target=target
        )
        if profile is not None:
            store.add_profile(run_id, "run-sample", profile)
    return run_id


def record_finish(run_id: str, summary: JobSummary | None, status: str) -> None:
    from pipetune.core.loop.store import RunStore

    data = {"command": "run", **(summary.to_dict() if summary is not None else {})}
    with RunStore() as store:
        store.finish_run(run_id, status, summary=data)
