"""Bulk enrollment of simulated sites at central: N sites, each with its own key and certificate.

A site join token costs one API call and two TLS exchanges per site (controller/central_link.py
``join``); for 10,000 sites the simulator does instead what central's enrollment does
(central/sites.py ``enroll``), before central starts: it opens central's CA (STATE/pki) and
store (STATE/central.db, migrated), adds each site (group ``sim``, joined, its certificate's
serial kept) and signs one CSR per site with central's CA. The certificates are real; each site
later uses its own over its own mTLS connection. A site's folder holds what a real site's
STATE/central/ holds (controller/central_identity.py): ca.crt, site.crt, site.key, central.json.
Folders are cached (``SIM/sites/site-00042``): a later run with as many or fewer sites enrolls
nothing (the sites it does not run leave the group ``sim``). The sim's sibling for nodes: sim/identities.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select, update

from edgecloud import files
from edgecloud.central.migrations import MIGRATIONS
from edgecloud.central.models import Site
from edgecloud.controller import central_identity
from edgecloud.pki.authority import CertificateAuthority
from edgecloud.pki.identity import cert_serial, make_key_and_csr
from edgecloud.store.database import make_engine, migrate, session_factory, transaction
from edgecloud.store.models import utcnow

CA_NAME = "central"  # as central/run.py creates it
DB_FILE = "central.db"  # central/run.py SQLITE_FILE
GROUP = "sim"  # the sites of this run (a deployment goes to the group)
IDLE_GROUP = "sim-idle"  # enrolled by an earlier, larger run: not dialling now
BATCH = 500


def site_name(index: int) -> str:
    return f"site-{index:05d}"


async def ensure_sites(
    central_dir: Path,
    sites_dir: Path,
    count: int,
    progress: Callable[[int], None] | None = None,
) -> list[Path]:
    """The folders of sites 0..count-1, enrolling those missing; central must not be running
    (its store is written directly)."""
    files.private_dir(central_dir)
    ca = CertificateAuthority.load_or_create(central_dir / "pki", CA_NAME)
    files.create_private(central_dir / DB_FILE)
    engine = make_engine(f"sqlite+aiosqlite:///{central_dir / DB_FILE}")
    try:
        await migrate(engine, migrations=MIGRATIONS)
        sessions = session_factory(engine)
        async with transaction(sessions) as s:
            rows = (await s.execute(select(Site.name, Site.cert_serial))).all()
            serials = {name: serial for name, serial in rows}
        todo = [i for i in range(count) if not _cached(sites_dir, site_name(i), serials)]
        for start in range(0, len(todo), BATCH):
            async with transaction(sessions) as s:
                for i in todo[start : start + BATCH]:
                    serial = _issue(ca, sites_dir / site_name(i), site_name(i))
                    site = (await s.scalars(select(Site).where(Site.name == site_name(i)))).first()
                    if site is None:
                        site = Site(name=site_name(i), report={}, group=GROUP)
                        s.add(site)
                    site.cert_serial, site.token_hash, site.joined_at = str(serial), None, utcnow()
            if progress is not None:
                progress(min(start + BATCH, len(todo)))
        async with transaction(sessions) as s:  # this run's sites are the group, no others
            last = site_name(count)
            await s.execute(update(Site).where(Site.name < last).values(group=GROUP))
            await s.execute(update(Site).where(Site.name >= last).values(group=IDLE_GROUP))
    finally:
        await engine.dispose()
    return [sites_dir / site_name(i) for i in range(count)]


def _issue(ca: CertificateAuthority, folder: Path, name: str) -> int:
    """A key and a certificate of central's CA for site ``name`` in ``folder``; the serial."""
    key_pem, csr_pem = make_key_and_csr(name)
    cert_pem, serial = ca.sign_csr(csr_pem, name, days=365)
    files.private_dir(folder)
    files.write_atomic(folder / "ca.crt", ca.trust_pem, files.PUBLIC_FILE, durable=False)
    files.write_atomic(folder / "site.crt", cert_pem, files.PUBLIC_FILE, durable=False)
    files.write_atomic(folder / "site.key", key_pem, durable=False)
    (folder / central_identity.APPLIED).unlink(missing_ok=True)  # a new site applied nothing
    return serial


def _cached(sites_dir: Path, name: str, serials: dict[str, str | None]) -> bool:
    cert = sites_dir / name / "site.crt"
    if name not in serials or not cert.exists():
        return False
    return str(cert_serial(cert.read_bytes())) == serials[name]


def point_at(site_dirs: list[Path], address: str) -> None:
    """Write central's site port (``host:port``) into every site's central.json."""
    for folder in site_dirs:
        name = folder.name
        info = {"address": address, "site": name, "token": ""}
        path = folder / central_identity.INFO
        if not path.exists() or json.loads(path.read_text()) != info:
            files.write_atomic(path, json.dumps(info), durable=False)
