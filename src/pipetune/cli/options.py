"""Reusable click option groups for commands that take a TARGET.

Every command that runs a pipeline (profile, propose, optimize, apply, check...) uses the
same options, spelled the same way::

    @click.command()
    @target_argument
    @target_options            # = workload_options + requirements_options + --config
    def propose(target, target_opts):
        t = load_target(target, target_opts)

``workload_options`` and ``requirements_options`` may also be used alone; each collects
its options into one object (``target_opts: TargetOptions``) so commands do not repeat a
dozen parameters.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import click

from pipetune.core.kernel.control import DEFAULT_ITEM_TIMEOUT_S

F = TypeVar("F", bound=Callable[..., Any])

#: The keyword argument the decorators pass to the command.
KWARG = "target_opts"


@dataclass(frozen=True)
class WorkloadOptions:
    """Workload options from the command line (``None``: not given)."""

    path: Path | None = None
    folder: Path | None = None
    field: str | None = None
    label_field: str | None = None
    pattern: str | None = None
    items: int | None = None
    concurrency: tuple[int, ...] | None = None
    warmup: int | None = None
    repeats: int | None = None
    mode: str | None = None
    rate: float | None = None
    trace: Path | None = None
    seed: int | None = None


@dataclass(frozen=True)
class RequirementsOptions:
    """Requirement options from the command line: only the ones given."""

    values: Mapping[str, Any] = field(default_factory=dict)

    def given(self) -> dict[str, Any]:
        return {key: value for key, value in self.values.items() if value is not None}


@dataclass(frozen=True)
class TargetOptions:
    """Everything :func:`pipetune.cli.target.load_target` takes from the command line."""

    workload: WorkloadOptions = field(default_factory=WorkloadOptions)
    requirements: RequirementsOptions = field(default_factory=RequirementsOptions)
    config: Path | None = None


class ConcurrencyLevels(click.ParamType):
    """``1,2,4,8`` -> ``(1, 2, 4, 8)``."""

    name = "LEVELS"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        try:
            levels = tuple(int(part) for part in str(value).split(",") if part.strip())
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of whole numbers", param, ctx)
        if not levels or any(level < 1 for level in levels):
            self.fail(f"{value!r}: concurrency levels must be >= 1", param, ctx)
        return levels


class ThreadCount(click.ParamType):
    """``--threads``: a whole number >= 1, or ``auto``."""

    name = "N|auto"

    def convert(self, value: Any, param: Any, ctx: Any) -> int | str:
        if isinstance(value, int) or value == "auto":
            return value
        text = str(value).strip().lower()
        if text == "auto":
            return "auto"
        if not text.isdigit() or int(text) < 1:
            self.fail(f"{value!r} is not a thread count (a whole number >= 1, or auto)", param, ctx)
        return int(text)


def resolve_threads(ctx: Any, param: Any, value: int | str | None) -> int | None:
    """The count ``--threads`` asks for: ``auto`` measures the host's load now and leaves
    the cores other processes use to them."""
    if value == "auto":
        from pipetune.core.measure.load import auto_threads

        return auto_threads()
    return value  # type: ignore[return-value]


THREADS_HELP = (
    "Pin torch, the BLAS/OpenMP pools and the plugins' pools (faiss) to N threads while "
    "user code runs; auto: the physical cores other processes leave free, measured at "
    "start. Default: the process's own settings."
)


def threads_option(fn: F) -> F:
    """``--threads N|auto``: the command runs the user's code under that pin."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        count = kwargs.pop("threads")
        if count is None:
            return fn(*args, **kwargs)
        from pipetune.core.runtime.threads import pin_threads

        with pin_threads(count):
            return fn(*args, **kwargs)

    return click.option(  # type: ignore[return-value]
        "--threads",
        "threads",
        type=ThreadCount(),
        metavar="N|auto",
        callback=resolve_threads,
        help=THREADS_HELP,
    )(wrapper)


_positive = click.FloatRange(min=0, min_open=True)

#: (option flags, Requirements field, help). ``requirements_options`` adds one option each.
REQUIREMENT_OPTIONS: tuple[tuple[str, str, str], ...] = (
    ("--p50-ms", "p50_ms", "P50 latency bound, milliseconds."),
    ("--p95-ms", "p95_ms", "P95 latency bound, milliseconds."),
    ("--p99-ms", "p99_ms", "P99 latency bound, milliseconds."),
    ("--max-ms", "max_ms", "Maximum latency bound, milliseconds."),
    ("--min-throughput", "min_throughput_rps", "Minimum throughput, requests per second."),
    (
        "--max-accuracy-drop",
        "max_accuracy_drop",
        "Largest tolerated fidelity drop against the original (0.01 = 1 %).",
    ),
    ("--min-gain", "min_gain", "Smallest speedup worth keeping (0.05 = 5 %)."),
    ("--cost-per-hour", "cost_per_hour", "Cost of one instance-hour (for cost per 1,000)."),
    ("--monthly-volume", "monthly_volume", "Predictions per month (for monthly cost)."),
)


def _collect(kwargs: dict[str, Any], **changes: Any) -> None:
    """Merge ``changes`` into the command's ``target_opts`` object (created on first use)."""
    current: TargetOptions = kwargs.get(KWARG) or TargetOptions()
    kwargs[KWARG] = replace(current, **changes)


def workload_options(fn: F) -> F:
    """Add the workload options; the command receives them in ``target_opts``."""
    names = [f.name for f in fields(WorkloadOptions)]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(f"workload_{name}") for name in names}
        current: TargetOptions = kwargs.get(KWARG) or TargetOptions()
        _collect(kwargs, workload=replace(current.workload, **given))
        return fn(*args, **kwargs)

    decorators = [*_workload_input_options(), *_workload_run_options()]  # in --help order
    for decorator in reversed(decorators):
        wrapper = decorator(wrapper)
    return wrapper  # type: ignore[return-value]


def _workload_input_options() -> list[Callable[[Any], Any]]:
    """The options that say which inputs the workload holds (made afresh for each command)."""
    return [
        click.option(
            "--workload",
            "workload_path",
            type=click.Path(path_type=Path),
            help="Inputs: a JSONL file, one input per line (a folder works too).",
        ),
        click.option(
            "--folder",
            "workload_folder",
            type=click.Path(path_type=Path, file_okay=False),
            help="Inputs: every file in this folder (images, documents), sorted.",
        ),
        click.option(
            "--field",
            "workload_field",
            metavar="KEY",
            help="JSONL: the key of each line's object holding the input.",
        ),
        click.option(
            "--label-field",
            "workload_label_field",
            metavar="KEY",
            help="JSONL: the key holding the label (accuracy is reported with labels).",
        ),
        click.option(
            "--pattern", "workload_pattern", metavar="GLOB", help="Folder: file name pattern."
        ),
        click.option(
            "--items",
            "workload_items",
            type=click.IntRange(min=1),
            metavar="N",
            help="Use the first N inputs of the workload.",
        ),
    ]


def _workload_run_options() -> list[Callable[[Any], Any]]:
    """The options that say how the workload is run: sweep, passes, mode, arrivals, seed."""
    return [
        click.option(
            "--concurrency",
            "workload_concurrency",
            type=ConcurrencyLevels(),
            help="Concurrency levels to sweep, e.g. 1,2,4,8.",
        ),
        click.option(
            "--warmup",
            "workload_warmup",
            type=click.IntRange(min=0),
            metavar="N",
            help="Passes discarded before measuring.",
        ),
        click.option(
            "--repeats",
            "workload_repeats",
            type=click.IntRange(min=1),
            metavar="N",
            help="Measured passes.",
        ),
        click.option(
            "--mode",
            "workload_mode",
            type=click.Choice(["offline", "online", "stream"]),
            help="offline: throughput of a batch job; online: open-loop arrivals "
            "(--rate or --trace), the latency users see; stream: generation.",
        ),
        click.option(
            "--rate",
            "workload_rate",
            type=_positive,
            metavar="RPS",
            help="Online mode: Poisson arrival rate, requests per second.",
        ),
        click.option(
            "--trace",
            "workload_trace",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Online mode: a recorded arrival trace (JSON with arrivals_s) to replay.",
        ),
        click.option(
            "--seed",
            "workload_seed",
            type=click.IntRange(min=0),
            help="Seed for splits and generated arrivals.",
        ),
    ]


def requirements_options(fn: F) -> F:
    """Add the requirement options; the command receives them in ``target_opts``."""
    keys = [key for _, key, _ in REQUIREMENT_OPTIONS]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {key: kwargs.pop(f"req_{key}") for key in keys}
        given["optimize_for"] = kwargs.pop("req_optimize_for")
        _collect(kwargs, requirements=RequirementsOptions(given))
        return fn(*args, **kwargs)

    wrapper = click.option(
        "--optimize-for",
        "req_optimize_for",
        type=click.Choice(["p50", "p95", "p99", "max", "throughput"]),
        help="The metric to optimize (default: the first latency bound given, else throughput).",
    )(wrapper)
    for flag, key, help_text in reversed(REQUIREMENT_OPTIONS):
        number = _positive
        if key in ("max_accuracy_drop", "min_gain"):
            number = click.FloatRange(min=0)
        wrapper = click.option(flag, f"req_{key}", type=number, metavar="X", help=help_text)(
            wrapper
        )
    return wrapper  # type: ignore[return-value]


def config_option(fn: F) -> F:
    """``--config PYPROJECT``: read ``[tool.pipetune]`` from this file."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        config = kwargs.pop("config_path")
        if config is not None:
            _collect(kwargs, config=config)
        return fn(*args, **kwargs)

    return click.option(  # type: ignore[return-value]
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        help="The pyproject.toml to read [tool.pipetune] from (default: the nearest one).",
    )(wrapper)


def target_options(fn: F) -> F:
    """Workload options, requirement options and ``--config``, collected in
    ``target_opts: TargetOptions``."""

    @functools.wraps(fn)
    def ensure(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault(KWARG, TargetOptions())
        return fn(*args, **kwargs)

    return workload_options(requirements_options(config_option(ensure)))  # type: ignore[return-value]


def timeout_option(fn: F) -> F:
    """``--timeout SECONDS``: the per-input deadline, spelled and defaulted the same in
    every command that runs user code. The command runs inside a control scope with it
    (:mod:`pipetune.core.kernel.control`), so every run it makes is bounded by it."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from pipetune.core.kernel import control

        with control.scope(item_timeout_s=kwargs.pop("item_timeout_s")):
            return fn(*args, **kwargs)

    return click.option(  # type: ignore[return-value]
        "--timeout",
        "item_timeout_s",
        type=click.FloatRange(min=0, min_open=True),
        default=DEFAULT_ITEM_TIMEOUT_S,
        show_default=True,
        metavar="SECONDS",
        help="Per input: the longest one input may take through the pipeline before the "
        "command stops with an error naming the stage and the input (a hung stage).",
    )(wrapper)


#: The TARGET argument. Optional: ``[tool.pipetune] target`` is used when it is missing.
target_argument = click.argument("target", required=False, metavar="[TARGET]")


def recipe_option(
    help_text: str, *, required: bool = False, exists: bool = True
) -> Callable[[F], F]:
    """``--recipe FILE`` (passed as ``recipe_path``): a recipe to read (``exists``) or write."""
    return click.option(
        "--recipe",
        "recipe_path",
        required=required,
        type=click.Path(path_type=Path, dir_okay=False, exists=exists),
        help=help_text,
    )


def artifacts_option(fn: F) -> F:
    """``--artifacts DIR`` (passed as ``artifacts_dir``): where a recipe's artifacts are."""
    return click.option(
        "--artifacts",
        "artifacts_dir",
        type=click.Path(path_type=Path, file_okay=False),
        help="Where the recipe's artifacts are (default: .pipetune/artifacts).",
    )(fn)


def ray_address_options(address_help: str, timeout_help: str) -> Callable[[F], F]:
    """``--address HOST:PORT`` (also ``RAY_ADDRESS``) and ``--connect-timeout SECONDS``: the
    Ray cluster a command runs on, and how long to wait for it to answer."""

    def decorate(fn: F) -> F:
        fn = click.option(
            "--connect-timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=30.0,
            show_default=True,
            metavar="SECONDS",
            help=timeout_help,
        )(fn)
        return click.option(
            "--address", envvar="RAY_ADDRESS", metavar="HOST:PORT", help=address_help
        )(fn)

    return decorate


def runs_target(fn: F) -> F:
    """TARGET, the target options (collected in ``target_opts``) and ``--threads``: what a
    command that runs TARGET's pipeline on its workload takes."""
    return target_argument(target_options(threads_option(fn)))


def json_file_option(help_text: str) -> Callable[[F], F]:
    """``--json FILE`` (passed as ``json_path``): where the command writes its JSON."""
    return click.option(
        "--json", "json_path", type=click.Path(path_type=Path, dir_okay=False), help=help_text
    )
