"""``pipetune run TARGET --input FILES --output PATH``: the pipeline over a dataset.

The pipeline is built from TARGET with its recipe applied (``load_recipe``: no re-tuning)
and run over JSONL, Parquet or CSV inputs; every output row is keyed by its input's id and
every input that fails (a malformed row, a stage that raised) is a line of the errors file
with its source, stage and exception. ``--engine local`` runs on pipetune's own runtime
(threads or processes); ``--engine ray`` on Ray Data, with a plan derived from the profile
(``--plan`` prints it without running). The run is recorded in the run store with its plan.

Exit codes: 0 done (errors, if any, are in the errors file); 2 bad input (no Ray, an
unreachable --address, an existing output without --overwrite, a recipe made for another
pipeline); 130 interrupted (what finished is kept).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from pipetune.cli.options import (
    TargetOptions,
    artifacts_option,
    json_file_option,
    ray_address_options,
    recipe_option,
    target_argument,
    threads_option,
    timeout_option,
)
from pipetune.cli.state import get_state


def register(cli: click.Group) -> None:
    cli.add_command(run)


@click.command()
@target_argument
@threads_option
@timeout_option
@click.option(
    "--input",
    "inputs",
    multiple=True,
    required=True,
    metavar="FILE_OR_GLOB",
    help="Input rows: .jsonl, .parquet or .csv files, folders or globs. Repeatable.",
)
@click.option(
    "--output",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where the outputs go: .jsonl or .parquet, one row per input ({id, output}).",
)
@recipe_option("Apply this recipe (from `pipetune optimize`) before running.")
@artifacts_option
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: pipetune's runtime on this machine; ray: Ray Data (a local Ray is started "
    "when no --address is given).",
)
@ray_address_options(
    "Ray: the cluster to run on (also RAY_ADDRESS).",
    "ray: give up on an --address that does not answer within this long.",
)
@click.option(
    "--errors",
    "errors_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The errors file (default: OUTPUT's name + .errors.jsonl).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output and errors file.")
@click.option(
    "--field", metavar="KEY", help="The input is this field of each row (default: the row)."
)
@click.option(
    "--id-field",
    metavar="KEY",
    help="The field holding each row's id (default: id; rows without one are keyed by "
    "their file and line). Given explicitly, a row without it is an error.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="local: inputs processed at once.",
)
@click.option(
    "--executor",
    type=click.Choice(["thread", "process"]),
    default="thread",
    show_default=True,
    help="local: worker threads or spawned processes.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    metavar="N",
    help="Inputs per batch call (default: the recipe's batching, else 1).",
)
@click.option(
    "--profile",
    "profile_source",
    metavar="PROFILE_OR_RUN",
    help="ray: plan from this profile (a `pipetune profile --json` file or a run id) instead "
    "of measuring --sample rows now.",
)
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="ray: input rows measured to plan the job.",
)
@click.option(
    "--cpus",
    type=click.FloatRange(min=0, min_open=True),
    metavar="N",
    help="ray: plan for N CPUs instead of the cluster's.",
)
@click.option(
    "--threads-per-worker",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="torch/BLAS threads in each worker process.",
)
@click.option("--plan", "plan_only", is_flag=True, help="Print the plan and stop.")
@json_file_option("Write the summary (and the plan) as JSON.")
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="The pyproject.toml to read [tool.pipetune] from.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress messages or bar.")
@click.pass_context
def run(ctx: click.Context, target: str | None, **options: Any) -> int:
    """Run TARGET (with --recipe applied) over --input rows and write one output row per
    input, keyed by its id, to --output; inputs that fail go to the errors file with their
    source, stage and exception. --engine ray runs on Ray Data with a plan derived from
    the profile (--plan prints it)."""
    from pipetune.cli.render import progress_messages, write_json_atomic
    from pipetune.scale import runner

    state = get_state(ctx)
    quiet = options["quiet"]
    say = progress_messages(quiet)
    pipeline, request = _request(target, options, state)
    pm = state.plugin_manager()
    profile = load_profile(options["profile_source"])
    if options["plan_only"]:
        if request.engine == "ray" and profile is None:
            profile = _sample_profile(request, pipeline, pm, say)
        from pipetune.scale.ray_env import available_cpus

        cpus = request.cpus or available_cpus(request.address, "pipetune run --plan")
        plan, _ = runner.plan_job(request, pipeline, profile=profile, cpus=cpus)
        for line in plan.lines():
            click.echo(line)
        if options["json_path"] is not None:
            write_json_atomic(options["json_path"], {"plan": plan.to_dict()})
        return 0
    runner.check_request(request)  # refuse before measuring anything
    if request.engine == "ray":
        from pipetune.scale.ray_env import require_ray

        require_ray("pipetune run --engine ray")
    if request.engine == "ray" and profile is None:
        profile = _sample_profile(request, pipeline, pm, say)
    summary = _run(request, pipeline, profile, state, say, quiet)
    for line in [*_plan_lines(summary.plan), *summary.lines()]:
        click.echo(line)
    if options["json_path"] is not None:
        write_json_atomic(options["json_path"], summary.to_dict())
        state.written.append(str(options["json_path"]))
    if summary.stopped:
        raise KeyboardInterrupt
    return 0


def _sample_profile(request: Any, pipeline: Any, pm: Any, say: Any) -> Any:
    """A profile measured now on ``--sample`` input rows, to plan a Ray job from."""
    from pipetune.scale import runner

    files = runner.expand_inputs(request.inputs)
    batch = runner.recipe_batch(request, pipeline)
    return runner.sample_profile(pipeline, files, request, batch, pm=pm, log=say)


def _request(target: str | None, options: Mapping[str, Any], state: Any) -> tuple[Any, Any]:
    """The pipeline (recipe applied) and the run request."""
    from pipetune.scale.rows import DEFAULT_ID_FIELD, RowOptions
    from pipetune.scale.runner import RunRequest

    pipeline, job = build_job(
        target,
        TargetOptions(config=options["config"]),
        options["recipe_path"],
        options["artifacts_dir"],
        state,
        threads=options["threads_per_worker"],
        need_workload=False,
    )[:2]
    id_field = options["id_field"]
    request = RunRequest(
        job=job,
        inputs=tuple(options["inputs"]),
        output=options["output"],
        errors=options["errors_path"],
        overwrite=options["overwrite"],
        rows=RowOptions(
            field=options["field"],
            id_field=id_field or DEFAULT_ID_FIELD,
            id_required=id_field is not None,
        ),
        engine=options["engine"],
        address=options["address"],
        workers=options["workers"],
        executor=options["executor"],
        batch_size=options["batch_size"],
        sample=options["sample"],
        cpus=options["cpus"],
        connect_timeout_s=options["connect_timeout"],
        local_files=(job.factory_file,) if job.factory_file else (),
    )
    return pipeline, request


def build_job(
    target: str | None,
    target_opts: TargetOptions,
    recipe: Path | None,
    artifacts: Path | None,
    state: Any,
    *,
    threads: int = 1,
    need_workload: bool = True,
) -> tuple[Any, Any, Any]:
    """TARGET's pipeline with the recipe applied, the :class:`~pipetune.scale.job.JobSpec`
    workers rebuild it from, and the resolved target (workload, requirements)."""
    from pipetune.cli.target import load_target
    from pipetune.cli.target_module import factory_spec
    from pipetune.core.kernel import control
    from pipetune.core.loop.paths import store_dir
    from pipetune.core.loop.recipes import load_recipe
    from pipetune.scale.job import JobSpec

    resolved = load_target(target, target_opts, need_workload=need_workload)
    pipeline = resolved.pipeline
    if recipe is not None:
        artifacts = artifacts or store_dir() / "artifacts"
        pipeline = load_recipe(pipeline, recipe, pm=state.plugin_manager(), artifacts_dir=artifacts)
    factory, sys_path = factory_spec(resolved.source)
    job = JobSpec(
        factory=factory,
        pipeline=pipeline.name,
        stages=pipeline.stage_names,
        recipe=str(Path(recipe).resolve()) if recipe is not None else None,
        artifacts=str(Path(artifacts).resolve()) if artifacts is not None else None,
        sys_path=sys_path,
        disabled_plugins=tuple(state.disabled),
        threads=threads,
        item_timeout_s=control.current().item_timeout_s,
    )
    return pipeline, job, resolved


def _run(request: Any, pipeline: Any, profile: Any, state: Any, say: Any, quiet: bool) -> Any:
    """Run and record the job; what finished is kept whatever happens."""
    import sys

    from pipetune.cli.render import progress_bar
    from pipetune.scale import runner
    from pipetune.scale.rows import count_rows, expand_inputs

    total = count_rows(expand_inputs(request.inputs))
    run_id = runner.record_start(pipeline, request.job.factory, profile)
    state.written.extend([str(request.output), str(request.errors_path)])
    enabled = not quiet and sys.stderr.isatty()
    done = [0]
    try:
        with progress_bar(f"running {pipeline.name}", enabled=enabled) as update:

            def advance(count: int) -> None:
                done[0] += count
                update(done[0], max(total, done[0]))

            summary = runner.run_job(
                request, pipeline, profile=profile, progress=advance, pm=state.pm, log=say
            )
    except BaseException:
        runner.record_finish(run_id, None, "failed")
        raise
    runner.record_finish(run_id, summary, "interrupted" if summary.stopped else "finished")
    return summary


def load_profile(source: str | None) -> Any:
    """A profile from a ``pipetune profile --json`` file, or a run's final (else baseline)."""
    if source is None:
        return None
    from pipetune.core.kernel.errors import ConfigError
    from pipetune.core.kernel.results import Profile
    from pipetune.core.loop.store import RunStore
    from pipetune.monitor.export import read_json

    if source.endswith(".json") and Path(source).is_file():
        data = read_json(source, "profile")
        if not isinstance(data, Mapping) or "stage_ms" not in data or "stages" not in data:
            raise ConfigError(f"{source} is not a pipetune profile (`pipetune profile --json`)")
        return Profile.from_dict(data)
    with RunStore() as store:
        record = store.run(source)
        profiles = dict(store.profiles(record.id))
    for label in ("final", "baseline", "run-sample"):
        if label in profiles:
            return profiles[label]
    raise ConfigError(f"run {record.id} holds no profile to plan from")


def _plan_lines(plan: Mapping[str, Any] | None) -> list[str]:
    from pipetune.scale.plan import Plan

    return Plan.from_dict(plan).lines() if plan else []
