"""`edgecloud upgrade`: `check` says, before anything changes, whether the site can upgrade to
a release and why not (issue 12; the checks are upgrades/readiness.py's); `start`, `show`,
`abort` and `complete` run the orchestrated upgrade (services/upgrade_runs.py): controllers
first, then hosts in batches, every VNF running on.

Commands call the client SDK (cli/context.py) and print with cli/output.py.
"""

from __future__ import annotations

from typing import Any

import click

from edgecloud import __version__
from edgecloud.cli.context import get_state, pass_client
from edgecloud.cli.output import emit, json_option, wait_options
from edgecloud.client import Client
from edgecloud.errors import ClientError
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


STEP_COLUMNS = ("kind", "name", "batch", "state", "error", "updated_at")


@upgrade.command("start")
@click.option("--to", "to", required=True, callback=_release, help="The release to upgrade to.")
@click.option(
    "--max-parallel",
    type=click.IntRange(1, 1000),
    default=1,
    show_default=True,
    help="Hosts upgraded at once.",
)
@click.option(
    "--stop-on-alarm", is_flag=True, help="Stop when a critical or major alarm is raised."
)
@wait_options(timeout=1800, wait_help="Wait until it is activated (or stops).", wait=True)
@json_option
@pass_client
def start(
    client: Client,
    to: str,
    max_parallel: int,
    stop_on_alarm: bool,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Upgrade the site to a release whose package is uploaded (`software upload`): its
    controllers one by one (the leader last), then its hosts in batches, VNFs running on.
    Refused, naming why, when `upgrade check` fails. Starting a failed upgrade again resumes
    it."""
    found = client.start_upgrade(to, max_parallel, stop_on_alarm)
    if not wait:
        emit(found, as_json) if as_json else click.echo(_summary(found))
        return
    _settle(client, timeout, as_json)


@upgrade.command("show")
@click.option("--watch", is_flag=True, help="Follow it until it rests.")
@json_option
@pass_client
def show(client: Client, watch: bool, as_json: bool) -> None:
    """The newest upgrade: each controller's and host's step, and its state."""
    if watch:
        _settle(client, 3600, as_json)
        return
    found = client.get_upgrade()
    if as_json:
        emit(found, True)
        return
    emit(found["steps"], False, STEP_COLUMNS)
    click.echo(_summary(found))


@upgrade.command("abort")
@wait_options(timeout=900, wait_help="Wait until it is rolled back.", wait=True)
@json_option
@pass_client
def abort(client: Client, wait: bool, timeout: float, as_json: bool) -> None:
    """Roll the upgrade back: hosts, then controllers, to the release installed with them."""
    found = client.abort_upgrade()
    if not wait:
        emit(found, as_json) if as_json else click.echo(_summary(found))
        return
    _settle(client, timeout, as_json)


@upgrade.command("complete")
@json_option
@pass_client
def complete(client: Client, as_json: bool) -> None:
    """End an activated upgrade; it cannot be rolled back after this."""
    found = client.complete_upgrade()
    emit(found, as_json) if as_json else click.echo(_summary(found))


def _settle(client: Client, timeout: float, as_json: bool) -> None:
    """Follow the upgrade with a line per change on stderr; fail if it stopped."""
    found = client.wait_for_upgrade(timeout, on_progress=_Progress())
    if as_json:
        emit(found, True)
    else:
        emit(found["steps"], False, STEP_COLUMNS)
        click.echo(_summary(found))
    if found["state"] == "failed":
        raise ClientError(f"the upgrade stopped: {found['error']}")


def _summary(found: dict[str, Any]) -> str:
    line = (
        f"upgrade {found['from_release']} -> {found['to_release']}: {found['state']} "
        f"({found['done']}/{found['total']} steps)"
    )
    hint = {
        "activated": "; every part runs it: `edgecloud upgrade complete` (or abort)",
        "failed": f"; {found['error']}",
    }.get(found["state"], "")
    return line + hint


class _Progress:
    """One stderr line each time the upgrade's state, or a step's, changes."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def __call__(self, found: dict[str, Any]) -> None:
        for key, state in [("upgrade", found["state"])] + [
            (f"{st['kind']} {st['name']}", st["state"]) for st in found["steps"]
        ]:
            if self.seen.get(key) != state:
                self.seen[key] = state
                done = f" [{found['done']}/{found['total']}]" if key == "upgrade" else ""
                click.echo(f"{key}: {state}{done}", err=True)


def register(cli: click.Group) -> None:
    cli.add_command(upgrade)
