"""Where a job's results go: the output file (JSONL or Parquet) and the errors file.

* Every output row is ``{"id": ..., "output": ...}``, keyed by its input's id.
* Every input that did not produce an output is one line of the errors file (JSONL): its
  id, its source (``file:line``), the stage that failed (``input`` for a malformed row,
  ``output`` for an output that cannot be written), the exception and its message, and
  for a malformed row its raw text. Nothing is skipped silently.
* An existing output or errors file is refused unless ``overwrite`` is given.
* Rows are written as they finish: a JSONL output keeps every finished row even if the job
  is killed; a Parquet output is complete when the job ends or is interrupted (its footer
  is written on close).
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.registry import require
from pipetune.scale.rows import decode_key

OUTPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
OUTPUT_STAGE = "output"


def output_format(path: Path) -> str:
    found = OUTPUT_FORMATS.get(path.suffix.lower())
    if found is None:
        raise ConfigError(
            f"--output {path}: write .jsonl or .parquet (the suffix chooses the format)"
        )
    return found


def default_errors_path(output: Path) -> Path:
    return output.with_name(output.stem + ".errors.jsonl")


def check_destinations(paths: Sequence[Path], overwrite: bool) -> None:
    """Refuse to replace existing results unless asked; make sure the folders exist."""
    for path in paths:
        if path.exists() and not overwrite:
            raise ConfigError(
                f"{path} already exists: pass --overwrite to replace it, or choose another path"
            )
        if path.exists() and path.is_dir():
            raise ConfigError(f"{path} is a folder, not a file")
        if not path.parent.is_dir():
            raise ConfigError(f"cannot write {path}: folder {path.parent} does not exist")


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON data (numpy arrays and scalars, tuples, sets, bytes,
    dataclasses, paths); raises :class:`TypeError` for anything else."""
    return json.loads(json.dumps(value, default=_default, allow_nan=True))


def _default(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)
    if callable(tolist):  # numpy arrays and scalars, torch tensors
        return tolist()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


class ErrorSink:
    """The errors file, created on the first error (a run without errors writes none)."""

    def __init__(self, path: Path):
        self.path = path
        self.count = 0
        self.by_stage: dict[str, int] = {}
        self._handle: Any = None

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        if not records:
            return
        if self._handle is None:
            self._handle = self.path.open("w", encoding="utf-8")
        for record in records:
            line = json.dumps(dict(record), default=str, ensure_ascii=False)
            self._handle.write(line + "\n")
            stage = str(record.get("stage"))
            self.by_stage[stage] = self.by_stage.get(stage, 0) + 1
        self.count += len(records)
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def error_record(
    key: str,
    source: str,
    stage: str,
    exception: str,
    message: str,
    raw: str | None = None,
) -> dict[str, Any]:
    record = {
        "id": decode_key(key),
        "source": source,
        "stage": stage,
        "exception": exception,
        "error": message,
    }
    if raw is not None:
        record["row"] = raw
    return record


class OutputSink:
    """The output file. :meth:`write` takes ``(key, source, output)`` rows and returns the
    error records of those it could not write (an output that is not JSON-serializable,
    or that does not fit the Parquet column's type)."""

    def __init__(self, path: Path):
        self.path = path
        self.format = output_format(path)
        self.count = 0
        self._handle: Any = None
        self._parquet: Any = None
        self._schema: Any = None

    def write(self, rows: Sequence[tuple[str, str, Any]]) -> list[dict[str, Any]]:
        if self.format == "jsonl":
            return self._write_jsonl(rows)
        return self._write_parquet(rows)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        elif self.format == "parquet" and self._schema is None and self.count == 0:
            self._write_empty_parquet()

    # -- JSONL ---------------------------------------------------------------------------------
    def _write_jsonl(self, rows: Sequence[tuple[str, str, Any]]) -> list[dict[str, Any]]:
        if self._handle is None:
            self._handle = self.path.open("w", encoding="utf-8")
        lines, failed = [], []
        for key, source, output in rows:
            try:
                body = json.dumps(output, default=_default, ensure_ascii=False)
            except (TypeError, ValueError) as exc:
                failed.append(_unwritable(key, source, exc))
                continue
            lines.append(f'{{"id": {key}, "output": {body}}}\n')
        self._handle.write("".join(lines))
        self._handle.flush()
        self.count += len(lines)
        return failed

    # -- Parquet -------------------------------------------------------------------------------
    def _write_parquet(self, rows: Sequence[tuple[str, str, Any]]) -> list[dict[str, Any]]:
        pa = require("pyarrow", "ray", "Parquet output")

        ids, outputs, keep, failed = [], [], [], []
        for key, source, output in rows:
            try:
                outputs.append(to_jsonable(output))
            except (TypeError, ValueError) as exc:
                failed.append(_unwritable(key, source, exc))
                continue
            ids.append(decode_key(key))
            keep.append((key, source))
        if not ids:
            return failed
        table = self._table(pa, ids, outputs)
        if table is None:  # a column type that does not fit: row by row
            good_ids, good_outputs = [], []
            for (key, source), one_id, output in zip(keep, ids, outputs, strict=True):
                if self._table(pa, [one_id], [output]) is None:
                    failed.append(_unwritable(key, source, TypeError("does not fit the column")))
                else:
                    good_ids.append(one_id)
                    good_outputs.append(output)
            table = self._table(pa, good_ids, good_outputs) if good_ids else None
        if table is not None:
            self._writer(table.schema).write_table(table)
            self.count += table.num_rows
        return failed

    def _table(self, pa: Any, ids: list[Any], outputs: list[Any]) -> Any:
        """A table for the rows, in the file's schema (fixed by the first rows written:
        outputs of one Arrow type in ``output``, else their JSON text in ``output_json``)."""
        try:
            if self._schema is None:
                try:
                    name, column = "output", pa.array(outputs)
                    if pa.types.is_null(column.type):  # all None: no type to fix yet
                        name, column = "output_json", _json_column(pa, outputs)
                except (pa.ArrowException, TypeError, ValueError, OverflowError):
                    name, column = "output_json", _json_column(pa, outputs)
                return pa.table({"id": pa.array(ids), name: column})
            id_field, output_field = self._schema.field("id"), self._schema.field(1)
            if output_field.name == "output_json":
                column = _json_column(pa, outputs)
            else:
                column = pa.array(outputs, output_field.type)
            return pa.table({"id": pa.array(ids, id_field.type), output_field.name: column})
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            return None

    def _writer(self, schema: Any) -> Any:
        import pyarrow.parquet as pq

        if self._parquet is None:
            self._schema = schema
            self._parquet = pq.ParquetWriter(str(self.path), schema)
        return self._parquet

    def _write_empty_parquet(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"id": pa.array([], pa.string())}), str(self.path))


def _json_column(pa: Any, outputs: list[Any]) -> Any:
    return pa.array([json.dumps(v, ensure_ascii=False) for v in outputs], pa.string())


def _unwritable(key: str, source: str, exc: BaseException) -> dict[str, Any]:
    return error_record(key, source, OUTPUT_STAGE, type(exc).__name__, f"cannot write: {exc}")
