"""`edgecloud upgrade`: `check` says, before anything changes, whether the site can upgrade to
a release and why not (issue 12; the checks are upgrades/readiness.py's).

Commands call the client SDK (cli/context.py) and print with cli/output.py.
"""

from __future__ import annotations

from typing import Any

import click

from edgecloud import __version__
from edgecloud.cli.context import get_state
from edgecloud.cli.output import emit, json_option
from edgecloud.upgrades import releases

NOT_READY = 3  # exit status of `upgrade check` when a check failed (1: error, 2: bad input)


def _release(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return str(releases.parse(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group("upgrade")
def upgrade() -> None:
    """Upgrade the site to another release."""


@upgrade.command("check")
@click.option(
    "--to",
    "to",
    default=__version__,
    callback=_release,
    show_default="this CLI's release",
    help="The release to upgrade to.",
)
@click.option("--reboot", is_flag=True, help="The release reboots hosts (each emptied first).")
@click.option(
    "--max-parallel",
    type=click.IntRange(1, 1000),
    default=1,
    show_default=True,
    help="Hosts upgraded at once (the plan's batches).",
)
@json_option
@click.pass_context
def check(ctx: click.Context, to: str, reboot: bool, max_parallel: int, as_json: bool) -> None:
    """Whether the site can upgrade to a release, and why not, and the order it would take;
    nothing is changed. Exit status 0 when it can (warnings included), 3 when a check
    failed."""
    state = get_state(ctx)
    with state.client_factory(state.config_path) as client:
        found = client.upgrade_check(to, reboot, max_parallel)
    if as_json:
        emit(found, as_json)
    else:
        emit(found["checks"], as_json, ("name", "result", "detail"))
        _echo_plan(found["plan"])
        verdict = {
            "ok": "can upgrade",
            "warning": "can upgrade (see the warnings)",
            "failure": "cannot upgrade",
        }[found["result"]]
        click.echo(f"{found['current']} -> {found['to']}: {verdict}")
    if found["result"] == "failure":
        ctx.exit(NOT_READY)


def _echo_plan(plan: dict[str, list[Any]]) -> None:
    click.echo(f"order: controllers {', then '.join(plan['controllers']) or 'none'} (leader last)")
    for number, batch in enumerate(plan["batches"], 1):
        click.echo(f"  hosts batch {number}: {', '.join(batch)}")


def register(cli: click.Group) -> None:
    cli.add_command(upgrade)
