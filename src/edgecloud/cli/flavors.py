"""`edgecloud flavor ...`: VM sizes (vCPUs, memory, disk) that VNFs are created with.

Commands call the client SDK (edgecloud.client.Client, via cli/context.py) and print with
cli/output.py; registered on `edgecloud` by cli/main.py through `register`.
"""

from __future__ import annotations

import click

from edgecloud.cli.context import pass_client
from edgecloud.cli.output import emit, json_option
from edgecloud.client import Client

COLUMNS = ("name", "vcpus", "memory_mib", "disk_gib", "created_at")


@click.group()
def flavor() -> None:
    """VM sizes."""


@flavor.command()
@click.argument("name")
@click.option("--vcpus", type=click.IntRange(min=1), required=True, help="Virtual CPUs.")
@click.option("--ram", type=click.IntRange(min=1), required=True, help="Memory in MiB.")
@click.option("--disk", type=click.IntRange(min=0), help="Disk in GiB [default: 0].")
@json_option
@pass_client
def create(
    client: Client, name: str, vcpus: int, ram: int, disk: int | None, as_json: bool
) -> None:
    """Create flavor NAME."""
    emit(client.create_flavor(name, vcpus, ram, disk), as_json)


@flavor.command("list")
@json_option
@pass_client
def list_(client: Client, as_json: bool) -> None:
    """List flavors."""
    emit(client.list_flavors(), as_json, COLUMNS)


@flavor.command()
@click.argument("name")
@json_option
@pass_client
def show(client: Client, name: str, as_json: bool) -> None:
    """Show one flavor."""
    emit(client.get_flavor(name), as_json)


@flavor.command()
@click.argument("name")
@pass_client
def delete(client: Client, name: str) -> None:
    """Delete flavor NAME."""
    client.delete_flavor(name)
    click.echo(f"flavor {name} deleted")


def register(cli: click.Group) -> None:
    cli.add_command(flavor)
