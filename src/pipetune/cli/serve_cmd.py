"""``pipetune serve TARGET --engine ray``: the pipeline online, on Ray Serve.

The pipeline (with ``--recipe`` applied) is deployed as a Serve application: each replica
builds it once, wraps it in pipetune's Monitor and serves Prometheus metrics; the number of
replicas and ``max_ongoing_requests`` come from capacity's plan and the latency requirement
(:mod:`pipetune.scale.serve_sizing`), and a recipe that batches is served with Serve's own
``@serve.batch``. ``--plan`` prints the sizing without deploying. The command serves until
Ctrl-C, then shuts the application down.

Exit codes: 0 served (and stopped with Ctrl-C) or planned; 2 bad input (no Ray, an
unreachable --address, a recipe made for another pipeline, a port in use).
"""

from __future__ import annotations

import signal
import time
from typing import Any

import click

from pipetune.cli.options import (
    TargetOptions,
    artifacts_option,
    ray_address_options,
    recipe_option,
    target_argument,
    target_options,
    timeout_option,
)
from pipetune.cli.state import get_state


def register(cli: click.Group) -> None:
    cli.add_command(serve)


@click.command()
@target_argument
@target_options
@recipe_option("Apply this recipe (from `pipetune optimize`) in every replica.")
@artifacts_option
@click.option(
    "--engine",
    type=click.Choice(["ray"]),
    default="ray",
    show_default=True,
    help="ray: Ray Serve (a local Ray is started when no --address is given).",
)
@ray_address_options(
    "The Ray cluster to deploy on (also RAY_ADDRESS).",
    "Give up on an --address that does not answer within this long.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP host to listen on.")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8000,
    show_default=True,
    help="HTTP port of Serve's proxy.",
)
@click.option("--route", default="/", show_default=True, help="Route prefix of the pipeline.")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=9464,
    show_default=True,
    help="Prometheus /metrics of replica N on its node: this port + N (0: any).",
)
@click.option(
    "--replicas",
    type=click.IntRange(min=1),
    metavar="N",
    help="A fixed number of replicas instead of the planned one.",
)
@click.option(
    "--max-ongoing-requests",
    type=click.IntRange(min=1),
    metavar="N",
    help="Instead of the one the latency requirement gives.",
)
@click.option(
    "--threads-per-replica",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Requests a replica serves at once (and the CPUs it reserves).",
)
@click.option(
    "--now-rps",
    type=click.FloatRange(min=0),
    metavar="RPS",
    help="Traffic now: the autoscaling floor.",
)
@click.option(
    "--peak-rps",
    type=click.FloatRange(min=0),
    metavar="RPS",
    help="Traffic at peak: the autoscaling ceiling.",
)
@click.option(
    "--profile",
    "profile_source",
    metavar="PROFILE_OR_RUN",
    help="Size from this profile instead of measuring TARGET's workload now.",
)
@click.option("--plan", "plan_only", is_flag=True, help="Print the sizing and stop.")
@click.option("--quiet", "-q", is_flag=True, help="No progress messages.")
@timeout_option
@click.pass_context
def serve(
    ctx: click.Context, target: str | None, target_opts: TargetOptions, **options: Any
) -> int:
    """Serve TARGET (with --recipe applied) over HTTP on Ray Serve, sized from its profile
    and the latency requirement, with the pipetune Monitor's Prometheus metrics in every
    replica. POST a JSON input to the route; the answer is pipeline.run's output as JSON.
    --timeout bounds each input of the sizing profile and is Serve's request timeout."""
    from pipetune.cli.render import progress_messages
    from pipetune.cli.run_cmd import build_job, load_profile

    state = get_state(ctx)
    say = progress_messages(options["quiet"])
    if not options["plan_only"]:
        from pipetune.scale.ray_env import require_ray

        require_ray("pipetune serve --engine ray", serve=True)
    profile = load_profile(options["profile_source"])
    pipeline, job, resolved = build_job(
        target,
        target_opts,
        options["recipe_path"],
        options["artifacts_dir"],
        state,
        threads=1,
        need_workload=profile is None,
    )
    if profile is None:
        profile = _measure(pipeline, resolved.workload, state, say)
    address = options["address"]
    if options["plan_only"]:
        from pipetune.scale.ray_env import available_cpus

        cpus = available_cpus(address, "pipetune serve --plan")
        sizing = _sizing(pipeline, profile, resolved.requirements, options, cpus)
        for line in sizing.lines():
            click.echo(line)
        return 0
    return _deploy(job, pipeline, profile, resolved.requirements, options, say)


def _deploy(
    job: Any, pipeline: Any, profile: Any, requirements: Any, options: Any, say: Any
) -> int:
    from pipetune.core.kernel import control
    from pipetune.scale.ray_env import cluster_cpus, ray_session

    with ray_session(
        options["address"],
        timeout_s=options["connect_timeout"],
        purpose="pipetune serve --engine ray",
    ) as ray:
        from ray import serve as ray_serve

        from pipetune.scale.serve_app import deploy

        sizing = _sizing(pipeline, profile, requirements, options, cluster_cpus(ray))
        for line in sizing.lines():
            click.echo(line)
        say(f"deploying {pipeline.name} on Ray Serve")
        url = deploy(
            job,
            sizing,
            route_prefix=options["route"],
            host=options["host"],
            port=options["port"],
            metrics_port=options["metrics_port"],
            recipe={"recipe": job.recipe} if job.recipe else None,
            request_timeout_s=control.current().item_timeout_s,
        )
        click.echo(f"serving {pipeline.name} at {url} (POST a JSON input); Ctrl-C stops it")
        if options["metrics_port"]:
            click.echo(
                f"Prometheus metrics: http://{options['host']}:{options['metrics_port']}/metrics "
                "(replica N on a node: that port + N)"
            )
        previous = signal.signal(signal.SIGTERM, _stop)  # a supervisor's stop: shut down too
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            click.echo("stopping", err=True)
        finally:
            signal.signal(signal.SIGTERM, previous)
            ray_serve.shutdown()
    return 0


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _sizing(pipeline: Any, profile: Any, requirements: Any, options: Any, cpus: float) -> Any:
    from pipetune.core.measure.growth import check_growth
    from pipetune.core.runtime.serving import ServingOptions
    from pipetune.scale.serve_sizing import size_serving

    growth = None
    figures = {k: options[k] for k in ("now_rps", "peak_rps") if options[k] is not None}
    if figures:
        growth = check_growth(figures)
    elif requirements.growth is not None:
        growth = requirements.growth
    return size_serving(
        profile,
        requirements,
        cpus=cpus,
        serving=ServingOptions.of(pipeline),
        growth=growth,
        threads=options["threads_per_replica"],
        replicas=options["replicas"],
        max_ongoing=options["max_ongoing_requests"],
    )


def _measure(pipeline: Any, workload: Any, state: Any, say: Any) -> Any:
    """Single-worker service times on TARGET's workload (what a replica will see)."""
    from pipetune.scale.runner import service_profile

    say(f"measuring {pipeline.name} on its workload to size the deployment")
    return service_profile(pipeline, workload, state.plugin_manager())
