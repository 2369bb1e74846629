"""``pipetune plugins new NAME``: scaffold a third-party plugin package (hung under the
``plugins`` group by :mod:`pipetune.cli.plugins_cmd`)."""

from __future__ import annotations

from pathlib import Path

import click

from pipetune.cli.state import get_state


@click.command()
@click.argument("name")
@click.option(
    "--directory",
    "-d",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("."),
    show_default=True,
    help="Folder to create the package folder (pipetune-NAME) in.",
)
@click.pass_context
def new(ctx: click.Context, name: str, directory: Path) -> None:
    """Create pipetune-NAME/: a plugin package with the `pipetune` entry point, hooks that
    measure, propose and apply a real change plus a scan rule, and tests written with
    pipetune.testing. NAME is the plugin's name and the prefix of its proposal ids
    (lowercase letters, digits, underscores). An existing folder is never overwritten."""
    from pipetune.scaffold import create

    scaffold = create(name, directory)
    get_state(ctx).written.append(str(scaffold.root))
    click.echo(f"Created {scaffold.root} ({len(scaffold.files)} files):")
    for path in scaffold.files:
        click.echo(f"  {path.relative_to(scaffold.root)}")
    click.echo(f"Next: cd {scaffold.root} && pip install -e . && pytest && pipetune plugins")
