"""Central's rules for sites: add one (a one-time join token), enroll it, what it reported,
whether it is online, and the alarms central raises about it.

A site is added by name and gets a join token (pki/tokens.py, the form nodes use: central's
site port, its CA fingerprint, a one-time secret, the site's name). Its controller redeems the
token once (one conditional UPDATE, rowcount checked: of two concurrent enrollments exactly
one wins) for a certificate whose serial central keeps; from then on only that certificate
opens the site's session. A site whose controller has not spoken for the liveness limit is
offline (alarm 900.001 against ``site=NAME``), cleared when it says hello again.

What the site gateway writes for thousands of sites at once (a WAN restore: every site says
hello within seconds) comes in batches, one transaction for many sites (``current_sites``,
``sites_online``, ``sites_reported``; central/site_gateway.py batches them with
gateway/batching.py): one transaction per hello made the SQLite store refuse writes ("database
is locked") in the simulator's 1,000-site storm.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud.central.models import CentralAlarm, Site
from edgecloud.errors import Conflict, EnrollmentError, NotFound
from edgecloud.fm.catalogue import SEVERITIES, SITE_OFFLINE, alarm_type
from edgecloud.pki import tokens
from edgecloud.pki.authority import CertificateAuthority
from edgecloud.store.database import reading, transaction
from edgecloud.store.models import as_utc, utcnow

Sessions = async_sessionmaker[AsyncSession]
CERT_DAYS = 365


@dataclass(frozen=True)
class Issued:
    """A site and the join token its controller redeems once."""

    site: Site
    token: str


async def add_site(
    sessions: Sessions,
    name: str,
    gateway: str,
    ca_fingerprint: str,
    ttl: float,
    group: str | None = None,
) -> Issued:
    """A new site ``name`` (in ``group``) and its join token (valid ``ttl`` seconds)."""
    secret = tokens.new_secret()
    async with transaction(sessions) as s:
        if (await s.scalars(select(Site).where(Site.name == name))).first() is not None:
            raise Conflict(f"site {name!r} already exists")
        site = Site(
            name=name,
            token_hash=tokens.hash_secret(secret),
            token_expires_at=utcnow() + dt.timedelta(seconds=ttl),
            report={},
            group=group,
        )
        s.add(site)
    token = tokens.encode(tokens.JoinToken(gateway, ca_fingerprint, secret, name))
    return Issued(site, token)


async def new_token(
    sessions: Sessions, name: str, gateway: str, ca_fingerprint: str, ttl: float
) -> Issued:
    """A new join token for an existing site: its certificate stops working (re-enroll)."""
    secret = tokens.new_secret()
    async with transaction(sessions) as s:
        site = await _site(s, name)
        site.token_hash = tokens.hash_secret(secret)
        site.token_expires_at = utcnow() + dt.timedelta(seconds=ttl)
        site.cert_serial = None
    token = tokens.encode(tokens.JoinToken(gateway, ca_fingerprint, secret, name))
    return Issued(site, token)


async def enroll(
    sessions: Sessions, ca: CertificateAuthority, name: str, secret: str, csr_pem: bytes
) -> bytes:
    """Redeem the site's join token: its controller's certificate (PEM)."""
    hashed = tokens.hash_secret(secret)
    async with transaction(sessions) as s:
        site = (await s.scalars(select(Site).where(Site.name == name))).first()
        if site is None or site.token_hash is None or site.token_hash != hashed:
            raise EnrollmentError("site join token is not known to central (or was used)")
        if site.token_expires_at is None or as_utc(site.token_expires_at) < utcnow():
            raise EnrollmentError(
                f"site join token has expired; ask for a new one (edgecloud central site "
                f"token {name})"
            )
        cert_pem, serial = ca.sign_csr(csr_pem, name, days=CERT_DAYS)
        consumed = await s.execute(
            update(Site)
            .where(Site.id == site.id, Site.token_hash == hashed)
            .values(token_hash=None, cert_serial=str(serial), joined_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if consumed.rowcount != 1:  # type: ignore[attr-defined]
            raise EnrollmentError("site join token was already used")
    return cert_pem


async def current_site(sessions: Sessions, name: str, serial: int) -> str | None:
    """The site's id when ``serial`` is its current certificate, else None."""
    return (await current_sites(sessions, [(name, serial)])).get((name, serial))


async def current_sites(
    sessions: Sessions, certificates: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], str]:
    """Of (site name, certificate serial) pairs, those whose serial is the site's current
    certificate, with the site's id."""
    wanted = list(certificates)
    async with reading(sessions) as s:
        query = select(Site.name, Site.cert_serial, Site.id)
        rows = await s.execute(query.where(Site.name.in_({name for name, _ in wanted})))
        current = {(name, serial): site_id for name, serial, site_id in rows.all()}
    return {(n, x): current[n, str(x)] for n, x in wanted if (n, str(x)) in current}


@dataclass(frozen=True)
class Hello:
    """What a site's controller says at hello (protocol/central.py), as central keeps it."""

    release: str
    protocol: int
    report: dict[str, Any]
    applied_version: int = 0


async def site_online(
    sessions: Sessions,
    site_id: str,
    release: str,
    protocol: int,
    report: dict[str, Any],
    applied_version: int = 0,
) -> int:
    """The site's controller said hello: online (its offline alarm cleared), what it runs and
    which desired version it applied; returns the site's current desired version."""
    hello = Hello(release, protocol, report, applied_version)
    return (await sites_online(sessions, {site_id: hello})).get(site_id, 0)


async def sites_online(sessions: Sessions, hellos: Mapping[str, Hello]) -> dict[str, int]:
    """``site_online`` for many sites in one transaction: each site's current desired version
    (a site deleted meanwhile is left out)."""
    now, versions = utcnow(), {}
    async with transaction(sessions) as s:
        # a write first: SQLite's driver begins the transaction at the first write, so the
        # reads below see no offline write (central/site_gateway.py liveness) land after them
        await _touch(s, list(hellos), now)
        found = list(await s.scalars(select(Site).where(Site.id.in_(list(hellos)))))
        for site in found:
            hello = hellos[site.id]
            if hello.applied_version <= site.desired_version:
                site.applied_version = hello.applied_version
            if site.state != "online":
                site.state, site.state_since = "online", now
            site.release, site.protocol, site.report, site.last_seen_at = (
                hello.release, hello.protocol, hello.report, now
            )  # fmt: skip
            versions[site.id] = site.desired_version
        await _clear(s, SITE_OFFLINE, [_entity(site.name) for site in found], now)
    return versions


async def site_reported(sessions: Sessions, site_id: str, report: dict[str, Any]) -> None:
    """A newer summary of the site (its release, inventory and alarm counts)."""
    await sites_reported(sessions, {site_id: report})


async def sites_reported(sessions: Sessions, reports: Mapping[str, dict[str, Any]]) -> None:
    """``site_reported`` for many sites in one transaction."""
    now = utcnow()
    async with transaction(sessions) as s:
        for site in await s.scalars(select(Site).where(Site.id.in_(list(reports)))):
            report = reports[site.id]
            site.report, site.last_seen_at = report, now
            site.release = str(report.get("release") or site.release or "")


async def sites_offline(
    sessions: Sessions, site_ids: Iterable[str], reason: str, silent_since: dt.datetime
) -> list[str]:
    """Sites whose controller has been silent since ``silent_since``: offline, alarm raised;
    their names. A site that said hello since then (its last_seen_at is newer: the hello was
    written while this was decided) stays online."""
    now, names = utcnow(), []
    async with transaction(sessions) as s:
        for site_id in site_ids:
            # one conditional write: decided by what the store holds at the write (a hello
            # that landed after a read of it would be overwritten by a read-then-write)
            silent = await s.execute(
                update(Site)
                .where(
                    Site.id == site_id,
                    Site.state == "online",
                    or_(Site.last_seen_at.is_(None), Site.last_seen_at <= silent_since),
                )
                .values(state="offline", state_since=now)
                .execution_options(synchronize_session=False)
            )
            if silent.rowcount != 1:  # type: ignore[attr-defined]
                continue
            site = await s.get(Site, site_id)
            if site is not None:
                names.append(site.name)
                await _raise(s, SITE_OFFLINE, site, reason)
    return names


async def seen(sessions: Sessions, site_ids: list[str]) -> None:
    """The sites' controllers are connected now (their last_seen_at, in one statement)."""
    if not site_ids:
        return
    async with transaction(sessions) as s:
        await _touch(s, site_ids, utcnow())


async def _touch(s: AsyncSession, site_ids: list[str], now: dt.datetime) -> None:
    await s.execute(
        update(Site)
        .where(Site.id.in_(site_ids))
        .values(last_seen_at=now)
        .execution_options(synchronize_session=False)
    )


async def online_site_ids(sessions: Sessions) -> list[str]:
    async with reading(sessions) as s:
        return list(await s.scalars(select(Site.id).where(Site.state == "online")))


async def list_sites(sessions: Sessions) -> list[Site]:
    async with reading(sessions) as s:
        return list(await s.scalars(select(Site).order_by(Site.name)))


@dataclass(frozen=True)
class Fleet:
    """The fleet counted: sites by state, the sites' active alarms summed by severity, and
    central's own active alarms by severity."""

    sites: dict[str, int]
    site_alarms: dict[str, int]
    central_alarms: dict[str, int]


async def fleet(sessions: Sessions) -> Fleet:
    """Counted in the store and from two columns of each site (no ORM object per site: at
    10,000 sites building them took 1.8 s of central's event loop)."""
    by_state = {"pending": 0, "online": 0, "offline": 0}
    site_alarms = dict.fromkeys(SEVERITIES, 0)
    own = dict.fromkeys(SEVERITIES, 0)
    async with reading(sessions) as s:
        for state, count in (
            await s.execute(select(Site.state, func.count()).group_by(Site.state))
        ).all():
            by_state[str(state)] = int(count)
        for (report,) in (
            await s.execute(select(Site.report).where(Site.state != "pending"))
        ).all():
            for severity, count in ((report or {}).get("alarms") or {}).items():
                if severity in site_alarms and isinstance(count, int):
                    site_alarms[severity] += count
        query = (
            select(CentralAlarm.severity, func.count())
            .where(CentralAlarm.state == "active")
            .group_by(CentralAlarm.severity)
        )
        for severity, count in (await s.execute(query)).all():
            own[str(severity)] = int(count)
    return Fleet(by_state, site_alarms, own)


async def get_site(sessions: Sessions, name: str) -> Site:
    async with reading(sessions) as s:
        return await _site(s, name)


async def delete_site(sessions: Sessions, name: str) -> str:
    """Forget the site (its certificate stops working at once); its id."""
    async with transaction(sessions) as s:
        site = await _site(s, name)
        await s.execute(delete(CentralAlarm).where(CentralAlarm.site_id == site.id))
        await s.delete(site)
        return site.id


async def list_alarms(sessions: Sessions, include_cleared: bool = False) -> list[CentralAlarm]:
    async with reading(sessions) as s:
        query = select(CentralAlarm).order_by(CentralAlarm.raised_at)
        if not include_cleared:
            query = query.where(CentralAlarm.state == "active")
        return list(await s.scalars(query))


async def _site(s: AsyncSession, name: str) -> Site:
    site = (await s.scalars(select(Site).where(Site.name == name))).first()
    if site is None:
        raise NotFound(f"site {name!r} not found")
    return site


def _entity(name: str) -> str:
    return f"site={name}"


async def _raise(s: AsyncSession, alarm_id: str, site: Site, reason: str) -> None:
    entity = _entity(site.name)
    query = select(CentralAlarm).where(
        CentralAlarm.alarm_id == alarm_id,
        CentralAlarm.entity == entity,
        CentralAlarm.state == "active",
    )
    if (await s.scalars(query)).first() is None:
        severity = alarm_type(alarm_id).severity
        s.add(CentralAlarm(alarm_id=alarm_id, severity=severity, site_id=site.id,
                           entity=entity, reason=reason))  # fmt: skip


async def _clear(s: AsyncSession, alarm_id: str, entities: list[str], now: dt.datetime) -> None:
    if not entities:
        return
    await s.execute(
        update(CentralAlarm)
        .where(
            CentralAlarm.alarm_id == alarm_id,
            CentralAlarm.entity.in_(entities),
            CentralAlarm.state == "active",
        )
        .values(state="cleared", cleared_at=now)
        .execution_options(synchronize_session=False)
    )
