"""docs/cli.md documents every command and option (its reference part is generated from
the CLI; this fails when a command or option changed without ``make cli-docs``)."""

from __future__ import annotations

from pathlib import Path

import click

from pipetune.cli.docgen import BEGIN, END, reference_cli, render_reference, update

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_cli_reference_is_up_to_date():
    assert not update(DOC, check=True), "docs/cli.md is out of date: run `make cli-docs`"


def test_every_command_and_option_is_in_the_doc():
    text = DOC.read_text()
    generated = text[text.index(BEGIN) : text.index(END)]
    cli = reference_cli()
    ctx = click.Context(cli, info_name="pipetune")
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        assert f"`pipetune {name}`" in generated, name
        for param in command.params:
            for flag in getattr(param, "opts", []):
                if flag.startswith("-"):
                    assert f"{flag}" in generated, f"{name} {flag}"


def test_reference_is_deterministic():
    cli = reference_cli()
    assert render_reference(cli) == render_reference(reference_cli())


def test_the_hand_written_part_names_exit_codes_and_config():
    head = DOC.read_text().split(BEGIN)[0]
    for fragment in ("| 2 |", "| 130 |", "[tool.pipetune.workload]", "PIPETUNE_STRICT_PLUGINS"):
        assert fragment in head
