"""Atomic text writes: the whole file or none of it, and no temporary file left behind."""

from __future__ import annotations

import os

import pytest

from pipetune.core.kernel import atomic
from pipetune.core.kernel.atomic import write_text_atomic


def test_writes_the_text_and_creates_the_folder(tmp_path) -> None:
    path = tmp_path / "a" / "b" / "out.json"
    assert write_text_atomic(path, "{}\n") == path
    assert path.read_text(encoding="utf-8") == "{}\n"
    write_text_atomic(str(path), "é")  # replaces, UTF-8
    assert path.read_bytes() == "é".encode()
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.json"]


def test_a_failed_rename_keeps_the_old_file_and_removes_the_temporary_one(
    tmp_path, monkeypatch
) -> None:
    path = tmp_path / "out.json"
    path.write_text("old", encoding="utf-8")

    def fail(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(path, "new")
    assert path.read_text(encoding="utf-8") == "old"
    assert os.listdir(tmp_path) == ["out.json"]
