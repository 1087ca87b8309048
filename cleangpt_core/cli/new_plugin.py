"""``cleangpt new-plugin``: write a complete, installable plugin project to start from."""

from __future__ import annotations

from pathlib import Path

import click

from cleangpt_core.scaffold.project import SCAFFOLD_KINDS


@click.command("new-plugin")
@click.argument("name")
@click.option(
    "--kind", type=click.Choice(SCAFFOLD_KINDS), required=True, help="The kind of component the plugin provides."
)
@click.option(
    "--dir",
    "parent",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder in which the project folder cleangpt-NAME is created.",
)
def new_plugin(name: str, kind: str, parent: Path) -> None:
    """Write the plugin project cleangpt-NAME: pyproject with the entry point, config schema, a working
    implementation, README and tests that run cleanGPT's contract checks.

    NAME is lowercase letters and digits with '-' or '_' between words, e.g. 'typical' for a sampler.
    An existing folder is never overwritten.
    """
    from cleangpt_core.scaffold import create_plugin_project

    target = create_plugin_project(name, kind, parent)
    click.echo(f"Wrote the {kind} plugin project {target}:")
    for path in sorted(p for p in target.rglob("*") if p.is_file()):
        click.echo(f"  {path.relative_to(target)}")
    click.echo("Next:")
    click.echo(f"  cd {target}")
    click.echo('  python -m pip install -e ".[test]"')
    click.echo("  python -m pytest")
