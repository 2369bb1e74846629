"""The Ray Data engine: ``pipetune run --engine ray``.

The dataset is built from the plan (:mod:`pipetune.scale.plan`)::

    from_items(shards of the inputs)     one block per shard (pipetune.scale.shards)
      -> map_batches(parse_shards)       keyed rows, malformed ones marked with their line
      -> map_batches(group 1)            tasks (shipped stages) or an actor pool (built once)
      -> ...
      -> iter_batches() in the driver    each row written once (the Collector)

Between groups a row carries its key, its source, its current value (pickled) and, once a
stage has failed on it, the stage and the exception instead: a failed row travels on
untouched to the driver, which writes it to the errors file. Each group adds a column
with the seconds each row spent in each of its stages.

Fault tolerance is Ray's own: a task whose node dies is retried, an actor that dies is
restarted and its calls retried, lost blocks are rebuilt from lineage. The driver writes
what ``iter_batches`` yields, so a retried call never shows twice in the output (the
Collector counts any row delivered twice, instead of writing it twice).
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from typing import Any

from pipetune.core.kernel.errors import PipelineError
from pipetune.core.kernel.model import Stage
from pipetune.scale.collect import Collector
from pipetune.scale.execute import run_group
from pipetune.scale.job import JobSpec, build_pipeline, shipped_stages
from pipetune.scale.plan import GroupPlan, Plan
from pipetune.scale.rows import INPUT_STAGE, InputFile, InputRow, RowOptions
from pipetune.scale.shards import Shard, parse_shard, shard_inputs

KEY, SOURCE, VALUE = "key", "source", "value"
STAGE, EXCEPTION, ERROR, RAW = "stage", "exception", "error", "raw"
SECONDS = "seconds:"  # + stage name: seconds each row spent in that stage
#: Input rows per shard, at least (each shard is one block: one call of the first group).
SHARD_ROWS = 16


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            (KEY, pa.string()),
            (SOURCE, pa.string()),
            (VALUE, pa.binary()),
            (STAGE, pa.string()),
            (EXCEPTION, pa.string()),
            (ERROR, pa.string()),
            (RAW, pa.string()),
        ]
    )


# -- building the dataset -----------------------------------------------------------------------


def build_dataset(
    ray: Any,
    job: JobSpec,
    plan: Plan,
    files: Sequence[InputFile],
    options: RowOptions,
    shipped: Mapping[str, bytes | None],
) -> Any:
    """The lazy Ray dataset that runs the job (nothing runs until it is iterated)."""
    # A shard is one call of the first group: that group takes whole blocks (batch_size
    # None). Ray fuses the readers into it, and a fused operator bundles its input by the
    # group's batch size counted in shards, not rows: a small job became one block that
    # one actor of the slowest group worked through while the others idled.
    first = plan.groups[0].batch_size if plan.groups else 1
    shards = shard_inputs(files, max(SHARD_ROWS, first))
    dataset = ray.data.from_items([s.to_dict() for s in shards], override_num_blocks=len(shards))
    dataset = dataset.map_batches(  # reserve no CPU: see plan.RESERVE_FROM
        parse_shards,
        batch_size=1,
        batch_format="pyarrow",
        num_cpus=0,
        compute=ray.data.TaskPoolStrategy(size=max(1, min(len(shards), int(plan.cpus)))),
        fn_kwargs={"options": options},
    )
    for index, group in enumerate(plan.groups):
        dataset = _add_group(
            ray, dataset, job, group, shipped.get(group.name), whole_blocks=index == 0
        )
    return dataset


def _add_group(
    ray: Any,
    dataset: Any,
    job: JobSpec,
    group: GroupPlan,
    blob: bytes | None,
    *,
    whole_blocks: bool = False,
) -> Any:
    threads = max(1, int(group.cpus_per_worker))  # torch/BLAS threads: the worker's CPUs
    common = {
        "batch_size": None if whole_blocks else group.batch_size,
        "batch_format": "pyarrow",
        "num_cpus": group.cpus_per_worker,
        "udf_modifying_row_count": False,
    }
    if group.compute == "tasks" and blob is not None:
        return dataset.map_batches(
            run_task_group,
            compute=ray.data.TaskPoolStrategy(size=group.workers),
            fn_kwargs={
                "blob": blob,
                "sys_path": job.sys_path,
                "cpu_threads": threads,
                "recipe_batch": group.recipe_batch,
                "threads": group.threads,
                "timeout_s": job.item_timeout_s,
            },
            **common,
        )
    return dataset.map_batches(
        GroupActor,
        compute=ray.data.ActorPoolStrategy(size=group.workers),
        fn_constructor_kwargs={
            "job": job.with_threads(threads),
            "stages": group.stages,
            "recipe_batch": group.recipe_batch,
            "threads": group.threads,
        },
        **common,
    )


# -- inside the workers --------------------------------------------------------------------------


def parse_shards(batch: Any, *, options: RowOptions) -> Any:
    """Shards of the input files -> keyed input rows, malformed ones marked."""
    rows: list[InputRow] = []
    for record in batch.to_pylist():
        rows.extend(parse_shard(Shard.from_dict(record), options))
    return rows_table(rows)


def rows_table(rows: Sequence[InputRow]) -> Any:
    import pyarrow as pa

    columns: dict[str, list[Any]] = {name: [] for name in _schema().names}
    for row in rows:
        columns[KEY].append(row.key)
        columns[SOURCE].append(row.source)
        columns[VALUE].append(_dumps(row.value) if row.ok else None)
        columns[STAGE].append(None if row.ok else INPUT_STAGE)
        columns[EXCEPTION].append(None if row.ok else "MalformedRow")
        columns[ERROR].append(row.error)
        columns[RAW].append(row.raw)
    return pa.table(columns, schema=_schema())


def run_task_group(
    batch: Any,
    *,
    blob: bytes,
    sys_path: Sequence[str],
    cpu_threads: int,
    recipe_batch: int,
    threads: int,
    timeout_s: float | None = None,
) -> Any:
    """A group of shipped stages as a stateless task (stages unpickled once per process)."""
    stages = shipped_stages(blob, sys_path, cpu_threads)
    return apply_group(batch, stages, recipe_batch, threads, timeout_s)


class GroupActor:
    """A group of stages that hold a model: the pipeline is built once per actor, from the
    job's TARGET and recipe."""

    def __init__(self, job: JobSpec, stages: Sequence[str], recipe_batch: int, threads: int):
        pipeline = build_pipeline(job)
        self.stages = tuple(pipeline.stage(name) for name in stages)
        self.recipe_batch = recipe_batch
        self.threads = threads
        self.timeout_s = job.item_timeout_s

    def __call__(self, batch: Any) -> Any:
        return apply_group(batch, self.stages, self.recipe_batch, self.threads, self.timeout_s)


def apply_group(
    batch: Any,
    stages: Sequence[Stage],
    recipe_batch: int,
    threads: int,
    timeout_s: float | None = None,
) -> Any:
    """Run the rows of ``batch`` that have not failed through ``stages``."""
    import pyarrow as pa

    values = batch[VALUE].to_pylist()
    stage = batch[STAGE].to_pylist()
    exception = batch[EXCEPTION].to_pylist()
    error = batch[ERROR].to_pylist()
    todo = [i for i, failed in enumerate(stage) if failed is None]
    result = run_group(
        stages,
        [pickle.loads(values[i]) for i in todo],
        batch_size=recipe_batch,
        threads=threads,
        timeout_s=timeout_s,
    )
    for position, row in enumerate(todo):
        failure = result.failures.get(position)
        if failure is None:
            try:
                values[row] = _dumps(result.outputs[position])
                continue
            except Exception as exc:  # an output that cannot leave the worker
                failure = (stages[-1].name, type(exc).__name__, f"cannot pickle the output: {exc}")
        values[row] = None
        stage[row], exception[row], error[row] = failure
    table = batch
    for name, column, kind in (
        (VALUE, values, pa.binary()),
        (STAGE, stage, pa.string()),
        (EXCEPTION, exception, pa.string()),
        (ERROR, error, pa.string()),
    ):
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(column, kind))
    ran = set(todo)
    for s in stages:
        share = result.stage_s.get(s.name, 0.0) / max(1, len(todo))
        seconds = [share if i in ran else 0.0 for i in range(len(values))]
        table = table.append_column(SECONDS + s.name, pa.array(seconds, pa.float64()))
    return table


def _dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=5)


# -- in the driver -----------------------------------------------------------------------------


def collect(dataset: Any, collector: Collector) -> bool:
    """Iterate ``dataset`` and hand every row to ``collector``; True when interrupted.

    A failure of the job itself (not of a stage on an input: those are rows of the errors
    file) is a :class:`~pipetune.core.kernel.errors.PipelineError` with its root cause;
    what was written before it is kept."""
    batches = dataset.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=1)
    try:
        for batch in batches:
            collect_batch(batch, collector)
    except KeyboardInterrupt:
        return True
    except Exception as exc:
        if not type(exc).__module__.startswith("ray"):
            raise
        raise PipelineError(
            f"the Ray job failed after {collector.rows:,} rows (kept in "
            f"{collector.output.path}): {root_cause(exc)}"
        ) from exc
    finally:
        close = getattr(batches, "close", None)
        if callable(close):
            close()
    return False


def root_cause(exc: BaseException) -> str:
    """The innermost exception behind a Ray error, as ``Type: message``."""
    seen = set()
    current: BaseException = exc
    while id(current) not in seen:
        seen.add(id(current))
        inner = getattr(current, "cause", None) or current.__cause__
        if not isinstance(inner, BaseException):
            break
        current = inner
    text = str(current).strip().splitlines()
    message = text[-1] if text else ""
    return f"{type(current).__name__}: {message}"


def collect_batch(batch: Any, collector: Collector) -> None:
    keys = batch[KEY].to_pylist()
    sources = batch[SOURCE].to_pylist()
    values = batch[VALUE].to_pylist()
    stages = batch[STAGE].to_pylist()
    finished, failed, malformed = [], [], []
    for i, key in enumerate(keys):
        if stages[i] is None:
            finished.append((key, sources[i], pickle.loads(values[i])))
        elif stages[i] == INPUT_STAGE:
            malformed.append(
                InputRow(key, sources[i], error=batch[ERROR][i].as_py(), raw=batch[RAW][i].as_py())
            )
        else:
            failed.append(
                {
                    "key": key,
                    "source": sources[i],
                    "stage": stages[i],
                    "exception": batch[EXCEPTION][i].as_py(),
                    "error": batch[ERROR][i].as_py(),
                }
            )
    seconds = {
        name.removeprefix(SECONDS): sum(batch[name].to_pylist())
        for name in batch.column_names
        if name.startswith(SECONDS)
    }
    collector.add_stage_seconds(seconds)
    collector.add(finished, failed, malformed)
