"""`edgecloud image ...`: the site's image store (upload, build, list, show, delete).

Commands call the client SDK (edgecloud.client.Client, via cli/context.py) and print with
cli/output.py; registered on `edgecloud` by cli/main.py through `register`. Images are
uploaded: the bytes go to the controller, which checks and keeps them; no command names a
file on the site's hosts. `image build` makes the project's tiny VNF from this machine's
kernel and busybox and uploads it (a ramdisk image, and a kernel image that boots with it).
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from edgecloud.cli.context import get_client, pass_client
from edgecloud.cli.output import emit, json_option, transfer_progress
from edgecloud.client import Client

COLUMNS = ("name", "disk_format", "status", "size", "virtual_size", "sha256", "created_at")
FORMATS = ("qcow2", "raw", "kernel", "ramdisk")
QCOW2_MAGIC = b"QFI\xfb"


@click.group()
def image() -> None:
    """VNF images in the site's image store."""


@image.command()
@click.argument("name")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option(
    "--format",
    "disk_format",
    type=click.Choice(FORMATS),
    help="What FILE is [default: qcow2 if it is one, else raw].",
)
@click.option("--ramdisk", help="Kernel images: the ramdisk image to boot with.")
@click.option("--cmdline", help="Kernel images: the kernel command line.")
@json_option
@pass_client
def upload(
    client: Client,
    name: str,
    file: str,
    disk_format: str | None,
    ramdisk: str | None,
    cmdline: str | None,
    as_json: bool,
) -> None:
    """Upload FILE as image NAME (streamed; the controller checks it before keeping it)."""
    disk_format = disk_format or guess_format(file)
    emit(_upload(client, name, file, disk_format, ramdisk, cmdline, quiet=as_json), as_json)


def default_image_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "edgecloud", "images")


@image.command("build")
@click.argument("kind", type=click.Choice(["bump-in-the-wire", "debian-cloud"]))
@click.option(
    "--name",
    help="Image name [default: KIND]; a bump-in-the-wire's ramdisk is NAME-ramdisk.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Build directory [default: ~/.cache/edgecloud/images].",
)
@click.option(
    "--no-upload", is_flag=True, help="Only build, print the file's path (no site needed)."
)
@json_option
@click.pass_context
def build(
    ctx: click.Context,
    kind: str,
    name: str | None,
    out: str | None,
    no_upload: bool,
    as_json: bool,
) -> None:
    """Build a VNF image of KIND on this host and upload it to the site's image store.

    bump-in-the-wire: a tiny VNF from this host's kernel and busybox (a kernel image and its
    ramdisk); it reports its vNICs (name, MAC, PCI address) on its console and forwards
    between its two data vNICs; boots in seconds under TCG.

    debian-cloud: a Debian 12 qcow2 disk image with cloud-init and the QEMU guest agent, built
    from Debian's packages (root; about 4 minutes, cached): a vendor-style VNF to try.
    """
    from edgecloud.images.building import build_bump_in_the_wire

    name = name or kind
    out_dir = Path(out or default_image_dir())
    if kind == "debian-cloud":
        disk = build_debian_cloud(out_dir)
        if no_upload:
            click.echo(disk)
            return
        emit(_upload(get_client(ctx), name, str(disk), "qcow2", None, None, quiet=as_json), as_json)
        return
    if not as_json:
        click.echo(f"building {kind} from this host's kernel and busybox ...", err=True)
    files = build_bump_in_the_wire(out_dir)
    if no_upload:
        click.echo(f"{files.kernel}\n{files.initrd}")
        return
    client = get_client(ctx)
    ramdisk = f"{name}-ramdisk"
    _upload(client, ramdisk, str(files.initrd), "ramdisk", None, None, quiet=as_json)
    created = _upload(
        client, name, str(files.kernel), "kernel", ramdisk, files.cmdline, quiet=as_json
    )
    emit(created, as_json)


def build_debian_cloud(out_dir: Path) -> Path:
    """The debian-cloud image's path (built unless cached), progress lines on stderr."""
    from edgecloud.images.cloud_guest import build_cloud_guest

    return build_cloud_guest(
        out_dir, progress=lambda line: click.echo(f"debian-cloud: {line}", err=True)
    )


@image.command("list")
@json_option
@pass_client
def list_(client: Client, as_json: bool) -> None:
    """List images."""
    emit(client.list_images(), as_json, COLUMNS)


@image.command()
@click.argument("name")
@json_option
@pass_client
def show(client: Client, name: str, as_json: bool) -> None:
    """Show one image."""
    emit(client.get_image(name), as_json)


@image.command()
@click.argument("name")
@pass_client
def delete(client: Client, name: str) -> None:
    """Delete image NAME (refused while a VNF uses it)."""
    client.delete_image(name)
    click.echo(f"image {name} deleted")


def guess_format(path: str) -> str:
    """qcow2 when the file starts with qcow2's magic, else raw (the controller checks)."""
    try:
        with open(path, "rb") as f:
            return "qcow2" if f.read(4) == QCOW2_MAGIC else "raw"
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror or exc}") from exc


def _upload(
    client: Client,
    name: str,
    path: str,
    disk_format: str,
    ramdisk: str | None,
    cmdline: str | None,
    *,
    quiet: bool,
) -> dict[str, object]:
    """Upload with a progress bar on stderr (none when ``quiet``)."""
    if quiet:
        return client.upload_image(name, path, disk_format, ramdisk=ramdisk, cmdline=cmdline)
    with transfer_progress(name) as progress:
        result = client.upload_image(
            name, path, disk_format, ramdisk=ramdisk, cmdline=cmdline, on_progress=progress
        )
    click.echo(f"image {name} uploaded ({disk_format}, {os.path.getsize(path)} bytes)", err=True)
    return result


def register(cli: click.Group) -> None:
    cli.add_command(image)
