"""`edgecloud audit list`: the site's audit log (mutating API calls and enrollments), newest
first. Calls the client SDK (client/api.py); registered by cli/main.py."""

from __future__ import annotations

import datetime as dt

import click

from edgecloud.cli.context import pass_client
from edgecloud.cli.output import emit, json_option
from edgecloud.cli.tokens import DURATION, parse_duration
from edgecloud.client import Client
from edgecloud.errors import InvalidInput

COLUMNS = ("at", "actor", "action", "target", "status", "client")


def since_value(text: str) -> str:
    """An RFC 3339 date-time for --since: a duration ago (``1h``) or a date-time with a zone."""
    if DURATION.match(text):
        ago = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=parse_duration(text, "--since"))
        return ago.isoformat()
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise InvalidInput(
            f"--since must be a duration like 1h or a date-time with a time zone like "
            f"2026-11-30T19:00:00Z (got {text!r})",
            field="--since",
        )
    return parsed.isoformat()


@click.group()
def audit() -> None:
    """The audit log: who changed what, when, from where."""


@audit.command("list")
@click.option("--since", help="Like 1h, 2d, or 2026-11-30T19:00:00Z.")
@click.option("--actor", help="Only this token's calls.")
@click.option("--target", help="Only paths starting so, like /v1/chains/c1.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@json_option
@pass_client
def list_(
    client: Client,
    since: str | None,
    actor: str | None,
    target: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List audit records, newest first."""
    records = client.list_audit(since_value(since) if since else None, actor, target, limit)
    emit(records, as_json, COLUMNS)


def register(cli: click.Group) -> None:
    cli.add_command(audit)
