"""JSON Schemas for the profile and the report (the JSON contract), and a validator.

The schemas ship inside the package (``pipetune/schemas/*.json``)::

    from pipetune.core.report.schema import validate
    validate("profile", json.loads(Path("out.json").read_text()))
    validate("report", report_dict)

``jsonschema`` is a development extra (``pip install "pipetune[dev]"``): it is imported
only when :func:`validate` runs. Besides the schema, :func:`validate` checks two rules that
JSON Schema cannot express: stage shares sum to 1 (an explicit ``other`` entry holds the
glue time) and latency percentiles are ordered (p50 <= p95 <= p99 <= max).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from pipetune.core.kernel.errors import ConfigError, MissingDependency

#: The schemas this module knows: ``kind`` -> file name under ``pipetune/schemas``.
SCHEMAS = {"profile": "profile.schema.json", "report": "report.schema.json"}

#: How far the stage shares may sum from 1 (float rounding).
SHARE_TOLERANCE = 1e-6


class SchemaError(ConfigError):
    """A document does not match its schema. ``problems`` lists each one with its path."""

    def __init__(self, kind: str, problems: Sequence[str]):
        self.kind = kind
        self.problems = list(problems)
        shown = "\n".join(f"  - {p}" for p in self.problems[:20])
        more = len(self.problems) - 20
        tail = f"\n  ... and {more} more" if more > 0 else ""
        count = len(self.problems)
        super().__init__(f"not a valid pipetune {kind} ({count} problem(s)):\n{shown}{tail}")


@functools.cache
def load_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema for ``kind`` (``profile`` or ``report``), as a dict."""
    if kind not in SCHEMAS:
        raise ConfigError(f"unknown schema {kind!r} (known: {', '.join(SCHEMAS)})")
    text = resources.files("pipetune").joinpath("schemas", SCHEMAS[kind]).read_text("utf-8")
    return json.loads(text)


def problems(kind: str, data: Any) -> list[str]:
    """Every way ``data`` breaks the ``kind`` schema or its numeric rules (empty: valid)."""
    schema = load_schema(kind)
    try:
        import jsonschema
    except ImportError:
        raise MissingDependency("jsonschema", "dev", "validating against the JSON Schema") from None
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema)
    found = [
        f"{_path(error.absolute_path)}: {error.message}"
        for error in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    ]
    if isinstance(data, Mapping):
        if kind == "profile":
            found += _numeric_rules(data, "")
        elif kind == "report":
            for key in ("baseline", "final"):
                if isinstance(data.get(key), Mapping):
                    found += _numeric_rules(data[key], f"{key}.")
    return found


def validate(kind: str, data: Any) -> None:
    """Raise :class:`SchemaError` listing every problem if ``data`` is not a valid ``kind``.

    Raises :class:`~pipetune.core.kernel.errors.MissingDependency` when ``jsonschema`` is not
    installed.
    """
    found = problems(kind, data)
    if found:
        raise SchemaError(kind, found)


def _numeric_rules(summary: Mapping[str, Any], prefix: str) -> list[str]:
    found: list[str] = []
    stages = summary.get("stages")
    if isinstance(stages, list) and stages:
        shares = [s.get("share") for s in stages if isinstance(s, Mapping)]
        numbers = [v for v in shares if isinstance(v, int | float)]
        if len(numbers) == len(shares):
            total = math.fsum(numbers)
            if abs(total - 1.0) > SHARE_TOLERANCE:
                found.append(f"{prefix}stages: shares sum to {total:.6f}, not 1")
    latency = summary.get("latency_ms")
    if isinstance(latency, Mapping):
        names = ("p50", "p95", "p99", "max")
        found_values = [latency.get(n) for n in names]
        values = [v for v in found_values if isinstance(v, int | float)]
        if len(values) == len(found_values):
            for i in range(len(names) - 1):
                low, high = values[i], values[i + 1]
                if low > high * (1 + 1e-9) + 1e-12:
                    found.append(
                        f"{prefix}latency_ms: {names[i]} ({low:g}) > {names[i + 1]} ({high:g})"
                    )
    return found


def _path(parts: Sequence[Any]) -> str:
    if not parts:
        return "(document)"
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
