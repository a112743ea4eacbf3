"""`edgecloud network ...`: the provider networks VNF vNICs attach to (VLAN or flat).

Commands call the client SDK (edgecloud.client.Client, via cli/context.py) and print with
cli/output.py; registered on `edgecloud` by cli/main.py through `register`.
"""

from __future__ import annotations

import click

from edgecloud.cli.context import pass_client
from edgecloud.cli.output import emit, json_option
from edgecloud.client import Client

COLUMNS = ("name", "kind", "segmentation_id", "cidr", "created_at")


@click.group()
def network() -> None:
    """Provider networks."""


@network.command()
@click.argument("name")
@click.option("--kind", type=click.Choice(["vlan", "flat"]), default="vlan", show_default=True)
@click.option(
    "--vlan",
    type=click.IntRange(1, 2999),
    help="VLAN id (default: chosen by the site; 3000-4094 carry chain hops).",
)
@click.option("--cidr", help="Subnet of the network, for information, e.g. 10.0.1.0/24.")
@json_option
@pass_client
def create(
    client: Client, name: str, kind: str, vlan: int | None, cidr: str | None, as_json: bool
) -> None:
    """Create network NAME."""
    emit(client.create_network(name, kind, segmentation_id=vlan, cidr=cidr), as_json)


@network.command("list")
@json_option
@pass_client
def list_(client: Client, as_json: bool) -> None:
    """List networks."""
    emit(client.list_networks(), as_json, COLUMNS)


@network.command()
@click.argument("name")
@json_option
@pass_client
def show(client: Client, name: str, as_json: bool) -> None:
    """Show one network."""
    emit(client.get_network(name), as_json)


@network.command()
@click.argument("name")
@pass_client
def delete(client: Client, name: str) -> None:
    """Delete network NAME."""
    client.delete_network(name)
    click.echo(f"network {name} deleted")


def register(cli: click.Group) -> None:
    cli.add_command(network)
