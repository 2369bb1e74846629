"""TARGET resolution: a pipeline plus the workload and requirements to measure it with.

``TARGET`` is ``package.module:attr`` or ``path/to/file.py:attr`` naming a
:class:`~pipetune.core.kernel.model.Pipeline` (``:attr`` defaults to ``pipeline``; the attribute
may also be a function taking no arguments that returns one). The module may export
``workload`` and ``requirements`` too (objects, plain data, or zero-argument functions
returning them, so expensive set-up runs only when a command needs it).

Where each part comes from, highest precedence first:

* workload source: ``--workload FILE.jsonl`` / ``--folder DIR`` > the module's
  ``workload`` > ``[tool.pipetune.workload] path``. Settings (``--items``,
  ``--concurrency``, ``--warmup``...) on the command line override the source's;
  ``[tool.pipetune.workload]`` settings fill in for a file or folder source (a module's
  workload object is already complete).
* requirements: the module's ``requirements`` > ``[tool.pipetune.requirements]``, then each
  requirement option given on the command line replaces that one field.

Every problem is a :class:`~pipetune.core.kernel.errors.ConfigError` or
:class:`~pipetune.core.kernel.errors.PipelineError` that says what and where; the CLI prints it and
exits 2.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from pipetune.cli.options import (
    REQUIREMENT_OPTIONS,
    RequirementsOptions,
    TargetOptions,
    WorkloadOptions,
    requirements_options,
    target_argument,
    target_options,
    workload_options,
)
from pipetune.cli.target_module import (
    import_error,
    import_target_module,
    looks_like_path,
    parse_spec,
)
from pipetune.core.kernel.config import ProjectConfig, check_requirements, load_config
from pipetune.core.kernel.errors import ConfigError, PipelineError, PipetuneError
from pipetune.core.kernel.model import Pipeline, Requirements, Trace, Workload

__all__ = [
    "REQUIREMENT_OPTIONS",
    "RequirementsOptions",
    "Target",
    "TargetOptions",
    "WorkloadOptions",
    "build_requirements",
    "build_workload",
    "check_trace",
    "import_target_module",
    "load_target",
    "load_trace",
    "parse_spec",
    "requirements_options",
    "target_argument",
    "target_options",
    "workload_options",
]


@dataclass(frozen=True)
class Target:
    """A resolved TARGET. ``workload`` is ``None`` only when it was not asked for.

    ``origins`` says where the workload and requirements came from (for reports and
    error messages): ``{"workload": "--workload data.jsonl", "requirements": "module"}``.
    """

    pipeline: Pipeline
    workload: Workload | None
    requirements: Requirements
    source: str
    module: str = ""
    config: ProjectConfig = field(default_factory=ProjectConfig)
    origins: Mapping[str, str] = field(default_factory=dict)


def load_target(
    spec: str | None,
    options: TargetOptions | None = None,
    *,
    need_workload: bool = True,
) -> Target:
    """Import TARGET and assemble its pipeline, workload and requirements.

    Args:
        spec: ``package.module:attr`` or ``path/to/file.py:attr``; ``None`` uses
            ``[tool.pipetune] target``.
        options: what the command line gave (see :func:`target_options`).
        need_workload: ``False`` for commands that never run the pipeline; then a missing
            workload is not an error (``Target.workload`` may be ``None``).
    """
    options = options or TargetOptions()
    config = load_config(options.config) if options.config else load_config()
    if not spec:
        if not config.target:
            raise ConfigError(
                "no TARGET given: pass one (package.module:attr or path/to/file.py:attr) "
                "or set `target` in [tool.pipetune] of pyproject.toml"
            )
        spec = config.target
        # A target from the config file is relative to the file, not to the shell.
        location, attribute = parse_spec(spec)
        if looks_like_path(location):
            spec = f"{config.resolve(location)}:{attribute}"

    location, attribute = parse_spec(spec)
    module = import_target_module(location)
    pipeline = _pipeline_from(module, attribute, spec)

    workload, workload_origin = build_workload(
        _export(module, "workload", spec), options.workload, config, spec=spec
    )
    if workload is None and need_workload:
        raise ConfigError(
            f"{spec}: no workload. Export `workload` from the module, pass --workload "
            "FILE.jsonl or --folder DIR, or set `path` in [tool.pipetune.workload] of "
            "pyproject.toml"
        )
    if workload is not None:
        check_trace(workload, pipeline, options.workload.trace or config.workload.get("trace"))
    requirements, requirements_origin = build_requirements(
        _export(module, "requirements", spec), options.requirements, config, spec=spec
    )
    return Target(
        pipeline=pipeline,
        workload=workload,
        requirements=requirements,
        source=spec,
        module=module.__name__,
        config=config,
        origins={"workload": workload_origin, "requirements": requirements_origin},
    )


# -- the pipeline --------------------------------------------------------------------------


def _pipeline_from(module: ModuleType, attribute: str, spec: str) -> Pipeline:
    value: Any = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise ConfigError(
                f"TARGET {spec}: module {module.__name__!r} has no attribute {attribute!r}"
                + _candidates(module)
            ) from None
    if isinstance(value, Pipeline):
        return value
    if (inspect.isfunction(value) or inspect.ismethod(value)) and _takes_no_arguments(value):
        built = _call_user(value, f"{spec} (building the pipeline)")
        if isinstance(built, Pipeline):
            return built
        raise PipelineError(
            f"TARGET {spec}: {attribute}() returned {_kind(built)}, not a pipetune Pipeline"
        )
    raise PipelineError(
        f"TARGET {spec}: {attribute!r} is {_kind(value)}, not a pipetune Pipeline"
        + _candidates(module)
    )


def _candidates(module: ModuleType) -> str:
    names = [name for name, value in vars(module).items() if isinstance(value, Pipeline)]
    return f" (pipelines in it: {', '.join(sorted(names))})" if names else ""


def _kind(value: Any) -> str:
    if value is None:
        return "None"
    name = type(value).__name__
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"


def _takes_no_arguments(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return all(
        p.default is not inspect.Parameter.empty
        or p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        for p in params
    )


def _call_user(fn: Callable[[], Any], what: str) -> Any:
    try:
        return fn()
    except PipetuneError:
        raise
    except Exception as exc:
        raise import_error(what, exc) from exc


def _export(module: ModuleType, name: str, spec: str) -> Any:
    """The module's ``workload``/``requirements``, calling it when it is a function."""
    value = getattr(module, name, None)
    if value is not None and (inspect.isfunction(value) or inspect.ismethod(value)):
        if not _takes_no_arguments(value):
            raise ConfigError(
                f"TARGET {spec}: {name}() must take no arguments to be used as the {name}"
            )
        value = _call_user(value, f"{spec} ({name}())")
    return value


# -- the workload --------------------------------------------------------------------------


def build_workload(
    exported: Any,
    options: WorkloadOptions,
    config: ProjectConfig,
    *,
    spec: str = "TARGET",
) -> tuple[Workload | None, str]:
    """The workload and where it came from, per the precedence in the module docstring."""
    cfg = config.workload
    if options.path is not None and options.folder is not None:
        raise ConfigError("give either --workload FILE or --folder DIR, not both")
    settings = _workload_settings(options, cfg)

    if options.path is not None or options.folder is not None:
        source = options.path if options.path is not None else options.folder
        assert source is not None
        origin = f"--{'workload' if options.path is not None else 'folder'} {source}"
        workload = _load_workload_file(
            Path(source),
            field=options.field or cfg.get("field"),
            label_field=options.label_field or cfg.get("label_field"),
            pattern=options.pattern or cfg.get("pattern"),
            settings=settings,
        )
        return _finish(workload, options, cfg, use_config=True, origin=origin), origin
    if exported is not None:
        workload = _coerce_workload(exported, spec)
        origin = f"{spec.rpartition(':')[0] or spec}:workload"
        return _finish(workload, options, cfg, use_config=False, origin=origin), origin
    if cfg.get("path"):
        source = config.resolve(cfg["path"])
        origin = config.where("workload")
        workload = _load_workload_file(
            source,
            field=options.field or cfg.get("field"),
            label_field=options.label_field or cfg.get("label_field"),
            pattern=options.pattern or cfg.get("pattern"),
            settings=settings,
        )
        return _finish(workload, options, cfg, use_config=True, origin=origin), origin
    return None, ""


def _workload_settings(options: WorkloadOptions, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Workload constructor settings from the command line, then the config file."""
    settings: dict[str, Any] = {}
    for key in ("concurrency", "warmup", "repeats", "mode", "rate", "seed", "name"):
        value = getattr(options, key, None)
        if value is None:
            value = cfg.get(key)
        if value is not None:
            settings[key] = tuple(value) if key == "concurrency" else value
    trace = options.trace if options.trace is not None else cfg.get("trace")
    if trace is not None:
        settings["trace"] = load_trace(trace)
        settings.setdefault("mode", "online")  # a trace is an arrival process: online
    return settings


def load_trace(path: str | Path) -> Trace:
    """A recorded arrival trace: a trace JSON file (``arrivals_s``, ``sizes``, ``pipeline``)
    or a production monitor export holding one. Every problem names the file."""
    from pipetune.monitor.export import is_export, read_json

    data = read_json(path, "trace")
    if is_export(data):
        if data.get("trace") is None:
            raise ConfigError(
                f"trace {path}: this monitor export holds no sampled trace (create the "
                "Monitor with trace_sample > 0)"
            )
        data = data["trace"]
    if not isinstance(data, Mapping) or "arrivals_s" not in data:
        raise ConfigError(
            f"trace {path}: expected a JSON object with 'arrivals_s' (offsets in seconds), "
            "optionally 'sizes' and 'pipeline', or a monitor export with a trace"
        )
    try:
        return Trace.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"trace {path}: {exc}") from None


def check_trace(workload: Workload, pipeline: Pipeline, where: Any = None) -> None:
    """Refuse a trace recorded on another pipeline: it models the wrong traffic."""
    trace = workload.trace
    if trace is None or not trace.pipeline or trace.pipeline == pipeline.name:
        return
    source = f"trace {where}" if where else "the workload's trace"
    raise ConfigError(
        f"{source} was recorded on pipeline {trace.pipeline!r}, not {pipeline.name!r}: "
        "replaying it would model another service's traffic (record one on this pipeline "
        "with pipetune.monitor.Monitor(trace_sample=...))"
    )


def _load_workload_file(
    path: Path,
    *,
    field: str | None,
    label_field: str | None,
    pattern: str | None,
    settings: Mapping[str, Any],
) -> Workload:
    try:
        if path.is_dir():
            return Workload.from_folder(path, pattern=pattern or "*", **settings)
        if not path.exists():
            raise ConfigError(f"workload file {path} does not exist")
        return Workload.from_jsonl(path, field=field, label_field=label_field, **settings)
    except TypeError as exc:  # a setting of the wrong type in pyproject.toml
        raise ConfigError(f"workload {path}: {exc}") from None


def _coerce_workload(value: Any, spec: str) -> Workload:
    if isinstance(value, Workload):
        return value
    if isinstance(value, Iterable) and not isinstance(value, str | bytes | Mapping):
        return Workload.from_sequence(value)  # a list, a tuple, a generator
    raise ConfigError(
        f"TARGET {spec}: `workload` is {_kind(value)}; export a pipetune Workload, a list of "
        "inputs, or a function returning one"
    )


def _finish(
    workload: Workload,
    options: WorkloadOptions,
    cfg: Mapping[str, Any],
    *,
    use_config: bool,
    origin: str,
) -> Workload:
    """Apply ``--items`` and the command line's settings; refuse an empty workload."""
    changes = _command_line_changes(workload, options)
    if changes:
        try:
            workload = workload.evolve(**changes)
        except TypeError as exc:
            raise ConfigError(f"workload from {origin}: {exc}") from None
    limit = options.items
    if limit is None and use_config:
        limit = cfg.get("items")
    if limit is not None:
        workload = _first_items(workload, limit)
    if len(workload) == 0:
        raise ConfigError(f"the workload from {origin} is empty: give it at least one input")
    return workload


def _command_line_changes(workload: Workload, options: WorkloadOptions) -> dict[str, Any]:
    """The workload fields the command line sets; ``--trace`` loads its arrivals and makes
    an offline workload online (and is refused with ``--mode offline``)."""
    changes: dict[str, Any] = {}
    for key in ("concurrency", "warmup", "repeats", "mode", "rate", "seed"):
        value = getattr(options, key)
        if value is not None:
            changes[key] = tuple(value) if key == "concurrency" else value
    if options.trace is not None:
        if options.mode == "offline":
            raise ConfigError(
                f"--trace {options.trace} replays recorded arrivals, which only online (or "
                "stream) mode has: drop --mode offline or use --mode online"
            )
        changes["trace"] = load_trace(options.trace)
        if options.mode is None and workload.mode == "offline":
            changes["mode"] = "online"
    return changes


def _first_items(workload: Workload, limit: Any) -> Workload:
    """The workload cut to its first ``limit`` inputs (``--items`` or the config's ``items``)."""
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ConfigError(f"items must be a positive whole number, got {limit!r}")
    return workload.subset(range(min(limit, len(workload))))


# -- the requirements ----------------------------------------------------------------------


def build_requirements(
    exported: Any,
    options: RequirementsOptions,
    config: ProjectConfig,
    *,
    spec: str = "TARGET",
) -> tuple[Requirements, str]:
    """The requirements and where they came from."""
    if exported is not None:
        origin = f"{spec.rpartition(':')[0] or spec}:requirements"
        if isinstance(exported, Requirements):
            base = exported
        elif isinstance(exported, Mapping):
            base = _requirements_from(exported, f"TARGET {spec}: `requirements`")
        else:
            raise ConfigError(
                f"TARGET {spec}: `requirements` is {_kind(exported)}; export a pipetune "
                "Requirements or a dict of requirement keys"
            )
    elif config.requirements:
        origin = config.where("requirements")
        base = _requirements_from(config.requirements, origin)
    else:
        origin, base = "defaults", Requirements()
    given = options.given()
    if given:
        base = replace(base, **given)
        origin += " + command line"
    return base, origin


def _requirements_from(data: Mapping[str, Any], where: str) -> Requirements:
    check_requirements(data, where)  # keys and types, with where they are
    try:
        return Requirements.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
