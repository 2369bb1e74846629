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
a misspelled ``p99ms`` must not silently mean "no latency bound". Every value is
type-checked the same way (:func:`check_types`): ``concurrency = "16"`` is an error naming
the file, the table, the key and what was expected, never the levels ``[1, 6]``.
Sub-tables owned by other commands (``scan``, ``store``...) are listed in
:data:`SECTIONS`; each must be a table, and each owner validates its own keys with
:func:`check_keys`.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Iterable, Mapping
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


def _whole(low: int) -> Callable[[Any], bool]:
    def ok(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    return ok


def _number(low: float, high: float = math.inf, *, open_low: bool = True) -> Callable[[Any], bool]:
    def ok(value: Any) -> bool:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        above = value > low if open_low else value >= low
        return math.isfinite(value) and above and value < high

    return ok


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _choice(*names: str) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, str) and value in names


def _levels(value: Any) -> bool:
    if _whole(1)(value):
        return True
    return isinstance(value, list) and bool(value) and all(_whole(1)(v) for v in value)


#: ``[tool.pipetune.workload]``: key -> (what it must be, check).
WORKLOAD_TYPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "path": ("a path (a non-empty string)", _text),
    "field": ("a key name (a non-empty string)", _text),
    "label_field": ("a key name (a non-empty string)", _text),
    "pattern": ("a file pattern such as '*.jpg' (a string)", _text),
    "items": ("a whole number >= 1", _whole(1)),
    "concurrency": ("a whole number >= 1 or a list of them, like [1, 4, 16]", _levels),
    "warmup": ("a whole number >= 0", _whole(0)),
    "repeats": ("a whole number >= 1", _whole(1)),
    "mode": ('one of "offline", "online", "stream"', _choice("offline", "online", "stream")),
    "rate": ("a number of requests per second > 0", _number(0)),
    "trace": ("a path to a trace file (a string)", _text),
    "seed": ("a whole number >= 0", _whole(0)),
    "name": ("a name (a non-empty string)", _text),
}

_POSITIVE = ("a number > 0", _number(0))
#: ``[tool.pipetune.requirements]``: key -> (what it must be, check).
REQUIREMENT_TYPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "p50_ms": _POSITIVE,
    "p95_ms": _POSITIVE,
    "p99_ms": _POSITIVE,
    "max_ms": _POSITIVE,
    "min_throughput_rps": _POSITIVE,
    "min_speedup": _POSITIVE,
    "max_accuracy_drop": ("a number from 0 up to (not including) 1", _number(0, 1, open_low=False)),
    "min_gain": ("a number from 0 up to (not including) 10", _number(0, 10, open_low=False)),
    "cost_per_hour": _POSITIVE,
    "monthly_volume": _POSITIVE,
    "optimize_for": (
        'one of "p50", "p95", "p99", "max", "throughput"',
        _choice("p50", "p95", "p99", "max", "throughput"),
    ),
    "growth": ("a table of request rates (now_rps, peak_rps...)", lambda v: isinstance(v, Mapping)),
}
_RATE = ("a number of requests per second >= 0", _number(0, open_low=False))
#: ``[tool.pipetune.requirements.growth]``.
GROWTH_TYPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "now_rps": _RATE,
    "peak_rps": _RATE,
    "in_12_months_rps": _RATE,
    "in_24_months_rps": _RATE,
}

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
    for name in SECTIONS:
        if name != "target" and name in table and not isinstance(table[name], Mapping):
            raise ConfigError(
                f"{path} [tool.pipetune]: {name} must be a table ([tool.pipetune.{name}]), "
                f"not {describe(table[name])}"
            )
    workload = dict(table.get("workload", {}))
    requirements = dict(table.get("requirements", {}))
    check_keys(workload, WORKLOAD_KEYS, f"{path} [tool.pipetune.workload]")
    check_types(workload, WORKLOAD_TYPES, f"{path} [tool.pipetune.workload]")
    if isinstance(workload.get("concurrency"), int):
        workload["concurrency"] = [workload["concurrency"]]
    check_requirements(requirements, f"{path} [tool.pipetune.requirements]")
    target = table.get("target")
    if target is not None and not _text(target):
        raise ConfigError(
            f"{path} [tool.pipetune]: target must be a string like 'pkg.mod:attr' or "
            f"'path/to/file.py:attr', not {describe(target)}"
        )
    sections = {k: v for k, v in table.items() if k not in ("target", "workload", "requirements")}
    return ProjectConfig(
        path=path,
        target=target,
        workload=workload,
        requirements=requirements,
        sections=sections,
    )


def check_types(
    table: Mapping[str, Any], types: Mapping[str, tuple[str, Callable[[Any], bool]]], where: str
) -> None:
    """Raise :class:`ConfigError` naming ``where``, the key, what it must be and what it
    is, for the first value in ``table`` that fails its check in ``types``."""
    for key, value in table.items():
        if key in types:
            expected, ok = types[key]
            if not ok(value):
                raise ConfigError(f"{where}: {key} must be {expected}, not {describe(value)}")


def check_requirements(table: Mapping[str, Any], where: str) -> None:
    """Keys and types of a requirements table (and its ``growth`` sub-table)."""
    check_keys(table, REQUIREMENT_TYPES, where)
    check_types(table, REQUIREMENT_TYPES, where)
    growth = table.get("growth")
    if isinstance(growth, Mapping):
        inner = where.removesuffix("]") + ".growth]" if where.endswith("]") else where
        check_keys(growth, GROWTH_TYPES, inner)
        check_types(growth, GROWTH_TYPES, inner)
        if "now_rps" not in growth:
            raise ConfigError(f"{inner}: now_rps (requests per second now) is required")


def describe(value: Any) -> str:
    """A value as an error message names it: ``the string '16'``, ``the number 2.5``."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)}"
    return f"a {type(value).__name__}"  # a TOML date or time


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
