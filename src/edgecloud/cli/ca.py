"""`edgecloud ca rotate begin|finish|rollback`: rotating the site CA.

Two places hold a site CA, and each is rotated where it lives:
- one controller's PKI folder (``--state-dir``, as `edgecloud controller`): run on the
  controller machine; the running controller notices the change within seconds and acts on it
  (controller/tls.py), no restart. The steps: pki/rotation.py.
- the store of a site whose controllers share the CA (``--db URL --site-secret-file FILE``,
  the options those controllers run with): the step is one transaction in the store and every
  controller follows it (controller/site_ca_rotation.py, controller/ca_following.py). A
  ``--state-dir`` whose CA mirrors the store's is refused, since rotating one controller's
  copy would split the site. A redundant all-in-one site's folder (`edgecloud up --nodes 2
  --redundant --state-dir STATE`) as ``--state-dir`` means its store: the replicated
  database's URL and STATE/site-secret.
The procedure and its reasons: docs/security.md ("CA rotation"), docs/operations.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click

from edgecloud.errors import Conflict, EdgecloudError, InvalidInput
from edgecloud.pki import rotation
from edgecloud.pki.authority import CA_CERT_FILE, CertificateAuthority

_T = TypeVar("_T")

STATE_DIR = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A controller's state folder (its pki/ holds the CA): rotate that controller's CA; "
    "or a redundant all-in-one site's folder: rotate the CA its controllers share.",
)
DB = click.option(
    "--db",
    "db_url",
    metavar="URL",
    help="The store of a site whose controllers share the CA (with --site-secret-file): "
    "rotate it there; every controller follows.",
)
SECRET_FILE = click.option(
    "--site-secret-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The site secret the controllers run with (with --db).",
)


@click.group("ca")
def ca() -> None:
    """The site certificate authority."""


@ca.group("rotate")
def rotate() -> None:
    """Rotate the site CA without re-enrolling nodes (begin, then finish)."""


@rotate.command("begin")
@STATE_DIR
@DB
@SECRET_FILE
@click.option("--site-name", default="edge", show_default=True, help="Named in the new CA.")
def begin(
    state_dir: Path | None, db_url: str | None, site_secret_file: Path | None, site_name: str
) -> None:
    """A new CA signs from now on; both CAs are trusted; connected nodes renew at once."""
    from edgecloud.controller import site_ca_rotation

    store = _store(state_dir, db_url, site_secret_file)
    if store is not None:
        now = _in_store(*store, lambda s, k: site_ca_rotation.begin(s, k, site_name))
        fingerprint, where = now.fingerprint, f"site-wide (generation {now.generation})"
    else:
        assert state_dir is not None
        fingerprint, where = rotation.begin(state_dir / "pki", site_name).fingerprint, "begun"
    click.echo(f"CA rotation {where}: new CA {fingerprint}")
    click.echo(
        "nodes renew when connected; run `edgecloud ca rotate finish` once every node was "
        "online since now"
    )


@rotate.command("finish")
@STATE_DIR
@DB
@SECRET_FILE
def finish(state_dir: Path | None, db_url: str | None, site_secret_file: Path | None) -> None:
    """Stop trusting the old CA (nodes that never renewed must enroll again)."""
    from edgecloud.controller import site_ca_rotation

    store = _store(state_dir, db_url, site_secret_file)
    if store is not None:
        _in_store(*store, site_ca_rotation.finish)
    else:
        assert state_dir is not None
        rotation.finish(state_dir / "pki")
    click.echo("CA rotation finished: only the new CA is trusted")


@rotate.command("rollback")
@STATE_DIR
@DB
@SECRET_FILE
def rollback(state_dir: Path | None, db_url: str | None, site_secret_file: Path | None) -> None:
    """Abandon a rotation: the old CA signs and is trusted again."""
    from edgecloud.controller import site_ca_rotation

    store = _store(state_dir, db_url, site_secret_file)
    if store is not None:
        _in_store(*store, site_ca_rotation.rollback)
    else:
        assert state_dir is not None
        rotation.rollback(state_dir / "pki")
    click.echo("CA rotation rolled back: the old CA signs and is the only one trusted")


@rotate.command("status")
@STATE_DIR
@DB
@SECRET_FILE
def status(state_dir: Path | None, db_url: str | None, site_secret_file: Path | None) -> None:
    """Where the site CA stands: the CA that signs and, during a rotation, the old one."""
    from edgecloud.controller import site_ca_rotation

    store = _store(state_dir, db_url, site_secret_file)
    if store is not None:
        now = _in_store(*store, site_ca_rotation.standing)
        signing, previous = now.fingerprint, now.previous
        click.echo(f"site CA in the store, generation {now.generation}")
    else:
        assert state_dir is not None
        if not (state_dir / "pki" / CA_CERT_FILE).exists():
            raise Conflict(f"{state_dir} holds no site CA (is it a controller's state folder?)")
        ca = CertificateAuthority.load_or_create(state_dir / "pki", "edge")
        signing, previous = ca.fingerprint, rotation.previous_fingerprint(state_dir / "pki")
    click.echo(f"signing CA {signing}")
    click.echo(
        f"rotation in progress: old CA {previous} trusted too" if previous else "no rotation"
    )


def _store(
    state_dir: Path | None, db_url: str | None, secret_file: Path | None
) -> tuple[str, Path] | None:
    """Where the step is taken: the store (its URL and the site secret's file) or, None,
    ``state_dir``'s own PKI folder; one sentence when the options do not say one place."""
    from edgecloud.allinone.controllers import SECRET_FILE
    from edgecloud.allinone.replicated_db import Cluster
    from edgecloud.controller.shared_ca import mirrored

    if (state_dir is None) == (db_url is None):
        raise InvalidInput("give either --state-dir or --db (with --site-secret-file)", "db")
    if db_url is not None:
        if secret_file is None:
            raise InvalidInput("--db needs --site-secret-file", "site_secret_file")
        return db_url, secret_file
    assert state_dir is not None
    cluster = Cluster.load(state_dir)  # a redundant all-in-one site's folder
    if cluster is not None and (state_dir / SECRET_FILE).exists():
        return cluster.url, state_dir / SECRET_FILE
    if mirrored(state_dir / "pki"):
        raise InvalidInput(
            f"the CA of {state_dir} is the site's, shared through the store: rotate it with "
            "--db and --site-secret-file (every controller follows)",
            "state_dir",
        )
    return None


def _in_store(db_url: str, secret_file: Path, step: Callable[..., Awaitable[_T]]) -> _T:
    """Run a step of controller/site_ca_rotation.py on the store at ``db_url``."""
    from sqlalchemy.exc import SQLAlchemyError

    from edgecloud.cli.daemons import _site_secret
    from edgecloud.store.database import make_engine, session_factory

    secret = _site_secret(secret_file)
    assert secret is not None

    async def run() -> _T:
        engine = make_engine(db_url)
        try:
            return await step(session_factory(engine), secret)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except (SQLAlchemyError, OSError) as exc:
        raise EdgecloudError(f"the site's store could not be used: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def register(cli: click.Group) -> None:
    cli.add_command(ca)
