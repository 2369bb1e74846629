"""Project configuration: the ``[tool.pipetune]`` table of the nearest ``pyproject.toml``.

::

    [tool.pipetune]
    target = "examples/text_classify.py:pipeline"   # used when a command gets no TARGET

    [tool.pipetune.workload]
    path = "data/reviews.jsonl"     # a JSONL file, or a folder of files
    field = "text"                  # JSONL: the key holding the input
    label_field = "label"           # JSONL: the key holding the label
    items = 500                     # use the first N inputs
    concurrency = [1, 4, 8]
    warmup = 1
    repeats = 3

    [tool.pipetune.requirements]
    p99_ms = 50
    min_throughput_rps = 200
    max_accuracy_drop = 0.01

Unknown keys are errors that name the file, the table and the keys this version knows:
a misspelled ``p99ms`` must not silently mean "no latency bound". Sub-tables owned by
other commands (``scan``, ``store``...) are listed in :data:`SECTIONS`; each owner
validates its own keys with :func:`check_keys`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipetune.core.kernel.errors import ConfigError

#: Keys of ``[tool.pipetune.workload]``.
WORKLOAD_KEYS = (
    "path",
    "field",
    "label_field",
    "pattern",
    "items",
    "concurrency",
    "warmup",
    "repeats",
    "mode",
    "rate",
    "trace",
    "seed",
    "name",
)

#: Top-level keys and sub-tables of ``[tool.pipetune]``. Sub-tables that belong to one
#: command (``scan``, ``store``, ``monitor``, ``optimize``) are checked by that command; add
#: a name here when a command gains a table.
SECTIONS = ("target", "workload", "requirements", "scan", "store", "monitor", "optimize", "demo")


@dataclass(frozen=True)
class ProjectConfig:
    """``[tool.pipetune]`` as read from ``path`` (``None``: no configuration found).

    Relative paths in the file are relative to ``root`` (the folder holding it).
    """

    path: Path | None = None
    target: str | None = None
    workload: Mapping[str, Any] = field(default_factory=dict)
    requirements: Mapping[str, Any] = field(default_factory=dict)
    sections: Mapping[str, Any] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()

    def where(self, table: str = "") -> str:
        """``pyproject.toml [tool.pipetune.workload]``: for error messages."""
        name = "tool.pipetune" + (f".{table}" if table else "")
        return f"{self.path} [{name}]" if self.path else f"[{name}]"

    def section(self, name: str) -> Mapping[str, Any]:
        """A command's own sub-table (``scan``...), empty when absent."""
        value = self.sections.get(name, {})
        return value if isinstance(value, Mapping) else {}

    def resolve(self, value: str | Path) -> Path:
        """A path from the file, made absolute relative to the file's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.root / path


def find_pyproject(start: str | Path | None = None) -> Path | None:
    """The nearest ``pyproject.toml`` with a ``[tool.pipetune]`` table, searching ``start``
    (default: the current folder) and its parents."""
    here = Path(start or Path.cwd()).resolve()
    if here.is_file():
        here = here.parent
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file() and _has_pipetune_table(candidate):
            return candidate
    return None


def load_config(
    path: str | Path | None = None, *, start: str | Path | None = None
) -> ProjectConfig:
    """Read ``[tool.pipetune]`` from ``path`` or from the nearest ``pyproject.toml``.

    Returns an empty :class:`ProjectConfig` when there is none. Raises
    :class:`~pipetune.core.kernel.errors.ConfigError` for an unreadable file or unknown keys.
    """
    if path is None:
        found = find_pyproject(start)
        if found is None:
            return ProjectConfig()
        path = found
    path = Path(path)
    table = _read_table(path)
    check_keys(table, SECTIONS, f"{path} [tool.pipetune]")
    workload = table.get("workload", {})
    requirements = table.get("requirements", {})
    for name, value in (("workload", workload), ("requirements", requirements)):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path} [tool.pipetune]: {name} must be a table")
    check_keys(workload, WORKLOAD_KEYS, f"{path} [tool.pipetune.workload]")
    target = table.get("target")
    if target is not None and not isinstance(target, str):
        raise ConfigError(f"{path} [tool.pipetune]: target must be a string like 'pkg.mod:attr'")
    sections = {k: v for k, v in table.items() if k not in ("target", "workload", "requirements")}
    return ProjectConfig(
        path=path,
        target=target,
        workload=dict(workload),
        requirements=dict(requirements),
        sections=sections,
    )


def check_keys(table: Mapping[str, Any], known: Iterable[str], where: str) -> None:
    """Raise :class:`ConfigError` naming ``where`` if ``table`` has keys outside ``known``."""
    known = tuple(known)
    unknown = sorted(set(table) - set(known))
    if unknown:
        import difflib

        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(hints)}; known keys: {', '.join(known)}"
        )


def _read_table(path: Path) -> Mapping[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    table = data.get("tool", {}).get("pipetune", {})
    if not isinstance(table, Mapping):
        raise ConfigError(f"{path}: [tool.pipetune] must be a table")
    return table


def _has_pipetune_table(path: Path) -> bool:
    # A cheap text check first: most pyproject files have no pipetune table, and a
    # malformed unrelated pyproject.toml must not break every command.
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return "tool.pipetune" in text
