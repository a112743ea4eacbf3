"""`edgecloud alarm ...` and `edgecloud event ...`: the site's fault management view.

Alarms are raised and cleared by the controller (edgecloud.fm); events are its log of
raise/clear and other notable happenings. Commands call the client SDK (via
cli/context.py) and print with cli/output.py; cli/main.py registers both groups.
"""

from __future__ import annotations

import click

from edgecloud.cli.context import pass_client
from edgecloud.cli.output import emit, json_option
from edgecloud.client import Client

ALARM_COLUMNS = ("id", "alarm_id", "severity", "entity", "title", "state", "raised_at")
EVENT_COLUMNS = ("at", "kind", "severity", "entity", "message", "alarm_id")


@click.group()
def alarm() -> None:
    """Alarms (active by default)."""


@alarm.command("list")
@click.option("--all", "all_", is_flag=True, help="Include cleared alarms.")
@json_option
@pass_client
def list_alarms(client: Client, all_: bool, as_json: bool) -> None:
    """List active alarms (with --all, cleared ones too)."""
    emit(client.list_alarms(all=all_), as_json, ALARM_COLUMNS)


@alarm.command()
@click.argument("alarm_id", metavar="ID")
@json_option
@pass_client
def show(client: Client, alarm_id: str, as_json: bool) -> None:
    """Show one alarm, with its reason and proposed action."""
    emit(client.get_alarm(alarm_id), as_json)


@click.group()
def event() -> None:
    """The event log."""


@event.command("list")
@click.option("--limit", type=click.IntRange(min=1), help="Show at most N events.")
@json_option
@pass_client
def list_events(client: Client, limit: int | None, as_json: bool) -> None:
    """List recent events."""
    emit(client.list_events(limit), as_json, EVENT_COLUMNS)


def register(cli: click.Group) -> None:
    cli.add_command(alarm)
    cli.add_command(event)
