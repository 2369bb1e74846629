"""Importing the module a TARGET names: ``package.module:attr`` or ``path/to/file.py:attr``.

A file is imported with its folder on ``sys.path`` (so its sibling imports work), under a
private module name where its own is not an identifier, names a standard-library module
(``profile.py``, ``json.py``) or belongs to another module already imported; an import that
fails is a :class:`~pipetune.core.kernel.errors.ConfigError` pointing at the user's own
line, not at importlib.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType

from pipetune.core.kernel.errors import ConfigError, PipetuneError

DEFAULT_ATTRIBUTE = "pipeline"


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


def factory_spec(spec: str) -> tuple[str, tuple[str, ...]]:
    """TARGET as another process imports it: ``"/abs/path/file.py:attr"`` (a file made
    absolute) or ``"package.module:attr"``, and the folders that process needs first on
    ``sys.path`` (the working directory, and a file's own folder)."""
    location, attribute = parse_spec(spec)
    local = looks_like_path(location)
    if local:
        location = str(Path(location).resolve())
    sys_path = [os.getcwd()] + ([str(Path(location).parent)] if local else [])
    return f"{location}:{attribute}", tuple(dict.fromkeys(sys_path))


def looks_like_path(location: str) -> bool:
    return location.endswith(".py") or "/" in location or "\\" in location or os.sep in location


def import_target_module(location: str) -> ModuleType:
    """Import a module by dotted name, or execute a ``.py`` file as a module.

    A file is imported under its stem (its folder goes first on ``sys.path``, so sibling
    modules import and process-pool workers started with spawn can import it again).
    """
    if looks_like_path(location) or Path(location).is_dir():
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
            raise import_error(str(path), exc) from exc
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
        raise import_error(name, exc) from exc
    except PipetuneError:
        raise
    except Exception as exc:
        raise import_error(name, exc) from exc


def import_error(what: str, exc: Exception) -> ConfigError:
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
