"""The `edgecloud` command: global options, command registration, and error handling.

`main` is the console script. Each command module in COMMAND_MODULES defines its click
groups and a `register(cli: click.Group) -> None` that adds them to `main`; a module not
written yet is skipped. Commands get their Client through cli/context.py and print through
cli/output.py. Errors are turned into output here and nowhere else: an EdgecloudError
(every ClientError of edgecloud.client included) prints "error: <sentence>" on stderr and
exits 1 (2 for InvalidInput); Ctrl-C exits 130; a traceback only with --debug.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, NoReturn

import click

from edgecloud import __version__
from edgecloud.cli.context import CliState, get_state
from edgecloud.errors import EdgecloudError, InvalidInput

COMMAND_MODULES = (
    "edgecloud.cli.ca",
    "edgecloud.cli.hosts",
    "edgecloud.cli.migrations",
    "edgecloud.cli.networks",
    "edgecloud.cli.subnets",
    "edgecloud.cli.keypairs",
    "edgecloud.cli.flavors",
    "edgecloud.cli.images",
    "edgecloud.cli.vnfs",
    "edgecloud.cli.stacks",
    "edgecloud.cli.chains",
    "edgecloud.cli.alarms",
    "edgecloud.cli.tokens",
    "edgecloud.cli.audit",
    "edgecloud.cli.site",
    "edgecloud.cli.software",
    "edgecloud.cli.patches",
    "edgecloud.cli.upgrades",
    "edgecloud.cli.daemons",
    "edgecloud.cli.sim",
    "edgecloud.cli.probe",
    "edgecloud.cli.firewall",
    "edgecloud.cli.releases",
    "edgecloud.cli.central",
)
EXIT_INTERRUPTED = 130


class CommandFailed(click.ClickException):
    """An EdgecloudError on its way out: one line on stderr and exit code 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class BadInput(CommandFailed):
    """An InvalidInput on its way out: exit code 2, like a usage error."""

    exit_code = 2


class EdgecloudGroup(click.Group):
    """The root group; its invoke() is the one place where errors become exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgecloudError as exc:
            if get_state(ctx).debug:
                raise
            failed = BadInput if isinstance(exc, InvalidInput) else CommandFailed
            raise failed(str(exc)) from exc
        except KeyboardInterrupt:
            _interrupted(ctx)


@click.group(cls=EdgecloudGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="EDGECLOUD_CONFIG",
    help="Client config (controller URL, token, CA) [default: ~/.config/edgecloud/config.json].",
)
@click.option("--debug", is_flag=True, help="Show tracebacks and HTTP requests.")
@click.version_option(__version__, prog_name="edgecloud")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, debug: bool) -> None:
    """Run VNFs as VMs on an edge site."""
    state = ctx.ensure_object(CliState)
    state.config_path = config_path
    state.debug = debug
    if debug:
        logging.basicConfig(format="%(name)s: %(message)s")
        logging.getLogger("httpx").setLevel(logging.INFO)


def register_commands(cli: click.Group, modules: Iterable[str] = COMMAND_MODULES) -> None:
    """Import each module and call its register(cli); skip only modules that do not exist."""
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the module exists but something it imports is missing
                raise
            continue
        module.register(cli)


def _interrupted(ctx: click.Context) -> NoReturn:
    click.echo(err=True)
    ctx.exit(EXIT_INTERRUPTED)


register_commands(main)
