"""Input files cut into shards, so Ray Data reads and parses them in parallel.

One read task per file would give the first stage group one call per file (Ray Data keeps a
task's output as one block): a single large JSONL file would feed one worker. The driver
therefore cuts each file into shards of about ``rows`` rows — JSONL at line boundaries,
Parquet at row-group boundaries — recording where each starts (byte offset, first line or
row number), so a shard parsed anywhere still reports every malformed row with its real
line number. A CSV file is one shard (a quoted field may span lines, so a byte offset is
not a row boundary): split large CSV inputs into several files.

Cutting reads each JSONL file once in the driver (to find line ends, at memory speed) and
only the footer of a Parquet file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.registry import require
from pipetune.scale.rows import InputFile, InputRow, RowOptions, jsonl_rows, parse_file, table_rows


@dataclass(frozen=True)
class Shard:
    """Part of an input file: bytes ``[start, end)`` (JSONL, CSV) or some row groups
    (Parquet), whose first line or row is number ``first``."""

    path: str
    name: str
    format: str
    start: int = 0
    end: int | None = None
    first: int = 1
    row_groups: tuple[int, ...] = ()
    rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["row_groups"] = list(self.row_groups)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Shard:
        return cls(**{**data, "row_groups": tuple(data.get("row_groups") or ())})


def shard_inputs(files: Sequence[InputFile], rows: int) -> list[Shard]:
    """Every file cut into shards of about ``rows`` rows."""
    if rows < 1:
        raise ConfigError("shards need at least one row each")
    shards: list[Shard] = []
    for file in files:
        if file.format == "jsonl":
            shards.extend(_jsonl_shards(file, rows))
        elif file.format == "parquet":
            shards.extend(_parquet_shards(file, rows))
        else:
            shards.append(Shard(str(file.path), file.name, file.format, rows=_csv_rows(file)))
    return shards


def _read(file: InputFile) -> bytes:
    try:
        return file.path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read input {file.name}: {exc.strerror}") from None


def _jsonl_shards(file: InputFile, rows: int) -> list[Shard]:
    data = _read(file)
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1  # after each "\n"
    if not len(ends) or ends[-1] != len(data):
        ends = np.append(ends, len(data))  # a last line without "\n"
    shards = []
    for first in range(0, len(ends), rows):
        start = 0 if first == 0 else int(ends[first - 1])
        last = min(first + rows, len(ends)) - 1
        shards.append(
            Shard(
                str(file.path),
                file.name,
                "jsonl",
                start,
                int(ends[last]),
                first + 1,
                rows=last - first + 1,
            )
        )
    return shards


def _parquet_shards(file: InputFile, rows: int) -> list[Shard]:
    pq = require("pyarrow.parquet", "ray", "Parquet input files")
    try:
        metadata = pq.ParquetFile(file.path).metadata
    except Exception:  # unreadable: one shard, whose parse reports the file
        return [Shard(str(file.path), file.name, "parquet")]
    shards, groups, count, first = [], [], 0, 1
    for index in range(metadata.num_row_groups):
        groups.append(index)
        count += metadata.row_group(index).num_rows
        if count >= rows or index == metadata.num_row_groups - 1:
            shards.append(
                Shard(
                    str(file.path),
                    file.name,
                    "parquet",
                    first=first,
                    row_groups=tuple(groups),
                    rows=count,
                )
            )
            first += count
            groups, count = [], 0
    return shards or [Shard(str(file.path), file.name, "parquet")]


def _csv_rows(file: InputFile) -> int:
    return max(0, sum(1 for line in _read(file).split(b"\n") if line.strip()) - 1)


def parse_shard(shard: Shard, options: RowOptions) -> list[InputRow]:
    """The rows of one shard, numbered as in the whole file."""
    file = InputFile(Path(shard.path), shard.format, shard.name)
    if shard.format == "jsonl":
        with Path(shard.path).open("rb") as handle:
            handle.seek(shard.start)
            data = handle.read(None if shard.end is None else shard.end - shard.start)
        return list(jsonl_rows(shard.name, data, options, first=shard.first))
    if shard.format == "parquet" and shard.row_groups:
        pq = require("pyarrow.parquet", "ray", "Parquet input files")
        table = pq.ParquetFile(shard.path).read_row_groups(list(shard.row_groups))
        return list(table_rows(shard.name, table, options, first=shard.first))
    return parse_file(file, _read(file), options)
