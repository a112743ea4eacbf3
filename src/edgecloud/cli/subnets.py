"""`edgecloud subnet ...`: IPv4 and IPv6 subnets of networks (addresses for vNICs).

Commands call the client SDK (edgecloud.client.Client, via cli/context.py) and print with
cli/output.py; registered on `edgecloud` by cli/main.py through `register`. The server checks
the rules (services/addressing.py); this module only turns options into the request.
"""

from __future__ import annotations

from typing import Any

import click

from edgecloud.cli.context import pass_client
from edgecloud.cli.output import emit, json_option
from edgecloud.client import Client

COLUMNS = ("name", "network", "cidr", "gateway_ip", "enable_dhcp", "dhcp_address")


class PairParam(click.ParamType):
    """A LEFT<sep>RIGHT option value split into the two named fields."""

    def __init__(self, sep: str, left: str, right: str, example: str) -> None:
        self.sep, self.left, self.right, self.example = sep, left, right, example
        self.name = f"{left.upper()}{sep}{right.upper()}"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> dict[str, str]:
        if isinstance(value, dict):
            return value
        left, sep, right = str(value).partition(self.sep)
        if not sep or not left.strip() or not right.strip():
            self.fail(f"'{value}' is not {self.name}, e.g. {self.example}", param, ctx)
        return {self.left: left.strip(), self.right: right.strip()}


@click.group()
def subnet() -> None:
    """Subnets of networks (IPv4 and IPv6)."""


@subnet.command()
@click.argument("name")
@click.option("--network", required=True, help="The network the subnet belongs to.")
@click.option("--cidr", required=True, help="e.g. 10.0.0.0/24 or 2001:db8::/64.")
@click.option("--ip-version", type=click.Choice(["4", "6"]), default="4", show_default=True)
@click.option("--gateway", "gateway", metavar="IP", help="[default: the first usable address]")
@click.option("--no-gateway", is_flag=True, help="The subnet has no gateway.")
@click.option(
    "--pool",
    "pools",
    multiple=True,
    type=PairParam("-", "start", "end", "10.0.0.10-10.0.0.99"),
    help="START-END allocation pool; repeat [default: the whole subnet less the gateway].",
)
@click.option("--dns", "dns", multiple=True, metavar="IP", help="DNS server; repeat.")
@click.option(
    "--route",
    "routes",
    multiple=True,
    type=PairParam("=", "destination", "nexthop", "192.168.0.0/16=10.0.0.254"),
    help="DEST=NEXTHOP host route; repeat.",
)
@click.option("--no-dhcp", is_flag=True, help="Do not serve DHCP on this subnet.")
@json_option
@pass_client
def create(
    client: Client,
    name: str,
    network: str,
    cidr: str,
    ip_version: str,
    gateway: str | None,
    no_gateway: bool,
    pools: tuple[dict[str, str], ...],
    dns: tuple[str, ...],
    routes: tuple[dict[str, str], ...],
    no_dhcp: bool,
    as_json: bool,
) -> None:
    """Create subnet NAME on a network."""
    if gateway and no_gateway:
        raise click.UsageError("give --gateway or --no-gateway, not both")
    created = client.create_subnet(
        name,
        network,
        cidr,
        ip_version=int(ip_version),
        gateway_ip=None if no_gateway else (gateway or "auto"),
        allocation_pools=list(pools) if pools else None,
        dns_nameservers=dns,
        host_routes=routes,
        enable_dhcp=not no_dhcp,
    )
    emit(created, as_json)


@subnet.command("list")
@click.option("--network", help="Only this network's subnets.")
@json_option
@pass_client
def list_(client: Client, network: str | None, as_json: bool) -> None:
    """List subnets."""
    emit(client.list_subnets(network), as_json, COLUMNS)


@subnet.command()
@click.argument("name")
@json_option
@pass_client
def show(client: Client, name: str, as_json: bool) -> None:
    """Show one subnet."""
    emit(client.get_subnet(name), as_json)


@subnet.command()
@click.argument("name")
@pass_client
def delete(client: Client, name: str) -> None:
    """Delete subnet NAME (refused while a vNIC has an address in it)."""
    client.delete_subnet(name)
    click.echo(f"subnet {name} deleted")


def register(cli: click.Group) -> None:
    cli.add_command(subnet)
