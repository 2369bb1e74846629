"""Scan options: ``[tool.pipetune.scan]`` in ``pyproject.toml``, overridden by the command line.

::

    [tool.pipetune.scan]
    select = ["PT-NLP", "PT-LLM001"]    # ids or prefixes; default: every rule
    ignore = ["PT-GEN002"]               # ids or prefixes; ignore wins over select
    fail-on = "warning"                  # error | warning | note | never
    min-confidence = 0.5                 # drop findings less sure than this
    exclude = ["tests/*", "*_pb2.py"]    # globs on names and relative paths
    max-file-size = 5                    # MiB; larger files are reported and skipped
    jobs = 2                             # files scanned in parallel processes

Keys may be spelled with ``-`` or ``_``. On the command line ``--select`` replaces the
file's ``select``; ``--ignore`` and ``--exclude`` add to the file's lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pipetune.core.kernel.errors import ConfigError
from pipetune.scan.files import DEFAULT_MAX_BYTES
from pipetune.scan.rules import SEVERITIES

FAIL_ON = (*SEVERITIES, "never")
#: The default ``--fail-on``: a CI job fails on warnings and errors, not on notes (the
#: rules that are least sure of themselves report as notes).
DEFAULT_FAIL_ON = "warning"
KEYS = ("select", "ignore", "fail_on", "min_confidence", "exclude", "max_file_size", "jobs")


@dataclass(frozen=True)
class ScanOptions:
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    fail_on: str = DEFAULT_FAIL_ON
    min_confidence: float = 0.0
    exclude: tuple[str, ...] = ()
    max_file_size: int = DEFAULT_MAX_BYTES
    jobs: int = 1

    def merged(
        self,
        *,
        select: Sequence[str] = (),
        ignore: Sequence[str] = (),
        exclude: Sequence[str] = (),
        **given: Any,
    ) -> ScanOptions:
        """These options overridden by command-line values (``None``: not given)."""
        changes = {key: value for key, value in given.items() if value is not None}
        if select:
            changes["select"] = split_codes(select)
        if ignore:
            changes["ignore"] = (*self.ignore, *split_codes(ignore))
        if exclude:
            changes["exclude"] = (*self.exclude, *exclude)
        options = replace(self, **changes)
        options.validate("the command line")
        return options

    def validate(self, where: str) -> None:
        if self.fail_on not in FAIL_ON:
            raise ConfigError(f"{where}: fail-on must be one of {', '.join(FAIL_ON)}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ConfigError(f"{where}: min-confidence must be between 0 and 1")
        if self.max_file_size <= 0:
            raise ConfigError(f"{where}: max-file-size must be positive")
        if self.jobs < 0:
            raise ConfigError(f"{where}: jobs must be >= 0 (0: one per CPU)")


def options_from_table(table: Mapping[str, Any], where: str) -> ScanOptions:
    """Options from a ``[tool.pipetune.scan]`` table (``where`` names it in errors)."""
    from pipetune.core.kernel.config import check_keys

    normalized = {str(key).replace("-", "_"): value for key, value in table.items()}
    check_keys(normalized, KEYS, where)
    values: dict[str, Any] = {}
    for key in ("select", "ignore", "exclude"):
        if key in normalized:
            values[key] = _string_list(normalized[key], key, where)
    if "select" in values:
        values["select"] = split_codes(values["select"])
    if "ignore" in values:
        values["ignore"] = split_codes(values["ignore"])
    if "fail_on" in normalized:
        values["fail_on"] = str(normalized["fail_on"]).lower()
    if "min_confidence" in normalized:
        values["min_confidence"] = _number(normalized["min_confidence"], "min-confidence", where)
    if "max_file_size" in normalized:
        mib = _number(normalized["max_file_size"], "max-file-size", where)
        values["max_file_size"] = int(mib * 1024 * 1024)
    if "jobs" in normalized:
        jobs = normalized["jobs"]
        if not isinstance(jobs, int) or isinstance(jobs, bool):
            raise ConfigError(f"{where}: jobs must be a whole number")
        values["jobs"] = jobs
    options = ScanOptions(**values)
    options.validate(where)
    return options


def split_codes(values: Iterable[str]) -> tuple[str, ...]:
    """``["PT-NLP001,PT-LLM", "PT-GEN"]`` -> ``("PT-NLP001", "PT-LLM", "PT-GEN")``."""
    out: list[str] = []
    for value in values:
        out.extend(part.strip().upper() for part in str(value).split(",") if part.strip())
    return tuple(out)


def _string_list(value: Any, key: str, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key} must be a list of strings")
    return tuple(value)


def _number(value: Any, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
    return float(value)
