"""Output and errors files: keyed rows, unwritable outputs reported, nothing overwritten."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipetune.core.kernel.errors import ConfigError
from pipetune.scale.sinks import (
    ErrorSink,
    OutputSink,
    check_destinations,
    error_record,
    to_jsonable,
)


def test_jsonl_output_is_keyed_and_an_unwritable_output_becomes_an_error(tmp_path):
    sink = OutputSink(tmp_path / "out.jsonl")
    failed = sink.write([("1", "f:1", np.arange(3)), ('"b"', "f:2", object()), ("3", "f:3", "x")])
    sink.close()
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert rows == [{"id": 1, "output": [0, 1, 2]}, {"id": 3, "output": "x"}]
    assert failed[0]["id"] == "b" and failed[0]["stage"] == "output"
    assert sink.count == 2


def test_parquet_output_keeps_the_first_rows_types_and_reports_rows_that_do_not_fit(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed")
    sink = OutputSink(tmp_path / "out.parquet")
    assert sink.write([("1", "f:1", "pos"), ("2", "f:2", "neg")]) == []
    failed = sink.write([("3", "f:3", "pos"), ("4", "f:4", {"nested": [1]})])
    sink.close()
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column("id").to_pylist() == [1, 2, 3]
    assert table.column("output").to_pylist() == ["pos", "neg", "pos"]
    assert [f["id"] for f in failed] == [4]


def test_parquet_output_of_mixed_values_is_json_text(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed")
    sink = OutputSink(tmp_path / "out.parquet")
    sink.write([("1", "f:1", {"a": 1}), ("2", "f:2", [1, "x"])])
    sink.close()
    column = pq.read_table(tmp_path / "out.parquet").column("output_json").to_pylist()
    assert [json.loads(v) for v in column] == [{"a": 1}, [1, "x"]]


def test_existing_results_are_not_replaced_without_overwrite(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("precious\n")
    with pytest.raises(ConfigError, match="already exists: pass --overwrite"):
        check_destinations([out], overwrite=False)
    check_destinations([out], overwrite=True)
    with pytest.raises(ConfigError, match="does not exist"):
        check_destinations([tmp_path / "missing" / "out.jsonl"], overwrite=False)


def test_the_errors_file_is_written_only_when_there_are_errors(tmp_path):
    sink = ErrorSink(tmp_path / "errors.jsonl")
    sink.write([])
    sink.close()
    assert not (tmp_path / "errors.jsonl").exists()
    sink = ErrorSink(tmp_path / "errors.jsonl")
    sink.write([error_record('"a"', "f:1", "embed", "ValueError", "bad", raw=None)])
    sink.close()
    assert json.loads((tmp_path / "errors.jsonl").read_text())["stage"] == "embed"
    assert sink.by_stage == {"embed": 1}


def test_outputs_become_plain_json():
    assert to_jsonable({"v": np.float32(0.5), "s": {2, 1}, "t": (1, 2)}) == {
        "v": 0.5,
        "s": [1, 2],
        "t": [1, 2],
    }
    with pytest.raises(TypeError):
        to_jsonable(object())
