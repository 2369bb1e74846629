"""Generated ``[tool.pipetune]`` tables and workload files, and the harness that runs
``pipetune profile`` on them in-process through the CLI's own error boundary.

Shared by ``tests/faults/test_fuzz.py`` (a fixed, small number of examples in CI) and
``benchmarks/control/fuzz_config.py`` (the 2,000-example run). The property: whatever the
files hold, the command ends with a verdict or a clear error (exit 0, 2 or 3), never an
internal error (exit 1 with "internal error") and never a traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from pipetune.core.kernel.config import WORKLOAD_KEYS

#: Keys of [tool.pipetune.requirements], and a few misspellings.
REQUIREMENT_KEYS = (
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "min_throughput_rps",
    "min_speedup",
    "max_accuracy_drop",
    "min_gain",
    "cost_per_hour",
    "monthly_volume",
    "optimize_for",
    "growth",
)
MISSPELLED = ("p99ms", "repeat", "concurency", "labelfield", "", "tool", "pipetune")

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=12,
)
_scalar = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    _text,
)
#: Any TOML value: scalars, arrays, inline tables.
toml_values = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=3)),
    max_leaves=8,
)


_POSITIVE = st.floats(min_value=0.001, max_value=1e4)

#: Values each key accepts, kept cheap to run (small counts, fast arrival rates).
VALID: dict[str, st.SearchStrategy[Any]] = {
    "path": st.sampled_from(["workload.jsonl", "."]),
    "field": st.just("text"),
    "label_field": st.sampled_from(["label", "text"]),
    "pattern": st.sampled_from(["*.jsonl", "*"]),
    "items": st.integers(min_value=1, max_value=12),
    "concurrency": st.one_of(
        st.integers(1, 4), st.lists(st.integers(1, 4), min_size=1, max_size=3)
    ),
    "warmup": st.integers(0, 2),
    "repeats": st.integers(1, 2),
    "mode": st.sampled_from(["offline", "online"]),
    "rate": st.floats(min_value=50, max_value=1e5),
    "seed": st.integers(-(2**31), 2**31),
    "name": _text.filter(lambda t: t.strip() != ""),
    "p50_ms": _POSITIVE,
    "p95_ms": _POSITIVE,
    "p99_ms": _POSITIVE,
    "max_ms": _POSITIVE,
    "min_throughput_rps": _POSITIVE,
    "min_speedup": _POSITIVE,
    "cost_per_hour": _POSITIVE,
    "monthly_volume": _POSITIVE,
    "max_accuracy_drop": st.floats(min_value=0, max_value=0.99),
    "min_gain": st.floats(min_value=0, max_value=9),
    "optimize_for": st.sampled_from(["p50", "p95", "p99", "max", "throughput"]),
    "growth": st.fixed_dictionaries(
        {"now_rps": st.floats(0, 1e3)}, optional={"peak_rps": st.floats(1e3, 1e4)}
    ),
}
#: Values near the edge or of the wrong kind, per key (plus any TOML value).
INVALID: dict[str, st.SearchStrategy[Any]] = {
    "path": st.sampled_from(["missing.jsonl", "", "workload.jsonl/x", "pyproject.toml"]),
    "field": st.sampled_from(["missing", "", "label"]),
    "label_field": st.sampled_from(["missing", ""]),
    "pattern": st.sampled_from(["[", "**/*.py", ""]),
    "items": st.sampled_from([0, -1, 2.5, "3", True]),
    "concurrency": st.sampled_from(["16", "lots", [], [0], [1, "2"], 0, 1.5]),
    "warmup": st.sampled_from([-1, "1", 0.5]),
    "repeats": st.sampled_from([0, -3, "2", 1.0]),
    "mode": st.sampled_from(["stream", "batch", "", "OFFLINE"]),
    "rate": st.sampled_from([0, -1.0, math.inf, math.nan, "fast"]),
    "trace": st.sampled_from(["trace.json", "workload.jsonl", ""]),
    "seed": st.sampled_from([1.5, "0", True]),
    "name": st.sampled_from(["", "  ", 3]),
    "max_accuracy_drop": st.sampled_from([1, 3, -0.1, math.nan]),
    "min_gain": st.sampled_from([10, -1, math.inf]),
    "optimize_for": st.sampled_from(["latency", "", "P99"]),
    "growth": st.sampled_from([{}, {"now_rps": -1}, {"peak_rps": 5}, {"now_rps": "x"}, 3]),
}


def _table(keys: tuple[str, ...], hostile: bool) -> st.SearchStrategy[dict[str, Any]]:
    """A table of ``keys``: plausible values only, or (hostile) also values of the wrong
    kind, edge values and misspelled keys."""
    if not hostile:
        known = tuple(k for k in keys if k in VALID)
        pair = st.sampled_from(known).flatmap(lambda k: st.tuples(st.just(k), VALID[k]))
        return st.lists(pair, max_size=4).map(dict)

    def value(key: str) -> st.SearchStrategy[Any]:
        wrong = INVALID.get(key, st.sampled_from([0, -1.0, math.nan, "x"]))
        return st.one_of(VALID.get(key, toml_values), wrong, toml_values)

    key = st.sampled_from(keys + MISSPELLED[:2])
    pair = key.flatmap(lambda k: st.tuples(st.just(k), value(k)))
    return st.lists(pair, min_size=1, max_size=5).map(dict)


@dataclass(frozen=True)
class Case:
    """One generated project: the pyproject text, the workload file, whether the target
    module has its own workload, whether TARGET comes from the table."""

    pyproject: str
    workload: bytes
    module_workload: bool
    target_from_config: bool


@st.composite
def cases(draw: st.DrawFn) -> Case:
    tool: dict[str, Any] = {}
    hostile = draw(st.booleans())
    base = {"path": "workload.jsonl", "field": "text", "label_field": "label"}
    tool["workload"] = {**base, **draw(_table(WORKLOAD_KEYS, hostile))}
    if draw(st.booleans()):
        tool["requirements"] = draw(_table(REQUIREMENT_KEYS, hostile))
    if draw(st.sampled_from([False] * 5 + [True])):  # a section of the wrong shape, or unknown
        tool[draw(st.sampled_from(["scan", "store", "optimize", "extra"]))] = draw(toml_values)
    from_config = draw(st.sampled_from([False] * 3 + [True]))
    if from_config:
        tool["target"] = draw(st.one_of(st.just("target.py:pipeline"), toml_values))
    text = project_toml(tool)
    if draw(st.sampled_from([False] * 12 + [True])):  # not TOML at all
        text = draw(st.sampled_from(["[tool.pipetune\n", "x = = 1\n", "[tool]\npipetune = 3\n"]))
    return Case(text, draw(workload_files()), draw(st.booleans()), from_config)


@st.composite
def workload_files(draw: st.DrawFn) -> bytes:
    """JSONL workloads: good lines, lines without the field, other JSON, garbage, bytes."""
    json_values = st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(), _text),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(_text, inner, max_size=3)
        ),
        max_leaves=6,
    )
    good = st.builds(
        lambda t, y: {"text": t, "label": y}, _text, st.one_of(st.integers(0, 3), json_values)
    )
    line = st.one_of(
        good.map(json.dumps),
        good.map(json.dumps),
        json_values.map(lambda v: json.dumps(v)),
        st.sampled_from(["", "   ", "{", "not json", '{"text": 1,}', "NaN"]),
    )
    well_formed = draw(st.sampled_from([True, True, False]))  # mostly: odd inputs too
    if well_formed:
        line = good.map(json.dumps)
    lines = draw(st.lists(line, min_size=1 if well_formed else 0, max_size=8))
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    if draw(st.sampled_from([False] * 15 + [True])):
        data += b"\n\xff\xfe not utf-8\n"
    return data


def project_toml(tool: dict[str, Any]) -> str:
    """``[tool.pipetune]`` with its workload and requirements tables (other nested values
    become inline tables)."""
    lines = ["[tool.pipetune]"]
    tables = ("workload", "requirements")
    for key, value in tool.items():
        if not (key in tables and isinstance(value, dict)):
            lines.append(f"{_key(key)} = {_value(value)}")
    for name in tables:
        table = tool.get(name)
        if isinstance(table, dict):
            lines.append(f"\n[tool.pipetune.{name}]")
            lines.extend(f"{_key(key)} = {_value(value)}" for key, value in table.items())
    return "\n".join(lines) + "\n"


def _key(key: str) -> str:
    bare = key and all(c.isalnum() or c in "-_" for c in key) and key.isascii()
    return key if bare else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):  # TOML escapes DEL too, JSON does not
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


TARGET = """
from pipetune import Pipeline, Stage, Workload

def ident(x):
    return x

pipeline = Pipeline("fuzz", (Stage("ident", ident),), output_kind="labels")
"""


@dataclass(frozen=True)
class Outcome:
    code: int
    err: str

    @property
    def internal(self) -> bool:
        return (
            self.code not in (0, 2, 3) or "internal error" in self.err or ("Traceback" in self.err)
        )


def run_case(case: Case, folder: Path) -> Outcome:
    """Write ``case`` into ``folder`` and run ``pipetune profile`` on it in-process."""
    from pipetune.cli.main import main

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(case.pyproject, encoding="utf-8")
    (folder / "workload.jsonl").write_bytes(case.workload)
    source = TARGET
    if case.module_workload:
        source += "workload = Workload(items=(1, 2, 3), warmup=0, repeats=1)\n"
    (folder / "target.py").write_text(textwrap.dedent(source))
    target = [] if case.target_from_config else [str(folder / "target.py")]
    args = [
        "profile",
        *target,
        "--config",
        str(folder / "pyproject.toml"),
        "-q",
        "--timeout",
        "10",
        "--concurrency",
        "1",  # a sweep over generated levels would make each example take seconds
    ]
    err = io.StringIO()
    cwd = os.getcwd()
    try:
        os.chdir(folder)
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(args)
    finally:
        os.chdir(cwd)
    return Outcome(code, err.getvalue())
