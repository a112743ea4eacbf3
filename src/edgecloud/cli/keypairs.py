"""`edgecloud keypair ...`: SSH key pairs whose public key a VNF gets (meta_data.json).

`keypair create` generates the pair here (client/keys.py) and imports the public half; the
private key is written to --private-key-file (mode 0600, never overwritten) or printed once.
Commands call the client SDK and print with cli/output.py; registered by cli/main.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from edgecloud.cli.context import pass_client
from edgecloud.cli.output import emit, json_option
from edgecloud.client import Client
from edgecloud.client.keys import ALGORITHMS
from edgecloud.errors import ClientError

COLUMNS = ("name", "key_algorithm", "fingerprint", "created_at")


@click.group()
def keypair() -> None:
    """SSH key pairs for VNFs."""


@keypair.command()
@click.argument("name")
@click.option(
    "--private-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the private key here (mode 0600) [default: print it once].",
)
@click.option("--type", "algorithm", type=click.Choice(ALGORITHMS), default="ed25519")
@json_option
@pass_client
def create(
    client: Client, name: str, private_key_file: Path | None, algorithm: str, as_json: bool
) -> None:
    """Generate key pair NAME; only its public key is sent to the site."""
    descriptor = _open_private(private_key_file) if private_key_file else None
    try:
        created = client.create_keypair(name, algorithm)
    except BaseException:
        if descriptor is not None and private_key_file is not None:
            os.close(descriptor)
            private_key_file.unlink(missing_ok=True)
        raise
    private_key = created.pop("private_key")
    if descriptor is not None:
        with os.fdopen(descriptor, "w") as out:
            out.write(private_key)
        click.echo(f"private key written to {private_key_file}", err=True)
    else:
        created["private_key"] = private_key
    emit(created, as_json)


def _open_private(path: Path) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ClientError(f"{path} exists already; choose another --private-key-file") from None
    except OSError as exc:
        raise ClientError(f"cannot write {path}: {exc.strerror}") from None


@keypair.command("import")
@click.argument("name")
@click.option(
    "--public-key",
    "public_key",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An OpenSSH public key file, e.g. ~/.ssh/id_ed25519.pub.",
)
@json_option
@pass_client
def import_(client: Client, name: str, public_key: Path, as_json: bool) -> None:
    """Import the public key in a file as key pair NAME."""
    try:
        text = public_key.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientError(f"cannot read {public_key}: {exc}") from None
    emit(client.import_keypair(name, text.strip()), as_json)


@keypair.command("list")
@json_option
@pass_client
def list_(client: Client, as_json: bool) -> None:
    """List key pairs."""
    emit(client.list_keypairs(), as_json, COLUMNS)


@keypair.command()
@click.argument("name")
@json_option
@pass_client
def show(client: Client, name: str, as_json: bool) -> None:
    """Show one key pair."""
    emit(client.get_keypair(name), as_json)


@keypair.command()
@click.argument("name")
@pass_client
def delete(client: Client, name: str) -> None:
    """Delete key pair NAME (VNFs created with it keep their copy of the key)."""
    client.delete_keypair(name)
    click.echo(f"key pair {name} deleted")


def register(cli: click.Group) -> None:
    cli.add_command(keypair)
