"""Input rows for ``pipetune run``: which files, in which format, parsed into keyed rows.

Every input row gets a **key** (its id) and a **source** (``file:line`` for JSONL and CSV,
``file:row N`` for Parquet), so every output and every error can be traced back to the
row it came from. A row that cannot be read (a line that is not JSON, a CSV line with the
wrong number of fields, a row without the ``--field`` asked for) is not dropped: it becomes
an error row (stage ``input``) carrying its source and raw text, and the job goes on.

The same :func:`parse_file` runs in the driver (local engine) and inside Ray Data tasks
(one task per file), so both engines read exactly the same rows.

Keys: the value of the id field (``--id-field``, default ``id``) when the row has one;
otherwise the row's location (``name:line``), which is unique and stable. A key is kept as
the JSON text of the id so that ``17`` and ``"17"`` stay distinct.
"""

from __future__ import annotations

import csv
import glob
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.registry import require

#: File suffix -> format.
FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
}
INPUT_STAGE = "input"
DEFAULT_ID_FIELD = "id"
#: The most characters of a malformed row kept in the errors file.
RAW_LIMIT = 2000


@dataclass(frozen=True)
class RowOptions:
    """How rows become pipeline inputs.

    Args:
        field: the input is this field of each row (else the whole row).
        id_field: the field holding each row's id.
        id_required: the id field was asked for explicitly: a row without it is an error
            (by default such a row is keyed by its location).
    """

    field: str | None = None
    id_field: str = DEFAULT_ID_FIELD
    id_required: bool = False


@dataclass(frozen=True, slots=True)
class InputRow:
    """One input row: its key and source, and either its value or why it is malformed."""

    key: str
    source: str
    value: Any = None
    error: str | None = None
    raw: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class InputFile:
    path: Path
    format: str
    name: str  # as shown in sources and keys


def file_format(path: Path) -> str:
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        known = ", ".join(sorted(set(FORMATS)))
        raise ConfigError(f"cannot tell the format of input {path}: expected one of {known}")
    return found


def expand_inputs(patterns: Sequence[str]) -> list[InputFile]:
    """The input files named by ``patterns`` (paths, folders or globs), in sorted order.

    A folder stands for every file in it with a known suffix. A pattern that matches
    nothing, or a file of unknown format, is an error naming it.
    """
    if not patterns:
        raise ConfigError("no input given: pass --input FILE_OR_GLOB")
    paths: list[Path] = []
    for pattern in patterns:
        if any(char in pattern for char in "*?["):
            matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
            matches = [p for p in matches if p.is_file()]
            if not matches:
                raise ConfigError(f"--input {pattern!r} matches no file")
            paths.extend(matches)
            continue
        path = Path(pattern)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in FORMATS)
            if not found:
                raise ConfigError(f"--input folder {path} holds no .jsonl, .parquet or .csv file")
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        else:
            raise ConfigError(f"--input {pattern}: no such file or folder")
    unique = list(dict.fromkeys(p.resolve() for p in paths))
    return [InputFile(p, file_format(p), _display_name(p)) for p in unique]


def _display_name(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# -- parsing ----------------------------------------------------------------------------------


def parse_file(file: InputFile, data: bytes, options: RowOptions) -> list[InputRow]:
    """Every row of one input file (``data`` is its content), malformed ones included."""
    if file.format == "jsonl":
        return list(jsonl_rows(file.name, data, options))
    if file.format == "csv":
        return list(_csv_rows(file.name, data, options))
    return list(_parquet_rows(file.name, data, options))


def read_file(file: InputFile, options: RowOptions) -> list[InputRow]:
    try:
        data = file.path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read input {file.name}: {exc.strerror}") from None
    return parse_file(file, data, options)


def _row(name: str, where: str, record: Any, options: RowOptions, raw: str) -> InputRow:
    """A parsed record as an input row: pick its id and its input field."""
    source = f"{name}:{where}"
    has_id = isinstance(record, dict) and options.id_field in record
    if has_id:
        key = json.dumps(record[options.id_field], default=str, ensure_ascii=False)
    else:
        key = json.dumps(source, ensure_ascii=False)
        if options.id_required:
            return InputRow(key, source, error=f"no id field {options.id_field!r}", raw=raw)
    if options.field is None:
        return InputRow(key, source, record)
    if not isinstance(record, dict) or options.field not in record:
        return InputRow(key, source, error=f"no field {options.field!r}", raw=raw)
    return InputRow(key, source, record[options.field])


def _malformed(name: str, where: str, message: str, raw: str) -> InputRow:
    source = f"{name}:{where}"
    return InputRow(json.dumps(source), source, error=message, raw=raw[:RAW_LIMIT])


def jsonl_rows(name: str, data: bytes, options: RowOptions, first: int = 1) -> Iterator[InputRow]:
    for number, line in enumerate(data.split(b"\n"), start=first):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raw = line.decode("utf-8", errors="replace")
            yield _malformed(name, str(number), f"not UTF-8 ({exc.reason})", raw)
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            yield _malformed(name, str(number), f"not valid JSON ({exc.msg})", text)
            continue
        yield _row(name, str(number), record, options, text[:RAW_LIMIT])


def _csv_rows(name: str, data: bytes, options: RowOptions) -> Iterator[InputRow]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        yield _malformed(name, "1", f"not UTF-8 ({exc.reason})", "")
        return
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        yield _malformed(name, "1", f"not valid CSV ({exc})", "")
        return
    while True:
        start = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield _malformed(name, str(start), f"not valid CSV ({exc})", "")
            continue
        if not values:
            continue
        raw = ",".join(values)
        if len(values) != len(header):
            message = f"{len(values)} fields where the header has {len(header)}"
            yield _malformed(name, str(start), message, raw)
            continue
        yield _row(name, str(start), dict(zip(header, values, strict=True)), options, raw)


def _parquet_rows(name: str, data: bytes, options: RowOptions) -> Iterator[InputRow]:
    pa = require("pyarrow", "ray", "Parquet input files")
    pq = require("pyarrow.parquet", "ray", "Parquet input files")

    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        yield _malformed(name, "file", f"not a readable Parquet file ({exc})", "")
        return
    yield from table_rows(name, table, options)


def table_rows(name: str, table: Any, options: RowOptions, first: int = 1) -> Iterator[InputRow]:
    """The rows of an Arrow table read from Parquet, numbered from ``first``."""
    for number, record in enumerate(table.to_pylist(), start=first):
        yield _row(name, f"row {number}", record, options, _raw(record))


def _raw(record: Any) -> str:
    try:
        return json.dumps(record, default=str, ensure_ascii=False)[:RAW_LIMIT]
    except (TypeError, ValueError):
        return repr(record)[:RAW_LIMIT]


# -- counting and sampling -----------------------------------------------------------------


def count_rows(files: Sequence[InputFile]) -> int:
    """About how many rows the files hold (for a progress bar): non-empty lines of JSONL,
    lines of CSV after the header, the Parquet footer's row count."""
    total = 0
    for file in files:
        try:
            if file.format == "parquet":
                pq = require("pyarrow.parquet", "ray", "Parquet input files")
                total += pq.ParquetFile(file.path).metadata.num_rows
                continue
            data = file.path.read_bytes()
        except Exception:  # counting is best effort: the job reports the real figure
            continue
        lines = sum(1 for line in data.split(b"\n") if line.strip())
        total += max(0, lines - 1) if file.format == "csv" else lines
    return total


def sample_inputs(files: Sequence[InputFile], options: RowOptions, count: int) -> list[Any]:
    """The first ``count`` well-formed inputs, for measuring the pipeline before a run."""
    found: list[Any] = []
    for file in files:
        for row in read_file(file, options):
            if row.ok:
                found.append(row.value)
                if len(found) >= count:
                    return found
    return found


def decode_key(key: str) -> Any:
    """The id a key stands for (keys are the JSON text of the id)."""
    try:
        return json.loads(key)
    except json.JSONDecodeError:
        return key
