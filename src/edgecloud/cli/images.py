"""`edgecloud image ...`: VNF images, either a disk image or a kernel for direct boot.

Commands call the client SDK (edgecloud.client.Client, via cli/context.py) and print with
cli/output.py; registered on `edgecloud` by cli/main.py through `register`. Paths name
files on the site's hosts and are sent as absolute paths (relative ones are resolved
against the current directory). More subcommands (e.g. `image build`) attach to `image`.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from edgecloud.cli.context import get_client, pass_client
from edgecloud.cli.output import emit, json_option
from edgecloud.client import Client

COLUMNS = ("name", "disk_path", "disk_format", "kernel_path", "created_at")
PATH = click.Path(dir_okay=False)


@click.group()
def image() -> None:
    """VNF images."""


@image.command()
@click.argument("name")
@click.option("--disk", type=PATH, help="Disk image to boot from.")
@click.option("--format", "disk_format", type=click.Choice(["qcow2", "raw"]), help="Of --disk.")
@click.option("--kernel", type=PATH, help="Kernel for direct boot (instead of --disk).")
@click.option("--initrd", type=PATH, help="Initrd for --kernel.")
@click.option("--cmdline", help="Kernel command line for --kernel.")
@json_option
@pass_client
def create(
    client: Client,
    name: str,
    disk: str | None,
    disk_format: str | None,
    kernel: str | None,
    initrd: str | None,
    cmdline: str | None,
    as_json: bool,
) -> None:
    """Create image NAME from --disk PATH, or from --kernel PATH [--initrd] [--cmdline]."""
    check_boot_options(disk, disk_format, kernel, initrd, cmdline)
    created = client.create_image(
        name,
        disk_path=absolute(disk),
        disk_format=disk_format,
        kernel_path=absolute(kernel),
        initrd_path=absolute(initrd),
        cmdline=cmdline,
    )
    emit(created, as_json)


def default_image_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "edgecloud", "images")


@image.command("build")
@click.argument("kind", type=click.Choice(["bump-in-the-wire", "debian-cloud"]))
@click.option("--name", help="Image name to register [default: KIND].")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Build directory [default: ~/.cache/edgecloud/images].",
)
@json_option
@click.pass_context
def build(ctx: click.Context, kind: str, name: str | None, out: str | None, as_json: bool) -> None:
    """Build a VNF image of KIND on this host.

    bump-in-the-wire: a tiny VNF from this host's kernel and busybox, registered as an image;
    it reports its vNICs (name, MAC, PCI address) on its console and forwards between its two
    data vNICs; boots in seconds under TCG.

    debian-cloud: a Debian 12 qcow2 disk image with cloud-init and the QEMU guest agent, built
    from Debian's packages (root; about 4 minutes, cached); prints its path.
    """
    from edgecloud.images.building import build_bump_in_the_wire

    if kind == "debian-cloud":
        click.echo(build_debian_cloud(Path(out or default_image_dir())))
        return
    client = get_client(ctx)

    if not as_json:
        click.echo(f"building {kind} from this host's kernel and busybox ...", err=True)
    files = build_bump_in_the_wire(Path(out or default_image_dir()))
    created = client.create_image(
        name or kind,
        kernel_path=str(files.kernel),
        initrd_path=str(files.initrd),
        cmdline=files.cmdline,
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
    """Delete image NAME."""
    client.delete_image(name)
    click.echo(f"image {name} deleted")


def check_boot_options(
    disk: str | None,
    disk_format: str | None,
    kernel: str | None,
    initrd: str | None,
    cmdline: str | None,
) -> None:
    """Exactly one of --disk and --kernel, each with only its own companions."""
    if (disk is None) == (kernel is None):
        raise click.UsageError("give either --disk PATH or --kernel PATH")
    if disk is not None and (initrd is not None or cmdline is not None):
        raise click.UsageError("--initrd and --cmdline go with --kernel, not --disk")
    if kernel is not None and disk_format is not None:
        raise click.UsageError("--format goes with --disk, not --kernel")


def absolute(path: str | None) -> str | None:
    return None if path is None else os.path.abspath(path)


def register(cli: click.Group) -> None:
    cli.add_command(image)
