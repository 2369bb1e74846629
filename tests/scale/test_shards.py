"""Input files cut into shards: every row once, numbered as in the whole file."""

from __future__ import annotations

import json

import pytest

from pipetune.scale.rows import RowOptions, expand_inputs, read_file
from pipetune.scale.shards import Shard, parse_shard, shard_inputs


def _rows(shards, options):
    return [row for shard in shards for row in parse_shard(shard, options)]


def test_jsonl_shards_cut_at_lines_and_keep_line_numbers(tmp_path):
    lines = [json.dumps({"id": i, "t": i}) for i in range(10)]
    lines[6] = "{broken"
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines))  # no newline at the end
    (file,) = expand_inputs([str(path)])
    shards = shard_inputs([file], 3)
    assert [s.rows for s in shards] == [3, 3, 3, 1]
    whole = read_file(file, RowOptions("t"))
    cut = _rows(shards, RowOptions("t"))
    assert [(r.source, r.value, r.error) for r in cut] == [
        (r.source, r.value, r.error) for r in whole
    ]
    assert cut[6].source.endswith("in.jsonl:7") and cut[6].raw == "{broken"
    assert Shard.from_dict(shards[1].to_dict()) == shards[1]


def test_parquet_shards_follow_row_groups(tmp_path):
    pa = pytest.importorskip("pyarrow", reason="pyarrow is not installed")
    import pyarrow.parquet as pq

    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": list(range(10)), "t": list(range(10))}), path, row_group_size=2)
    (file,) = expand_inputs([str(path)])
    shards = shard_inputs([file], 4)
    assert [s.row_groups for s in shards] == [(0, 1), (2, 3), (4,)]
    cut = _rows(shards, RowOptions("t"))
    assert [r.value for r in cut] == list(range(10))
    assert cut[5].source.endswith("in.parquet:row 6")


def test_a_csv_file_is_one_shard(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('id,t\n1,"a\nb"\n2,c\n')
    (file,) = expand_inputs([str(path)])
    (shard,) = shard_inputs([file], 1)
    assert [r.value for r in parse_shard(shard, RowOptions("t"))] == ["a\nb", "c"]
