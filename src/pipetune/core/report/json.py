"""The JSON report: written atomically and checked against the JSON Schema.

The schema (``pipetune/schemas/report.schema.json``) is checked with
:func:`pipetune.core.report.schema.problems` when ``jsonschema`` is installed (the ``dev``
extra). A report that does not match is still written — a run's results are never thrown
away — and the problems are returned so the caller can say so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipetune.core.kernel.atomic import write_text_atomic
from pipetune.core.kernel.errors import ConfigError, MissingDependency


def schema_problems(data: Mapping[str, Any]) -> list[str]:
    """Every way ``data`` breaks the report schema; empty when valid or when jsonschema
    is not installed (then nothing can be checked)."""
    from pipetune.core.report.schema import problems

    try:
        return problems("report", data)
    except MissingDependency:
        return []


def dumps(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, allow_nan=False, default=str) + "\n"


def write(data: Mapping[str, Any], path: str | Path) -> list[str]:
    """Write ``data`` to ``path`` atomically (a temporary file renamed into place, so an
    interrupted write never leaves half a report). Returns the schema problems."""
    path = Path(path)
    text = dumps(_finite(data))
    try:
        write_text_atomic(path, text)
    except OSError as exc:
        raise ConfigError(f"cannot write the report to {path}: {exc.strerror or exc}") from None
    return schema_problems(data)


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
