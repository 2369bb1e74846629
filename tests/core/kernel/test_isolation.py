"""The --isolate breadcrumb: where the child process is, and whether it reached a verdict."""

from __future__ import annotations

from pipetune.core.kernel import isolation


def test_the_breadcrumb_records_the_place_and_the_verdict(tmp_path, monkeypatch) -> None:
    path = isolation.new_breadcrumb(tmp_path)
    assert isolation.read_breadcrumb(path) == isolation.Breadcrumb(False, "", None)
    monkeypatch.setattr(isolation, "_mm", None)
    isolation.enable(path)
    try:
        assert isolation.marker() is not None
        isolation.mark("stage 'encode'", 12)
        found = isolation.read_breadcrumb(path)
        assert found.place == "stage 'encode'" and found.index == 12 and not found.verdict
        assert found.where() == " while in stage 'encode' on input #12"
        isolation.mark("hook stage_hints of plugin 'x'")
        isolation.reached_verdict()
        found = isolation.read_breadcrumb(path)
        assert found.verdict and found.index is None
    finally:
        monkeypatch.setattr(isolation, "_mm", None)
    assert isolation.marker() is None
