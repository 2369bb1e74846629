"""``pipetune scan PATH...``: the plugins' rules over source code, for people and for CI.

Exit codes follow linters: 0 when no finding reaches ``--fail-on``, 1 when one does, 2 for
a usage error (a path that does not exist, no Python files, an unknown rule in
``--select``, a bad option or configuration).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipetune.cli.state import get_pm, get_state, plugin_problems

if TYPE_CHECKING:
    from pipetune.scan.config import ScanOptions
    from pipetune.scan.ruleset import RuleSet

EXIT_FINDINGS = 1


def register(cli: click.Group) -> None:
    cli.add_command(scan)


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "sarif"]),
    default="text",
    show_default=True,
    help="Report format: text for people, json for scripts, sarif (2.1.0) for code scanning.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the report to FILE instead of stdout.",
)
@click.option(
    "--select",
    multiple=True,
    metavar="RULES",
    help="Only these rules: ids, prefixes (PT-NLP) or names, comma-separated, repeatable. "
    "Replaces the configuration's select. Default: every rule.",
)
@click.option(
    "--ignore",
    multiple=True,
    metavar="RULES",
    help="Skip these rules (ids, prefixes or names); added to the configuration's ignore. "
    "Ignore wins over select.",
)
@click.option(
    "--fail-on",
    type=click.Choice(["error", "warning", "note", "never"]),
    help="Exit 1 when a finding of this severity or higher is reported (default: warning).",
)
@click.option(
    "--min-confidence",
    type=click.FloatRange(0, 1),
    help="Drop findings whose confidence is below this (0-1).",
)
@click.option(
    "--exclude",
    multiple=True,
    metavar="GLOB",
    help="Skip files and folders matching GLOB (name or relative path); repeatable.",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=0),
    help="Scan files in N processes (0: one per CPU). Default 1.",
)
@click.option(
    "--max-file-size",
    type=click.FloatRange(min=0, min_open=True),
    metavar="MIB",
    help="Skip (and report) files larger than this many MiB (default 5).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="pyproject.toml to read [tool.pipetune.scan] from (default: the nearest one).",
)
@click.option(
    "--list-rules", is_flag=True, help="List the rules (after --select/--ignore) and exit."
)
@click.option("-q", "--quiet", is_flag=True, help="Text format: findings only, no summary.")
@click.pass_context
def scan(
    ctx: click.Context,
    paths: tuple[Path, ...],
    fmt: str,
    output: Path | None,
    select: tuple[str, ...],
    ignore: tuple[str, ...],
    fail_on: str | None,
    min_confidence: float | None,
    exclude: tuple[str, ...],
    jobs: int | None,
    max_file_size: float | None,
    config_path: Path | None,
    list_rules: bool,
    quiet: bool,
) -> int:
    """Scan Python source for slow patterns the plugins know how to fix.

    Reads PATHS (files or folders; default: the current folder) with Python's ast module
    only: nothing scanned is imported or run. Each finding names the proposal that fixes
    it, so `pipetune optimize` can measure the fix on your workload. Configuration:
    [tool.pipetune.scan] in pyproject.toml. Inline: `# pipetune: ignore[PT-NLP001]` (or a
    bare `# pipetune: ignore`) on the reported line. Exit 0: clean; 1: findings at or above
    --fail-on; 2: usage error.
    """
    from pipetune.scan.engine import scan as run_scan
    from pipetune.scan.output import render
    from pipetune.scan.output.text import render_diagnostics, summary_line
    from pipetune.scan.ruleset import collect_rules

    targets = list(paths) or [Path(".")]
    base = _load_options(config_path, targets)
    options = base.merged(
        select=select,
        ignore=ignore,
        exclude=exclude,
        fail_on=fail_on,
        min_confidence=min_confidence,
        jobs=jobs,
        max_file_size=int(max_file_size * 1024 * 1024) if max_file_size else None,
    )
    pm = get_pm(ctx)
    ruleset = collect_rules(pm)
    if list_rules:
        _list_rules(ruleset.selected(options.select, options.ignore), fmt)
        return 0
    result = run_scan(targets, pm, options, root=Path.cwd(), ruleset=ruleset)
    result.warnings = plugin_problems(get_state(ctx))  # a plugin that failed: rules missing
    report = render(result, fmt)
    if fmt == "text" and quiet:
        report = report.replace(summary_line(result) + "\n", "")
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(report, encoding="utf-8")
        get_state(ctx).written.append(str(output))
        if fmt != "text" and not quiet:
            click.echo(summary_line(result), err=True)
    else:
        sys.stdout.write(report)
        sys.stdout.flush()
    for line in render_diagnostics(result):
        click.echo(line, err=True)
    return EXIT_FINDINGS if result.exit_code(options.fail_on) else 0


def _load_options(config_path: Path | None, targets: list[Path]) -> ScanOptions:
    """``[tool.pipetune.scan]`` from ``--config`` or the pyproject.toml nearest the first
    path (then the current folder)."""
    from pipetune.core.kernel.config import find_pyproject, load_config
    from pipetune.scan.config import ScanOptions, options_from_table

    if config_path is not None:
        config = load_config(config_path)
    else:
        start = targets[0] if targets[0].exists() else Path.cwd()
        found = find_pyproject(start) or find_pyproject(Path.cwd())
        config = load_config(found) if found else load_config(None, start=Path.cwd())
    table = config.section("scan")
    if not table:
        return ScanOptions()
    return options_from_table(table, config.where("scan"))


def _list_rules(ruleset: RuleSet, fmt: str) -> None:
    import json

    rows = [
        {**loaded.rule.describe(), "plugin": loaded.plugin}
        for _, loaded in sorted(ruleset.rules.items())
    ]
    if fmt != "text":
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(
            f"{row['id']:<11} {row['name']:<36} {row['severity']:<8} "
            f"{row['confidence']:<5} {row['proposal']:<28} {row['plugin']}"
        )
    for problem in ruleset.problems:
        click.echo(f"warning: {problem.describe()}", err=True)
