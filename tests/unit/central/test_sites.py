"""Central's site rules on a real SQLite store migrated by central's own Alembic history:
one-time site join tokens (also when two enrollments race), expiry, the certificate that opens a
session, offline and back."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgecloud.central import sites
from edgecloud.central.migrations import MIGRATIONS
from edgecloud.errors import Conflict, EnrollmentError
from edgecloud.pki import tokens
from edgecloud.pki.authority import CertificateAuthority
from edgecloud.pki.identity import cert_serial, make_key_and_csr
from edgecloud.store.database import make_engine, migrate, session_factory
from edgecloud.store.models import utcnow


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[sites.Sessions]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'central.db'}")
    await migrate(engine, migrations=MIGRATIONS)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path / "pki", "central")


async def test_a_site_token_joins_once_even_when_two_race(
    store: sites.Sessions, ca: CertificateAuthority
) -> None:
    issued = await sites.add_site(store, "b1", "127.0.0.1:8444", ca.fingerprint, 60)
    token = tokens.decode(issued.token)
    assert (token.host, token.address, token.ca_fingerprint) == (
        "b1",
        "127.0.0.1:8444",
        ca.fingerprint,
    )
    csr = make_key_and_csr("b1")[1]
    results = await asyncio.gather(
        *(sites.enroll(store, ca, "b1", token.secret, csr) for _ in range(2)),
        return_exceptions=True,
    )
    certs = [r for r in results if isinstance(r, bytes)]
    assert len(certs) == 1 and isinstance(
        next(r for r in results if r not in certs), EnrollmentError
    )
    serial = cert_serial(certs[0])
    site_id = await sites.current_site(store, "b1", serial)
    assert site_id is not None
    assert await sites.current_site(store, "b1", serial + 1) is None
    with pytest.raises(EnrollmentError, match="not known to central"):
        await sites.enroll(store, ca, "b1", token.secret, csr)
    with pytest.raises(Conflict):
        await sites.add_site(store, "b1", "127.0.0.1:8444", ca.fingerprint, 60)
    # a new token: the old certificate stops opening sessions
    again = await sites.new_token(store, "b1", "127.0.0.1:8444", ca.fingerprint, 60)
    assert again.token != issued.token
    assert await sites.current_site(store, "b1", serial) is None


async def test_an_expired_site_token_is_refused(
    store: sites.Sessions, ca: CertificateAuthority
) -> None:
    issued = await sites.add_site(store, "b1", "127.0.0.1:1", ca.fingerprint, 0.001)
    await asyncio.sleep(0.01)
    with pytest.raises(EnrollmentError, match="expired"):
        await sites.enroll(
            store, ca, "b1", tokens.decode(issued.token).secret, make_key_and_csr("b1")[1]
        )


async def test_offline_raises_one_alarm_and_hello_clears_it(
    store: sites.Sessions, ca: CertificateAuthority
) -> None:
    site = (await sites.add_site(store, "b1", "127.0.0.1:1", ca.fingerprint, 60)).site
    report = {"release": "9.9.9", "inventory": {"hosts": 2}, "alarms": {"major": 1}}
    await sites.site_online(store, site.id, "9.9.9", 1, report)
    assert [s.id for s in await sites.list_sites(store)] == [site.id]
    assert await sites.online_site_ids(store) == [site.id]
    before = utcnow() - dt.timedelta(seconds=1)
    assert await sites.sites_offline(store, [site.id], "silent", before) == []  # heard since
    assert await sites.sites_offline(store, [site.id], "silent", utcnow()) == ["b1"]
    assert await sites.sites_offline(store, [site.id], "silent", utcnow()) == []  # once
    [alarm] = await sites.list_alarms(store)
    assert (alarm.alarm_id, alarm.entity, alarm.severity, alarm.reason) == (
        "900.001",
        "site=b1",
        "major",
        "silent",
    )
    await sites.site_online(store, site.id, "9.9.9", 1, report)
    assert await sites.list_alarms(store) == []
    shown = await sites.get_site(store, "b1")
    assert (shown.state, shown.release, shown.report) == ("online", "9.9.9", report)
    await sites.delete_site(store, "b1")
    assert await sites.list_sites(store) == []
