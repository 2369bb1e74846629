"""Generate the command reference in ``docs/cli.md`` from the CLI itself.

``python -m pipetune.cli.docgen docs/cli.md`` rewrites the part of the file between the
``BEGIN``/``END`` markers (the hand-written introduction above them is kept);
``--check`` exits 1 when the file is out of date, which a test does. The reference is built
from pipetune's own commands with its built-in plugins only, so what happens to be
installed on the machine does not change it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click

BEGIN = "<!-- BEGIN GENERATED: python -m pipetune.cli.docgen docs/cli.md -->"
END = "<!-- END GENERATED -->"


def reference_cli() -> click.Group:
    """The CLI as documented: built-in commands and built-in plugins' commands."""
    from pipetune.cli.main import build_cli
    from pipetune.core.kernel.manager import get_plugin_manager

    return build_cli(get_plugin_manager(entry_points=False, strict=False, disable=()))


def render_reference(cli: click.Group) -> str:
    """Markdown for every command, subcommand, argument and option of ``cli``."""
    ctx = click.Context(cli, info_name="pipetune")
    parts = [_render_command(cli, ctx, "pipetune", level=2)]
    for path, command, sub_ctx in _walk(cli, ctx, "pipetune"):
        parts.append(_render_command(command, sub_ctx, path, level=2 + path.count(" ") - 1))
    return "\n".join(parts).rstrip() + "\n"


def _walk(
    group: click.Group, ctx: click.Context, prefix: str
) -> Iterator[tuple[str, click.Command, click.Context]]:
    for name in sorted(group.list_commands(ctx)):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        path = f"{prefix} {name}"
        sub_ctx = click.Context(command, info_name=name, parent=ctx)
        yield path, command, sub_ctx
        if isinstance(command, click.Group):
            yield from _walk(command, sub_ctx, path)


def _render_command(command: click.Command, ctx: click.Context, path: str, level: int) -> str:
    heading = "#" * min(level, 4)
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines = [f"{heading} `{path}`", "", "```", f"{path} {usage}".rstrip(), "```", ""]
    help_text = _clean(command.help or "")
    if help_text:
        lines += [help_text, ""]
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    options = [p for p in command.params if isinstance(p, click.Option) and not p.hidden]
    if arguments:
        lines += ["| argument | required |", "|---|---|"]
        for argument in arguments:
            lines.append(
                f"| `{argument.make_metavar(ctx)}` | {'yes' if argument.required else 'no'} |"
            )
        lines.append("")
    if options:
        lines += ["| option | meaning |", "|---|---|"]
        for option in options:
            record = option.get_help_record(ctx)
            if record is None:
                continue
            flags, text = record
            lines.append(f"| `{flags}` | {_cell(text)} |")
        lines.append("")
    if isinstance(command, click.Group):
        names = [n for n in sorted(command.list_commands(ctx)) if n != "help"]
        if names and path != "pipetune":
            lines += ["Subcommands: " + ", ".join(f"`{path} {n}`" for n in names), ""]
    return "\n".join(lines)


def _clean(text: str) -> str:
    """click help text: drop the ``\\b`` no-rewrap markers, keep paragraphs."""
    import inspect

    text = inspect.cleandoc(text).replace("\b\n", "")
    return text.split("\f")[0].strip()


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def update(path: Path, *, check: bool = False) -> bool:
    """Rewrite the generated part of ``path``; return True if it changed (or would)."""
    current = path.read_text(encoding="utf-8") if path.exists() else f"{BEGIN}\n{END}\n"
    if BEGIN not in current or END not in current:
        raise SystemExit(f"{path}: the {BEGIN!r} and {END!r} markers are missing")
    head, _, rest = current.partition(BEGIN)
    _, _, tail = rest.partition(END)
    generated = render_reference(reference_cli())
    new = f"{head}{BEGIN}\n\n{generated}\n{END}{tail}"
    if new == current:
        return False
    if not check:
        path.write_text(new, encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    paths = [a for a in args if a != "--check"] or ["docs/cli.md"]
    stale = [p for p in paths if update(Path(p), check=check)]
    if check and stale:
        print(f"out of date: {', '.join(stale)} (run: make cli-docs)", file=sys.stderr)
        return 1
    for path in stale:
        print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
