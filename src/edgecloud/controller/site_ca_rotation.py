"""CA rotation on a site whose controllers share the CA through the store: the steps of
pki/rotation.py (begin, finish, rollback) taken on the store's ``site_ca`` row.

Each step is one transaction under the same advisory lock as controller/shared_ca.py's
publishing, and checks where the rotation stands first, so a step that failed or was cut off
changed nothing and can be run again, and two operators cannot begin twice. The step bumps the
row's ``generation`` and sends a ``site_ca_changed`` notice with the commit (NOTIFY is
transactional): every controller then makes its ``pki/`` match the row
(controller/ca_following.py), and its TLS reload (controller/tls.py) does what the file steps
do on a single controller: sign with the new CA, trust both, ask its connected nodes to renew,
re-issue its server certificate once the old CA is no longer trusted. A controller that was
stopped, killed or cut off from the database meanwhile catches up when it comes back (at
start, on reconnecting its change feed, or at its next check a few seconds later).

The operator's secret must open the stored key before anything is written: a new CA sealed
with another secret would stop every controller. Run by `edgecloud ca rotate ... --db URL
--site-secret-file FILE` (cli/ca.py). Neighbours: controller/shared_ca.py (the row, sealing),
store/change_feed.py (the notice channel).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud.controller.shared_ca import SITE_CA_LOCK, seal, unseal
from edgecloud.errors import Conflict
from edgecloud.pki.authority import CertificateAuthority
from edgecloud.pki.identity import fingerprint_of
from edgecloud.store.change_feed import notify_in
from edgecloud.store.database import transaction
from edgecloud.store.models import SiteCa

NOTICE = "site_ca_changed"  # the change feed's kind (key "1": the one row)


@dataclass(frozen=True)
class Standing:
    """Where the site's CA stands after a step (or now)."""

    generation: int
    fingerprint: str  # the CA that signs
    previous: str | None  # the old CA, trusted beside it during a rotation


async def begin(
    sessions: async_sessionmaker[AsyncSession], secret: str, site_name: str
) -> Standing:
    """A new CA signs from now on; the old one is kept and trusted until ``finish``."""
    async with transaction(sessions) as s:
        row = await _locked_row(s, secret)
        if row.previous_cert_pem:
            raise Conflict("a CA rotation of the site is in progress: finish it first")
        new = await asyncio.to_thread(CertificateAuthority.create, site_name)
        sealed = await asyncio.to_thread(seal, new.key_pem, secret)
        row.previous_cert_pem, row.previous_key_encrypted = row.cert_pem, row.key_encrypted
        row.cert_pem, row.key_encrypted = new.cert_pem.decode(), sealed
        row.fingerprint = new.fingerprint
        return await _changed(s, row)


async def finish(sessions: async_sessionmaker[AsyncSession], secret: str) -> Standing:
    """End the overlap: only the new CA is trusted from now on, the old key is dropped."""
    async with transaction(sessions) as s:
        row = await _locked_row(s, secret)
        if not row.previous_cert_pem:
            raise Conflict("no CA rotation of the site is in progress")
        _retire(row, row.previous_cert_pem)
        row.previous_cert_pem = row.previous_key_encrypted = None
        return await _changed(s, row)


async def rollback(sessions: async_sessionmaker[AsyncSession], secret: str) -> Standing:
    """Abandon the rotation: the old CA signs and is the only one trusted again."""
    async with transaction(sessions) as s:
        row = await _locked_row(s, secret)
        if not row.previous_cert_pem or not row.previous_key_encrypted:
            raise Conflict("no CA rotation of the site is in progress")
        _retire(row, row.cert_pem)
        row.cert_pem, row.key_encrypted = row.previous_cert_pem, row.previous_key_encrypted
        row.fingerprint = fingerprint_of(row.cert_pem.encode())
        row.previous_cert_pem = row.previous_key_encrypted = None
        return await _changed(s, row)


async def standing(sessions: async_sessionmaker[AsyncSession], secret: str) -> Standing:
    """Where the site's CA stands (the secret is checked as for a step)."""
    async with sessions() as s:
        row = await s.get(SiteCa, 1)
        if row is None:
            raise Conflict(_NO_CA)
        await asyncio.to_thread(unseal, row.key_encrypted, secret)
        return _standing(row)


_NO_CA = (
    "the store holds no site CA: start a controller with --site-secret-file on this database first"
)


async def _locked_row(s: AsyncSession, secret: str) -> SiteCa:
    await s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SITE_CA_LOCK})
    row = await s.get(SiteCa, 1, populate_existing=True)
    if row is None:
        raise Conflict(_NO_CA)
    await asyncio.to_thread(unseal, row.key_encrypted, secret)  # the site's secret, or Conflict
    return row


def _retire(row: SiteCa, cert_pem: str) -> None:
    fingerprint = fingerprint_of(cert_pem.encode())
    if fingerprint not in (row.retired or []):
        row.retired = [*(row.retired or []), fingerprint]


async def _changed(s: AsyncSession, row: SiteCa) -> Standing:
    row.generation += 1
    await s.flush()
    await notify_in(s, NOTICE, "1")
    return _standing(row)


def _standing(row: SiteCa) -> Standing:
    previous = fingerprint_of(row.previous_cert_pem.encode()) if row.previous_cert_pem else None
    return Standing(row.generation, row.fingerprint, previous)
