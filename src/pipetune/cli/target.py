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

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
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
from pipetune.core.kernel.config import ProjectConfig, check_requirements, load_config
from pipetune.core.kernel.errors import ConfigError, PipelineError, PipetuneError
from pipetune.core.kernel.model import Pipeline, Requirements, Trace, Workload

DEFAULT_ATTRIBUTE = "pipeline"

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
        if _looks_like_path(location):
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


# -- the spec ------------------------------------------------------------------------------


def parse_spec(spec: str) -> tuple[str, str]:
    """``"a/b.py:pipe"`` -> ``("a/b.py", "pipe")``; the attribute defaults to ``pipeline``."""
    spec = spec.strip()
    if not spec:
        raise ConfigError("TARGET is empty: expected package.module:attr or path/to/file.py:attr")
    location, colon, attribute = spec.rpartition(":")
    # No colon, or the colon belongs to a Windows drive ("C:\\x\\y.py"): no attribute.
    if not colon or any(sep in attribute for sep in ("/", "\\")) or attribute.endswith(".py"):
        location, attribute = spec, DEFAULT_ATTRIBUTE
    if not location:
        raise ConfigError(f"TARGET {spec!r} names no module: expected module:attr or file.py:attr")
    if not attribute or not all(part.isidentifier() for part in attribute.split(".")):
        raise ConfigError(
            f"TARGET {spec!r}: {attribute!r} is not an attribute name (expected module:attr)"
        )
    return location, attribute


def _looks_like_path(location: str) -> bool:
    return location.endswith(".py") or "/" in location or "\\" in location or os.sep in location


def import_target_module(location: str) -> ModuleType:
    """Import a module by dotted name, or execute a ``.py`` file as a module.

    A file is imported under its stem (its folder goes first on ``sys.path``, so sibling
    modules import and process-pool workers started with spawn can import it again).
    """
    if _looks_like_path(location) or Path(location).is_dir():
        return _import_file(Path(location))
    if not all(part.isidentifier() for part in location.split(".")):
        raise ConfigError(
            f"TARGET {location!r} is neither a Python file nor a module name: expected "
            "package.module:attr or path/to/file.py:attr"
        )
    return _import_module(location)


def _import_file(path: Path) -> ModuleType:
    path = _source_file(path).resolve()
    name = _module_name(path)
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return _exec_file(name, path)


def _source_file(path: Path) -> Path:
    """The file TARGET names: the path itself, or a package folder's ``__init__.py``."""
    if not path.exists():
        raise ConfigError(f"TARGET file {path} does not exist")
    if path.is_dir():
        init = path / "__init__.py"
        if not init.exists():
            raise ConfigError(
                f"TARGET {path} is a folder, not a Python file: name the file that builds "
                "the pipeline (path/to/file.py:attr) or a module (package.module:attr)"
            )
        return init
    return path


def _module_name(path: Path) -> str:
    """The name to import ``path`` under: its own, or a private one where that would clash."""
    name = path.stem if path.name != "__init__.py" else path.parent.name
    # A file called profile.py or json.py must not take over the standard library's
    # module of that name (cProfile imports `profile`): give it a private name.
    if not name.isidentifier() or name in sys.stdlib_module_names:
        return _private_name(path)
    existing = sys.modules.get(name)
    if existing is not None and Path(getattr(existing, "__file__", "") or "").resolve() != path:
        # Another module already owns this name (a file called json.py): use a private one.
        return _private_name(path)
    return name


def _private_name(path: Path) -> str:
    """A module name no other module has: derived from the file's absolute path."""
    return "pipetune_target_" + hashlib.sha1(str(path).encode()).hexdigest()[:10]


def _exec_file(name: str, path: Path) -> ModuleType:
    """Run the file as module ``name``; if it fails, put ``sys.modules`` back as it was."""
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"cannot import {path}: not a Python source file")
    module = importlib.util.module_from_spec(module_spec)
    previous = sys.modules.get(name)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException as exc:
        if previous is not None:
            sys.modules[name] = previous
        else:
            sys.modules.pop(name, None)
        # A PipetuneError is already a message for the user (a MissingDependency with
        # its install command); anything else is wrapped with where it happened.
        if isinstance(exc, Exception) and not isinstance(exc, PipetuneError):
            raise _import_error(str(path), exc) from exc
        raise
    return module


def _import_module(name: str) -> ModuleType:
    # Console scripts do not put the current folder on sys.path (``python -m`` does);
    # users expect ``pipetune profile mypkg.pipe:pipeline`` to work from their project root.
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (name == missing or name.startswith(missing + ".")):
            raise ConfigError(
                f"cannot import TARGET module {name!r}: no module named {missing!r} (run from "
                "your project's root, set PYTHONPATH, or give a path: path/to/file.py:attr)"
            ) from exc
        raise _import_error(name, exc) from exc
    except PipetuneError:
        raise
    except Exception as exc:
        raise _import_error(name, exc) from exc


def _import_error(what: str, exc: Exception) -> ConfigError:
    if isinstance(exc, SyntaxError):
        where = f"{exc.filename}:{exc.lineno}" if exc.filename else what
        return ConfigError(f"cannot import TARGET {what}: syntax error at {where}: {exc.msg}")
    frame = _user_frame(exc)
    at = f" (at {frame.filename}:{frame.lineno})" if frame else ""
    hint = ""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        hint = f"; install {exc.name.split('.')[0]!r} or check the import"
    return ConfigError(
        f"importing TARGET {what} raised {type(exc).__name__}: {exc}{at}{hint} "
        "(rerun with --debug for the traceback)"
    )


def _user_frame(exc: BaseException) -> traceback.FrameSummary | None:
    """The deepest frame in the user's code: not the standard library, not installed
    packages, not importlib or pipetune itself."""
    import sysconfig

    library = tuple(
        str(Path(sysconfig.get_paths()[key]).resolve())
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
    )
    here = str(Path(__file__).resolve().parents[1])
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        name = frame.filename
        if name.startswith("<") or "importlib" in name:
            continue
        resolved = str(Path(name).resolve())
        if not resolved.startswith(library) and not resolved.startswith(here):
            return frame
    return frames[-1] if frames else None


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
        raise _import_error(what, exc) from exc


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
