"""`edgecloud token ...`: API tokens with a role, an optional customer scope and expiry.

`token create` and `token rotate` print the secret once (the site keeps only its hash); the
other commands never show it. Commands call the client SDK (client/api.py) and print with
cli/output.py; registered by cli/main.py. The roles and scopes are docs/security.md's.
"""

from __future__ import annotations

import re

import click

from edgecloud.cli.context import pass_client
from edgecloud.cli.output import emit, json_option
from edgecloud.client import Client
from edgecloud.errors import InvalidInput

COLUMNS = ("name", "role", "customer", "state", "expires_at", "created_at", "rotated_at")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


def parse_duration(text: str, option: str = "--expires-in") -> int:
    """Seconds in ``30d``, ``12h``, ``45m``, ``3600s`` or ``2w``; InvalidInput otherwise."""
    found = DURATION.match(text)
    if found is None or int(found.group(1)) == 0:
        raise InvalidInput(
            f"{option} must be a positive number with a unit s, m, h, d or w, like 30d "
            f"(got {text!r})",
            field=option,
        )
    return int(found.group(1)) * UNITS[found.group(2)]


@click.group()
def token() -> None:
    """API tokens: who may use the site's API, with which role and scope."""


@token.command()
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(("admin", "operator", "reader")),
    required=True,
    help="reader: read only; operator: + stacks, chains, VNFs, networks; admin: everything.",
)
@click.option("--customer", help="Scope: only this customer's stacks, chains and VNFs.")
@click.option("--expires-in", metavar="DURATION", help="Like 30d, 12h, 2w [default: never].")
@json_option
@pass_client
def create(
    client: Client,
    name: str,
    role: str,
    customer: str | None,
    expires_in: str | None,
    as_json: bool,
) -> None:
    """Create token NAME and print its secret (shown this once)."""
    seconds = parse_duration(expires_in) if expires_in is not None else None
    created = client.create_token(name, role, customer, seconds)
    _with_secret(created, as_json)


@token.command("list")
@json_option
@pass_client
def list_(client: Client, as_json: bool) -> None:
    """List tokens (never their secrets), revoked and expired ones included."""
    emit(client.list_tokens(), as_json, COLUMNS)


@token.command()
@click.argument("name")
@json_option
@pass_client
def show(client: Client, name: str, as_json: bool) -> None:
    """Show one token."""
    emit(client.get_token(name), as_json)


@token.command()
@click.argument("name")
@click.option("--expires-in", metavar="DURATION", help="A new lifetime from now [default: keep].")
@json_option
@pass_client
def rotate(client: Client, name: str, expires_in: str | None, as_json: bool) -> None:
    """Give token NAME a new secret (printed once); the old secret stops working now."""
    seconds = parse_duration(expires_in) if expires_in is not None else None
    _with_secret(client.rotate_token(name, seconds), as_json)


@token.command()
@click.argument("name")
@pass_client
def revoke(client: Client, name: str) -> None:
    """Revoke token NAME: refused from the next request on."""
    client.revoke_token(name)
    click.echo(f"token {name} revoked")


def _with_secret(answer: dict[str, object], as_json: bool) -> None:
    if as_json:
        emit(answer, True)
        return
    secret = answer.pop("secret")
    emit(answer, False)
    click.echo(f"secret (shown once, store it now): {secret}")


def register(cli: click.Group) -> None:
    cli.add_command(token)
