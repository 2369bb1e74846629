"""Every measured figure in README.md and docs/ is generated from benchmarks/results/*.json
(``python -m benchmarks.render``); this fails, naming the file and block, when a document
disagrees with the results."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from benchmarks.render import blocks
from benchmarks.render.__main__ import main
from benchmarks.render.documents import render_all, update, where_used
from benchmarks.render.registry import BLOCKS, Results, ResultsError

ROOT = Path(__file__).resolve().parents[1]


def test_the_documents_agree_with_the_results(capsys):
    code = main(["--check"])
    assert code == 0, capsys.readouterr().err + "\nrun: python -m benchmarks.render"


def test_every_block_is_used_in_a_document():
    unused = [name for name, where in where_used(ROOT).items() if not where]
    assert not unused, f"blocks no document holds: {unused}"


def _repo(tmp_path: Path, text: str) -> Path:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# readme\n")
    (tmp_path / "docs" / "page.md").write_text(text)
    return tmp_path


def _results(tmp_path: Path, **areas: dict) -> Path:
    folder = tmp_path / "results"
    folder.mkdir(parents=True)
    for area, data in areas.items():
        (folder / f"{area}.json").write_text(json.dumps(data))
    return folder


SCAN = {
    "speed": {
        "command": "python -m benchmarks.scan.speed",
        "files": 3,
        "samples_per_variant": 2,
        "inputs": {"files": 3, "lines": 300},
        "host_load": {"run_queue_wait": 0.02, "other_cpu": 0.1, "cores": 2, "busy": False},
        "variants": [{"variant": "scan, 1 process", "lines": 300, "lines_per_s_best": 1234.0}],
        "meets_target": False,
        "target_lines_per_s": 20000,
    }
}


def test_check_names_the_file_and_the_block_that_disagree(tmp_path, capsys):
    root = _repo(tmp_path, "intro\n\n<!-- generated: scan.speed -->\nstale\n<!-- /generated -->\n")
    results = _results(tmp_path, scan=SCAN)
    code = main(["--check", "--root", str(root), "--results", str(results)])
    err = capsys.readouterr().err
    assert code == 1
    assert "docs/page.md:3: block 'scan.speed' disagrees with benchmarks/results/scan.json" in err
    assert "stale" in (root / "docs" / "page.md").read_text()  # --check writes nothing


def test_render_rewrites_only_the_blocks(tmp_path):
    page = (
        "hand-written\n\n<!-- generated: scan.speed -->\nold\n<!-- /generated -->\n\n"
        "| a | <!-- generated: scan.summary -->old<!-- /generated --> | b |\ntail\n"
    )
    root = _repo(tmp_path, page)
    stale = update(root, Results(_results(tmp_path, scan=SCAN)))
    assert {d.block for d in stale} == {"scan.speed", "scan.summary"}
    text = (root / "docs" / "page.md").read_text()
    assert text.startswith("hand-written\n\n<!-- generated: scan.speed -->\n| variant |")
    assert text.endswith(" | b |\ntail\n")
    row = next(line for line in text.splitlines() if line.startswith("| a |"))
    assert "**1,234** lines/s one process" in row  # inline: on its own line
    assert "timed on" not in row and "3 files, 300 lines; 2 samples per variant" in row
    assert "run-queue wait 2 %" in row
    assert not update(root, Results(tmp_path / "results"), check=True)


def test_a_missing_section_says_pending_and_a_smoke_run_is_never_a_headline(tmp_path):
    empty = render_all(Results(_results(tmp_path)))
    for name in ("core.summary", "hardware.cpu", "loop.validator", "scan.speed", "nlp.tokenizer"):
        assert "pending a quiet run" in empty[name], name
    smoke = {"speed_quick": {**SCAN["speed"], "command": "python -m benchmarks.scan.speed --quick"}}
    rendered = render_all(Results(_results(tmp_path / "smoke", scan=smoke)))
    assert "only a smoke run recorded" in rendered["scan.speed"]
    assert "1,234" not in rendered["scan.speed"]


@pytest.mark.parametrize("area", ["core", "hardware", "llm", "loop", "nlp", "production",
                                  "recsys", "scale", "scan", "vision"])  # fmt: skip
def test_renderers_tolerate_sections_with_missing_keys(tmp_path, area):
    """A results file whose sections hold none of the keys a renderer reads: every block
    still renders (what is missing reads as pending or a dash), nothing raises."""
    current = json.loads((ROOT / "benchmarks" / "results" / f"{area}.json").read_text())
    if "benchmark" in current:  # one benchmark's keys at the top of the file
        hollow = {"benchmark": current["benchmark"]}
    else:
        hollow = {key: {} for key in current}
    rendered = render_all(Results(_results(tmp_path, **{area: hollow})))
    assert all(isinstance(text, str) for text in rendered.values())


def test_the_recsys_blocks_read_the_shape_the_benchmark_writes():
    """benchmarks.recsys.run's results (``compare`` rows under ``compared``, ``held_out``,
    ``batches``): no recsys block prints ``None`` or a dash where a figure belongs."""
    rendered = render_all(Results())
    dash = re.compile(r"\| – \||\*\*–\*\*|–x| – (ms|s|MiB)\b|: –[,;. ]")
    for name, text in rendered.items():
        if "recsys" in name:
            assert "None" not in text, name
            assert not dash.search(text), (name, dash.search(text))


def test_a_block_no_renderer_knows_is_an_error(tmp_path, capsys):
    root = _repo(tmp_path, "<!-- generated: no.such.block -->\n<!-- /generated -->\n")
    assert main(["--root", str(root), "--results", str(_results(tmp_path))]) == 2
    assert "docs/page.md:1: no renderer for block 'no.such.block'" in capsys.readouterr().err


def test_markers_that_do_not_pair_are_errors():
    with pytest.raises(blocks.BlockError, match=r"page\.md:2: block 'a' is never closed"):
        blocks.find("x\n<!-- generated: a -->\n", "page.md")
    with pytest.raises(blocks.BlockError, match="is not closed before the next one"):
        blocks.find("<!-- generated: a -->\n<!-- generated: b -->\n<!-- /generated -->", "p")


def test_a_results_file_that_is_not_json_is_named(tmp_path):
    folder = _results(tmp_path)
    (folder / "scan.json").write_text("{not json")
    with pytest.raises(ResultsError, match=r"scan\.json: not valid JSON"):
        render_all(Results(folder))


def test_every_renderer_names_the_results_it_reads():
    """--check names the results a stale block comes from: every renderer declares them."""
    render_all(Results())  # registers every area's blocks
    for name, renderer in BLOCKS.items():
        assert renderer.sources, name
        assert all(source.isidentifier() for source in renderer.sources), name
