"""How a figure is written: ratios with their interval, what they rest on, the host load,
and what a cell says when the results do not hold the figure.

Every helper takes whatever the results hold (``None`` and missing keys included) and
returns text; none raises on a missing figure. The wording is shared so that every page
says "pending a quiet run" the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

PENDING = "pending a quiet run"
#: Above this run-queue wait share a recorded run counts as busy (as in
#: ``pipetune.core.measure.load``) where the record does not say.
BUSY_WAIT = 0.10


def pending(command: str | None = None, why: str | None = None) -> str:
    """``pending a quiet run (`python -m ...`)``, with the reason when there is one."""
    parts = [part for part in (why, f"`{command}`" if command else None) if part]
    return f"{PENDING} ({'; '.join(parts)})" if parts else PENDING


def is_smoke(section: Mapping[str, Any] | None, key: str = "") -> bool:
    """Whether a section is a smoke run (``--quick``, a ``_quick``/``_smoke`` key)."""
    if key.endswith(("_quick", "_smoke")):
        return True
    if not section:
        return False
    command = str(section.get("command") or "")
    return bool(section.get("quick")) or "--quick" in command.split()


def headline(
    section: Mapping[str, Any] | None, command: str, key: str = ""
) -> Mapping[str, Any] | None:
    """``section`` when it can carry a headline figure; ``None`` when it is missing or a
    smoke run (the caller then writes :func:`missing`)."""
    if not section or is_smoke(section, key):
        return None
    return section


def missing(section: Mapping[str, Any] | None, command: str, key: str = "") -> str:
    """The cell for a section that cannot carry a headline figure."""
    if section and is_smoke(section, key):
        return pending(command, "only a smoke run recorded")
    return pending(command)


def number(value: Any, digits: int = 2) -> str:
    """A float to ``digits`` decimals, thousands separated; ``–`` when missing."""
    if value is None:
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def times(value: Any, digits: int = 2, bold: bool = False) -> str:
    """``4.43x`` (bold when asked); ``–`` when missing."""
    if value is None:
        return "–"
    text = f"{number(value, digits)}x"
    return f"**{text}**" if bold else text


def interval(ci: Sequence[Any] | None, digits: int = 2) -> str:
    """``[4.10, 4.80]``; empty when there is none."""
    if not ci or len(ci) != 2 or ci[0] is None or ci[1] is None:
        return ""
    return f"[{number(ci[0], digits)}, {number(ci[1], digits)}]"


def ratio(value: Any, ci: Sequence[Any] | None = None, digits: int = 2, bold: bool = False) -> str:
    """``**4.43x** [4.10, 4.80]``: a ratio with its interval when it has one."""
    text = times(value, digits, bold)
    bounds = interval(ci, digits)
    return f"{text} {bounds}" if bounds and value is not None else text


def percent(value: Any, digits: int = 1, signed: bool = False) -> str:
    """A share (0..1) as ``99.2 %``; ``–`` when missing."""
    if value is None:
        return "–"
    return f"{value * 100:{'+' if signed else ''}.{digits}f} %"


def points(value: Any, digits: int = 2) -> str:
    """A percentage already in points as ``+1.10 %``."""
    if value is None:
        return "–"
    return f"{value:+.{digits}f} %"


def rests_on(
    row: Mapping[str, Any] | None,
    *,
    inputs: Any = None,
    total: Any = None,
    samples: Any = None,
    what: str = "inputs",
) -> str:
    """``timed on 100 of 300 inputs, 1,600 samples per side``; the row's
    ``inputs_timed``/``inputs_total``/``samples_per_side`` unless given. Where the results
    do not record them: ``inputs and samples pending a quiet run``."""
    row = row or {}
    inputs = row.get("inputs_timed") if inputs is None else inputs
    total = row.get("inputs_total") if total is None else total
    samples = row.get("samples_per_side") if samples is None else samples
    if inputs is None and samples is None:
        return f"{what} and samples: {PENDING}"
    parts = []
    if inputs is not None:
        of = f" of {number(total)}" if total is not None else ""
        parts.append(f"timed on {number(inputs)}{of} {what}")
    parts.append(
        f"{number(samples)} samples per side"
        if samples is not None
        else f"samples per side: {PENDING}"
    )
    return ", ".join(parts)


def p99(row: Mapping[str, Any] | None, lower_is: str = "lower") -> str:
    """The P99 change of a comparison row: ``P99 1.20x lower``, ``P99 0.62x (slower
    tail)``, or ``P99 n/a (48 samples)`` where too few samples stand behind it."""
    row = row or {}
    note = row.get("p99_note")
    value = row.get("p99_speedup")
    if value is None:
        return f"P99 {note}" if note else f"P99: {PENDING}"
    if value >= 1:
        return f"P99 {times(value)} {lower_is}"
    return f"P99 {times(value)} (a slower tail)"


def load(record: Mapping[str, Any] | None) -> str:
    """The host's load while a section ran, from whichever form it recorded: a
    ``host_load`` object (run-queue wait, other processes' CPU), a run-queue wait share,
    or load averages; ``host load not recorded`` when none."""
    record = record or {}
    host = record.get("host_load")
    if isinstance(host, Mapping) and (
        host.get("run_queue_wait") is not None or host.get("other_cpu") is not None
    ):
        return _host_load(host)
    conditions = record.get("conditions") if isinstance(record.get("conditions"), Mapping) else {}
    wait = conditions.get("runqueue_wait_share")
    averages = _load_averages(record, conditions)
    parts = []
    if wait is not None:
        parts.append(f"run-queue wait {percent(wait)}")
    if averages:
        parts.append(f"load average {averages}")
    if not parts:
        return "host load not recorded"
    if wait is None:
        parts.append("run-queue wait not recorded")
    text = ", ".join(parts)
    return f"busy host ({text}): noisy" if wait is not None and wait > BUSY_WAIT else text


def _host_load(host: Mapping[str, Any]) -> str:
    wait, other = host.get("run_queue_wait"), host.get("other_cpu")
    parts = [f"run-queue wait {percent(wait, 0) if wait is not None else 'unknown'}"]
    if other is not None:
        parts.append(f"other processes {other:.1f} of {host.get('cores')} cores")
    text = ", ".join(parts)
    busy = host.get("busy")
    if busy is None:
        busy = wait is not None and wait > BUSY_WAIT
    return f"busy host ({text}): noisy" if busy else text


def _load_averages(record: Mapping[str, Any], conditions: Mapping[str, Any]) -> str:
    """``1.1→2.0`` from the many ways the benchmarks recorded load averages."""
    pairs = (
        (conditions.get("load_average_before"), conditions.get("load_average_after")),
        (record.get("load_before"), record.get("load_after")),
        (record.get("load_average_at_start"), record.get("load_average_at_end")),
    )
    one_minute = record.get("load_average_1min")
    if isinstance(one_minute, Mapping):
        pairs += ((one_minute.get("before"), one_minute.get("after")),)
    host = record.get("host_load")
    if isinstance(host, Mapping) and isinstance(host.get("before"), Mapping):
        after = host.get("after") if isinstance(host.get("after"), Mapping) else {}
        pairs += ((host["before"].get("loadavg_1m"), after.get("loadavg_1m")),)
    for before, after in pairs:
        values = [_first(v) for v in (before, after) if _a_load(v)]
        if values:
            return "→".join(number(v, 1) for v in values)
    for key in ("loadavg_at_end", "load_average"):
        value = record.get(key)
        if value is not None and not isinstance(value, Mapping):
            return number(_first(value), 1)
    return ""


def _a_load(value: Any) -> bool:
    """A load average as the benchmarks record one: a number, or a list whose first entry
    is the one-minute figure."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        return bool(value) and isinstance(value[0], int | float)
    return isinstance(value, int | float) and not isinstance(value, bool)


def _first(value: Any) -> float:
    return float(value[0]) if isinstance(value, Sequence) else float(value)


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A Markdown table; ``align`` holds ``l`` or ``r`` per column (default left)."""
    marks = ["---:" if (align[i : i + 1] == "r") else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def escape(text: str) -> str:
    """A table cell: pipes escaped, on one line."""
    return " ".join(str(text).replace("|", "\\|").split("\n"))


def row_cells(*cells: str) -> str:
    """The generated part of a summary row: cells joined by table separators."""
    return " | ".join(escape(c) for c in cells)


def machine(record: Mapping[str, Any] | None) -> str:
    """``AMD EPYC, 2 cores, 23.5 GiB, no GPU`` from a recorded machine (or ``machine
    not recorded``)."""
    found = (record or {}).get("machine")
    if not isinstance(found, Mapping):
        return "machine not recorded"
    parts = [str(found.get("cpu") or "CPU unknown")]
    if found.get("cores"):
        parts.append(f"{found['cores']} cores")
    if found.get("memory_gb"):
        parts.append(f"{found['memory_gb']} GiB")
    gpu = found.get("gpu")
    parts.append(str(gpu) if gpu else "no GPU")
    return ", ".join(parts)


def conditions(record: Mapping[str, Any] | None, command: str) -> str:
    """The sentence under a page's tables: the command that produced them, the machine
    and the host load while they ran."""
    record = record or {}
    ran = record.get("command") or command
    when = record.get("measured_at")
    at = f", {when}" if when else ""
    host = load(record)
    host = host if host.startswith(("host load", "busy host")) else f"host load: {host}"
    return f"`{ran}` on {machine(record)}{at}; {host}."
