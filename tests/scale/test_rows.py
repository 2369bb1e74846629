"""Input files parsed into keyed rows: ids, sources, malformed rows kept with their line."""

from __future__ import annotations

import json

import pytest

from pipetune.core.kernel.errors import ConfigError
from pipetune.scale.rows import (
    InputFile,
    RowOptions,
    count_rows,
    decode_key,
    expand_inputs,
    parse_file,
    sample_inputs,
)


def jsonl(tmp_path, lines):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return InputFile(path, "jsonl", "in.jsonl")


def test_jsonl_rows_are_keyed_by_id_and_malformed_lines_are_kept_with_their_line(tmp_path):
    file = jsonl(
        tmp_path,
        [b'{"id": 7, "text": "a"}', b"", b"{oops", b'{"id": "x", "other": 1}', b"\xff\xfe"],
    )
    rows = parse_file(file, file.path.read_bytes(), RowOptions(field="text"))
    assert [(r.source, r.ok) for r in rows] == [
        ("in.jsonl:1", True),
        ("in.jsonl:3", False),
        ("in.jsonl:4", False),
        ("in.jsonl:5", False),
    ]
    assert decode_key(rows[0].key) == 7 and rows[0].value == "a"
    assert "not valid JSON" in rows[1].error and rows[1].raw == "{oops"
    assert rows[2].error == "no field 'text'" and decode_key(rows[2].key) == "x"
    assert "not UTF-8" in rows[3].error


def test_rows_without_an_id_are_keyed_by_location_unless_the_id_field_was_asked_for(tmp_path):
    file = jsonl(tmp_path, [b'"just a string"', b'{"text": "t"}'])
    data = file.path.read_bytes()
    rows = parse_file(file, data, RowOptions())
    assert [decode_key(r.key) for r in rows] == ["in.jsonl:1", "in.jsonl:2"]
    assert rows[0].value == "just a string"
    strict = parse_file(file, data, RowOptions(id_field="doc", id_required=True))
    assert all(r.error == "no id field 'doc'" for r in strict)


def test_ids_keep_their_type(tmp_path):
    file = jsonl(tmp_path, [b'{"id": 17}', b'{"id": "17"}'])
    keys = [r.key for r in parse_file(file, file.path.read_bytes(), RowOptions())]
    assert keys[0] != keys[1] and decode_key(keys[0]) == 17 and decode_key(keys[1]) == "17"


def test_csv_rows_with_the_wrong_number_of_fields_are_malformed_with_their_line(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('id,text\n1,hello\n2,"two\nlines"\n3,a,b\n4,fine\n')
    rows = parse_file(InputFile(path, "csv", "in.csv"), path.read_bytes(), RowOptions("text"))
    assert [(r.source, r.value, r.error) for r in rows] == [
        ("in.csv:2", "hello", None),
        ("in.csv:3", "two\nlines", None),
        ("in.csv:5", None, "3 fields where the header has 2"),
        ("in.csv:6", "fine", None),
    ]
    assert decode_key(rows[0].key) == "1"


def test_parquet_rows_are_numbered(tmp_path):
    pa = pytest.importorskip("pyarrow", reason="pyarrow is not installed")
    import pyarrow.parquet as pq

    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": [1, 2], "text": ["a", "b"]}), path)
    rows = parse_file(
        InputFile(path, "parquet", "in.parquet"), path.read_bytes(), RowOptions("text")
    )
    assert [(r.source, r.value) for r in rows] == [
        ("in.parquet:row 1", "a"),
        ("in.parquet:row 2", "b"),
    ]
    broken = parse_file(InputFile(path, "parquet", "x.parquet"), b"not parquet", RowOptions())
    assert len(broken) == 1 and "not a readable Parquet file" in broken[0].error


def test_inputs_are_expanded_from_files_folders_and_globs(tmp_path):
    for name in ("b.jsonl", "a.csv", "notes.txt"):
        (tmp_path / name).write_text("{}\n")
    assert [f.path.name for f in expand_inputs([str(tmp_path)])] == ["a.csv", "b.jsonl"]
    assert [f.format for f in expand_inputs([str(tmp_path / "*.jsonl")])] == ["jsonl"]
    with pytest.raises(ConfigError, match="matches no file"):
        expand_inputs([str(tmp_path / "*.parquet")])
    with pytest.raises(ConfigError, match="cannot tell the format"):
        expand_inputs([str(tmp_path / "notes.txt")])
    with pytest.raises(ConfigError, match="no such file"):
        expand_inputs([str(tmp_path / "missing.jsonl")])


def test_rows_are_counted_and_sampled(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json.dumps({"id": i, "t": i}) for i in range(5)) + "\n{bad\n")
    files = expand_inputs([str(path)])
    assert count_rows(files) == 6
    assert sample_inputs(files, RowOptions("t"), 3) == [0, 1, 2]
