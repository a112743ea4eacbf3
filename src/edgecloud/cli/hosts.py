"""`edgecloud host ...`: enroll compute hosts and change their scheduling state.

Commands call the client SDK (edgecloud.client.Client, via cli/context.py) and print with
cli/output.py. `host add` and `host token` print the one-time join token and the
`edgecloud agent --join TOKEN` command to run on the node (the agent is cli/daemons.py).
"""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.text import Text

from edgecloud.cli.context import pass_client
from edgecloud.cli.output import emit, json_option, short_time, wait_options
from edgecloud.client import Client
from edgecloud.errors import ClientError

COLUMNS = (
    "name",
    "state",
    "availability",
    "vcpus",
    "memory_mib",
    "disk_gib",
    "hypervisor",
    "address",
    "release",
    "protocol",
    "last_seen_at",
)


@click.group()
def host() -> None:
    """Compute hosts of the site."""


@host.command("list")
@json_option
@pass_client
def list_(client: Client, as_json: bool) -> None:
    """List hosts."""
    emit(client.list_hosts(), as_json, COLUMNS)


@host.command()
@click.argument("name")
@json_option
@pass_client
def show(client: Client, name: str, as_json: bool) -> None:
    """Show one host."""
    emit(client.get_host(name), as_json)


@host.command()
@click.argument("name")
@json_option
@pass_client
def add(client: Client, name: str, as_json: bool) -> None:
    """Add host NAME and print the one-time token its agent joins with."""
    enrollment = client.add_host(name)
    if as_json:
        emit(enrollment, as_json)
    else:
        show_join_token(enrollment, f"host {name} added")


@host.command()
@click.argument("name")
@json_option
@pass_client
def token(client: Client, name: str, as_json: bool) -> None:
    """Issue a new one-time join token for NAME (to re-enroll it); its current certificate
    stops working and its live session is closed at once."""
    enrollment = client.new_join_token(name)
    if as_json:
        emit(enrollment, as_json)
    else:
        show_join_token(enrollment, f"new join token for host {name}")


def state_command(state: str, verb: str, summary: str) -> click.Command:
    """`host enable|disable NAME`: one PATCH of the host's state."""

    @click.argument("name")
    @pass_client
    def change_state(client: Client, name: str) -> None:
        client.update_host(name, state)
        click.echo(f"host {name} is now {state}")

    change_state.__doc__ = summary
    return click.command(verb)(change_state)


@host.command()
@click.argument("name")
@wait_options(1800, "Wait until it is empty.", wait=True)
@pass_client
def lock(client: Client, name: str, wait: bool, timeout: float) -> None:
    """Lock NAME for maintenance: no new VNFs, and every VNF on it migrated live to the other
    hosts (refused, with the reason, when they cannot take them)."""
    host = client.lock_host(name)
    total = (host.get("maintenance") or {}).get("total", 0)
    click.echo(f"host {name} is locked; moving {total} VNF(s) away", err=True)
    if wait:
        host = client.wait_for_lock(name, timeout, on_progress=LockProgress(name))
    m = host.get("maintenance") or {}
    if m.get("status") == "failed":
        raise ClientError(f"host {name} is locked but not empty: {m.get('error')}")
    if m.get("status") == "done":
        click.echo(f"host {name} is locked and empty ({len(m.get('moved', []))} VNF(s) moved)")
    else:
        click.echo(f"host {name} is locked; evacuation {m.get('status')}")


@host.command()
@click.argument("name")
@pass_client
def unlock(client: Client, name: str) -> None:
    """Return NAME to service after maintenance."""
    client.unlock_host(name)
    click.echo(f"host {name} is unlocked")


class LockProgress:
    """on_progress for Client.wait_for_lock: a stderr line each time a VNF has moved."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.last = ""

    def __call__(self, host: dict[str, Any]) -> None:
        m = host.get("maintenance") or {}
        current = (m.get("current") or {}).get("vnf")
        line = f"host {self.name}: {len(m.get('moved', []))}/{m.get('total', 0)} moved"
        line += f", moving {current}" if current else ""
        if line != self.last:
            click.echo(line, err=True)
            self.last = line


@host.command()
@click.argument("name")
@pass_client
def delete(client: Client, name: str) -> None:
    """Delete host NAME."""
    client.delete_host(name)
    click.echo(f"host {name} deleted")


def show_join_token(enrollment: dict[str, Any], headline: str) -> None:
    """The token, bold and alone on its line, then the command to run on the node."""
    name = enrollment["host"]["name"]
    join_token = enrollment["join_token"]
    expires = short_time(enrollment["expires_at"])
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"{headline}; its one-time join token (expires {expires}) is:\n", markup=False)
    console.print(Text(f"    {join_token}\n", style="bold"))
    console.print(f"on {name}, run:\n\n    edgecloud agent --join {join_token}\n", markup=False)


host.add_command(state_command("enabled", "enable", "Let the scheduler place VNFs on NAME."))
host.add_command(state_command("disabled", "disable", "Place no new VNFs on NAME."))


def register(cli: click.Group) -> None:
    cli.add_command(host)
