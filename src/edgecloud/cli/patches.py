"""`edgecloud patch upload|apply|remove|list`: in-service fixes (issue 12), StarlingX's words
for what the software and upgrade commands do with a patch release.

A patch is the signed package of a release `MAJOR.MINOR.PATCH` with PATCH > 0 (upgrades/
packages.py): `patch upload` is `software upload` that refuses anything but a patch; `patch
apply` is `upgrade start --to` it (the same checks and orchestration: controllers, then hosts
in batches, in service unless it was uploaded `--reboot-required`); `patch remove` rolls an
applied patch back while its upgrade is not completed (`upgrade abort`); after `upgrade
complete` a patch stays (a later patch replaces it). `patch list` lists the patches uploaded.
"""

from __future__ import annotations

import os

import click

from edgecloud.cli.context import pass_client
from edgecloud.cli.output import emit, json_option, transfer_progress
from edgecloud.cli.software import COLUMNS
from edgecloud.client import Client
from edgecloud.errors import ClientError, EdgecloudError
from edgecloud.upgrades import packages


@click.group()
def patch() -> None:
    """In-service fixes: patch releases of edgecloud."""


@patch.command()
@click.argument("wheel", type=click.Path(dir_okay=False, exists=True))
@click.option("--reboot-required", is_flag=True, help="Its hosts must reboot to take it.")
@json_option
@pass_client
def upload(client: Client, wheel: str, reboot_required: bool, as_json: bool) -> None:
    """Upload WHEEL, the package of a patch release (MAJOR.MINOR.PATCH, PATCH > 0)."""
    parts = os.path.basename(wheel).split("-")
    try:  # the wheel's name says its version (the controller reads METADATA as well)
        said = packages.facts_of(parts[1]) if len(parts) > 2 else None
    except EdgecloudError:
        said = None
    if said is not None and said.kind != "patch":
        raise ClientError(
            f"{said.release} is a release, not a patch: upload it with "
            "`edgecloud software upload` and run `edgecloud upgrade start`"
        )
    with transfer_progress(wheel) as progress:
        package = client.upload_software(
            wheel, reboot_required=reboot_required, on_progress=None if as_json else progress
        )
    if package["kind"] != "patch":
        client.delete_software(package["release"])
        raise ClientError(
            f"{package['release']} is a release, not a patch: upload it with "
            "`edgecloud software upload` and run `edgecloud upgrade start`"
        )
    emit(package, as_json)


@patch.command("list")
@json_option
@pass_client
def list_(client: Client, as_json: bool) -> None:
    """List the patches uploaded."""
    emit([p for p in client.list_software() if p["kind"] == "patch"], as_json, COLUMNS)


@patch.command()
@click.argument("release")
@click.option("--max-parallel", type=click.IntRange(1, 1000), default=1, show_default=True)
@click.option(
    "--stop-on-alarm", is_flag=True, help="Stop when a critical or major alarm is raised."
)
@json_option
@pass_client
def apply(
    client: Client, release: str, max_parallel: int, stop_on_alarm: bool, as_json: bool
) -> None:
    """Apply patch RELEASE across the site (`upgrade start --to RELEASE`), in service unless it
    reboots hosts; follow it with `edgecloud upgrade show --watch`."""
    package = client.get_software(release)
    if package["kind"] != "patch":
        raise ClientError(f"{release} is a release, not a patch: use `edgecloud upgrade start`")
    found = client.start_upgrade(release, max_parallel, stop_on_alarm)
    if as_json:
        emit(found, True)
    else:
        click.echo(
            f"patch {release} is being applied: `edgecloud upgrade show --watch`, then "
            "`edgecloud upgrade complete`"
        )


@patch.command()
@click.argument("release")
@json_option
@pass_client
def remove(client: Client, release: str, as_json: bool) -> None:
    """Roll patch RELEASE back while its upgrade is not completed (`upgrade abort`)."""
    current = client.get_upgrade()
    if current["to_release"] != release or current["state"] in ("completed", "aborted"):
        raise ClientError(
            f"patch {release} is not being applied (the site's last upgrade is to "
            f"{current['to_release']}, {current['state']}): only a patch not yet completed "
            "can be removed"
        )
    found = client.abort_upgrade()
    if as_json:
        emit(found, True)
    else:
        click.echo(f"patch {release} is being removed: `edgecloud upgrade show --watch`")


def register(cli: click.Group) -> None:
    cli.add_command(patch)
