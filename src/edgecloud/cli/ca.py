"""`edgecloud ca rotate begin|finish|rollback`: rotating the site CA (run on the controller).

These act on the controller's PKI folder (``--state-dir``, as `edgecloud controller`); the
running controller notices the change within seconds and acts on it (controller/tls.py), no
restart. The procedure and its reasons: docs/security.md ("CA rotation"); the steps:
pki/rotation.py.
"""

from __future__ import annotations

from pathlib import Path

import click

from edgecloud.pki import rotation

STATE_DIR = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    required=True,
    help="The controller's state folder (its pki/ holds the CA).",
)


@click.group("ca")
def ca() -> None:
    """The site certificate authority."""


@ca.group("rotate")
def rotate() -> None:
    """Rotate the site CA without re-enrolling nodes (begin, then finish)."""


@rotate.command("begin")
@STATE_DIR
@click.option("--site-name", default="edge", show_default=True, help="Named in the new CA.")
def begin(state_dir: Path, site_name: str) -> None:
    """A new CA signs from now on; both CAs are trusted; connected nodes renew at once."""
    new = rotation.begin(state_dir / "pki", site_name)
    click.echo(f"CA rotation begun: new CA {new.fingerprint}")
    click.echo(
        "nodes renew when connected; run `edgecloud ca rotate finish` once every node was "
        "online since now"
    )


@rotate.command("finish")
@STATE_DIR
def finish(state_dir: Path) -> None:
    """Stop trusting the old CA (nodes that never renewed must enroll again)."""
    rotation.finish(state_dir / "pki")
    click.echo("CA rotation finished: only the new CA is trusted")


@rotate.command("rollback")
@STATE_DIR
def rollback(state_dir: Path) -> None:
    """Abandon a rotation: the old CA signs and is trusted again."""
    rotation.rollback(state_dir / "pki")
    click.echo("CA rotation rolled back: the old CA signs and is the only one trusted")


def register(cli: click.Group) -> None:
    cli.add_command(ca)
