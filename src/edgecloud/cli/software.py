"""`edgecloud software ...`: releases and patches of edgecloud uploaded to the site (upload,
list, show, delete), what `upgrade` deploys (issue 12).

A package is the wheel of an edgecloud release, e.g. the one `pip wheel --no-deps .` makes in
a checkout; the controller reads its release from the wheel, keeps it in the image store and
signs its manifest with the site's software-signing key, which every node checks.
"""

from __future__ import annotations

import os

import click

from edgecloud.cli.context import pass_client
from edgecloud.cli.output import emit, json_option, transfer_progress
from edgecloud.client import Client

COLUMNS = ("release", "kind", "applies_to", "reboot_required", "size", "sha256", "created_at")


@click.group()
def software() -> None:
    """Releases and patches of edgecloud the site can upgrade to."""


@software.command()
@click.argument("wheel", type=click.Path(dir_okay=False, exists=True))
@click.option(
    "--reboot-required",
    is_flag=True,
    help="Its hosts must reboot to take it (each is emptied by live migration first).",
)
@json_option
@pass_client
def upload(client: Client, wheel: str, reboot_required: bool, as_json: bool) -> None:
    """Upload WHEEL (edgecloud-RELEASE-py3-none-any.whl): the controller reads its release,
    keeps it and signs it."""
    if as_json:
        emit(client.upload_software(wheel, reboot_required=reboot_required), as_json)
        return
    with transfer_progress(os.path.basename(wheel)) as progress:
        package = client.upload_software(
            wheel, reboot_required=reboot_required, on_progress=progress
        )
    click.echo(
        f"software {package['release']} uploaded ({package['kind']}, {package['size']} bytes,"
        f" signed)",
        err=True,
    )
    emit(package, as_json)


@software.command("list")
@json_option
@pass_client
def list_(client: Client, as_json: bool) -> None:
    """List software packages."""
    emit(client.list_software(), as_json, COLUMNS)


@software.command()
@click.argument("release")
@json_option
@pass_client
def show(client: Client, release: str, as_json: bool) -> None:
    """Show the package of RELEASE, with its signed manifest."""
    emit(client.get_software(release), as_json)


@software.command()
@click.argument("release")
@pass_client
def delete(client: Client, release: str) -> None:
    """Delete the package of RELEASE."""
    client.delete_software(release)
    click.echo(f"software {release} deleted")


def register(cli: click.Group) -> None:
    cli.add_command(software)
