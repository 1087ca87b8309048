"""The ``cleangpt`` command group: commands come from plugins (the core's own included) and load lazily.

Only each command's name and summary are read at start-up; its module is imported when it runs, so
``cleangpt --help`` and ``cleangpt list-components`` never import torch. Errors a user can cause become one
line on stderr and exit status 1; ``CLEANGPT_DEBUG=1`` shows the traceback of an unexpected one.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click
from pydantic import ValidationError

from cleangpt_core import __version__
from cleangpt_core.config.base import format_validation_error
from cleangpt_core.errors import CleanGPTError
from cleangpt_core.isolation import describe_error, plugin_code
from cleangpt_core.plugin_api import PLUGIN_API_VERSION, CommandSpec
from cleangpt_core.registry import get_registry


def _command_specs() -> dict[str, CommandSpec]:
    return {spec.name: spec for spec in get_registry().commands()}


class LazyGroup(click.Group):
    """A click group whose commands are `CommandSpec`s, imported only when invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_command_specs()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = _command_specs().get(cmd_name)
        if spec is None:
            return super().get_command(ctx, cmd_name)
        with plugin_code() as outcome:  # a plugin's module may even call sys.exit() at import
            command = spec.load()
        if outcome.error is not None:
            raise click.ClickException(
                f"command {cmd_name!r} from {spec.distribution} {spec.version} failed to load: "
                f"{describe_error(outcome.error)}"
            ) from outcome.error
        if not isinstance(command, click.Command):
            raise click.ClickException(f"command {cmd_name!r} from {spec.distribution} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        specs = _command_specs()
        rows = [(name, specs[name].summary) for name in sorted(specs)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except CleanGPTError as error:
            raise click.ClickException(" ".join(str(error).split())) from error
        except ValidationError as error:
            raise click.ClickException(format_validation_error(error)) from error
        except OSError as error:  # a missing file, a full disk: the user's to fix, not a bug
            if os.environ.get("CLEANGPT_DEBUG"):
                raise
            raise click.ClickException(f"{type(error).__name__}: {' '.join(str(error).split())}") from error


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    registry = get_registry()
    click.echo(f"cleangpt-core {__version__} (plugin API {PLUGIN_API_VERSION}, Python {sys.version.split()[0]})")
    third_party = [p for p in registry.plugins if p.distribution != "cleangpt-core"]
    for plugin in third_party:
        click.echo(f"  {plugin.distribution} {plugin.version} (plugin {plugin.name!r})")
    for failure in registry.failures:
        click.echo(f"  {failure.describe()}")
    ctx.exit()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the versions of cleangpt-core and every plugin, and exit.",
)
def cli() -> None:
    """cleanGPT: train, sample and compare GPT-style language models built from plugins."""


def main() -> None:
    """Console-script entry point: run the CLI, turning unexpected errors into one line."""
    try:
        cli.main(prog_name="cleangpt")
    except Exception as error:  # the last net: a user never sees a traceback unless they ask for one
        if os.environ.get("CLEANGPT_DEBUG"):
            raise
        click.echo(
            f"Error: unexpected {type(error).__name__}: {' '.join(str(error).split())} "
            "(set CLEANGPT_DEBUG=1 for the traceback)",
            err=True,
        )
        sys.exit(1)
