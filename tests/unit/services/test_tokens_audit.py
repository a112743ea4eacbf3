"""services/auth.py token lifecycle and services/audit.py retention, on a real SQLite store:
a revoked, rotated-away or expired secret is refused on the very next check (no cache); the
last admin cannot be revoked; the audit log never holds more than its bound."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import update

from edgecloud.errors import Conflict, InvalidInput, Unauthorized
from edgecloud.services import audit, auth
from edgecloud.services.context import ServiceContext, SiteSettings
from edgecloud.store.database import make_engine, migrate, session_factory, sqlite_url, transaction
from edgecloud.store.models import ApiToken, AuditRecord, as_utc, utcnow


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[ServiceContext]:
    engine = make_engine(sqlite_url(tmp_path))
    await migrate(engine)
    try:
        yield ServiceContext(sessions=session_factory(engine))
    finally:
        await engine.dispose()


async def test_a_token_is_its_name_role_and_scope(ctx: ServiceContext) -> None:
    row, secret = await auth.create_token(ctx, "acme-ops", "operator", "acme")
    assert secret.startswith("ec_") and row.token_hash != secret
    assert await auth.check_token(ctx, secret) == auth.Principal("acme-ops", "operator", "acme")
    with pytest.raises(Conflict):
        await auth.create_token(ctx, "acme-ops", "reader")


@pytest.mark.parametrize(
    ("name", "role", "customer", "expires_in", "field"),
    [
        ("bad name", "reader", None, None, "name"),
        ("x", "root", None, None, "role"),
        ("x", "admin", "acme", None, "customer"),
        ("x", "reader", None, 0, "expires_in"),
    ],
)
async def test_bad_tokens_are_refused_naming_the_field(
    ctx: ServiceContext,
    name: str,
    role: str,
    customer: str | None,
    expires_in: float | None,
    field: str,
) -> None:
    with pytest.raises(InvalidInput) as refused:
        await auth.create_token(ctx, name, role, customer, expires_in)
    assert refused.value.field == field
    assert [t.name for t in await auth.list_tokens(ctx)] == []


async def test_revoked_token_is_refused_at_once(ctx: ServiceContext) -> None:
    _, secret = await auth.create_token(ctx, "eyes", "reader")
    await auth.check_token(ctx, secret)
    await auth.revoke_token(ctx, "eyes")
    with pytest.raises(Unauthorized, match="revoked"):
        await auth.check_token(ctx, secret)
    assert auth.state(await auth.get_token(ctx, "eyes")) == "revoked"
    with pytest.raises(Conflict, match="revoked"):
        await auth.rotate_token(ctx, "eyes")


async def test_expired_token_is_refused(ctx: ServiceContext) -> None:
    _, secret = await auth.create_token(ctx, "temp", "reader", expires_in=3600)
    await auth.check_token(ctx, secret)
    async with transaction(ctx.sessions) as s:  # an hour later, without waiting an hour
        past = utcnow() - dt.timedelta(seconds=1)
        await s.execute(update(ApiToken).where(ApiToken.name == "temp").values(expires_at=past))
    with pytest.raises(Unauthorized, match="expired"):
        await auth.check_token(ctx, secret)
    assert auth.state(await auth.get_token(ctx, "temp")) == "expired"
    _, renewed = await auth.rotate_token(ctx, "temp", expires_in=60)
    assert (await auth.check_token(ctx, renewed)).name == "temp"


async def test_rotation_keeps_the_identity_and_drops_the_old_secret(ctx: ServiceContext) -> None:
    created, old = await auth.create_token(ctx, "ci", "operator", "acme", expires_in=600)
    rotated, new = await auth.rotate_token(ctx, "ci")
    assert new != old and rotated.expires_at is not None and created.expires_at is not None
    assert as_utc(rotated.expires_at) == as_utc(created.expires_at)
    with pytest.raises(Unauthorized, match="not valid"):
        await auth.check_token(ctx, old)
    assert await auth.check_token(ctx, new) == auth.Principal("ci", "operator", "acme")


async def test_the_last_admin_token_cannot_be_revoked(ctx: ServiceContext) -> None:
    first = await auth.ensure_admin_token(ctx)
    assert first is not None and await auth.ensure_admin_token(ctx) is None
    with pytest.raises(Conflict, match="last admin"):
        await auth.revoke_token(ctx, "admin")
    await auth.create_token(ctx, "second-admin", "admin")
    await auth.revoke_token(ctx, "admin")
    with pytest.raises(Unauthorized):
        await auth.check_token(ctx, first)
    with pytest.raises(Conflict, match="last admin"):
        await auth.revoke_token(ctx, "second-admin")


async def test_audit_log_keeps_at_most_its_count(ctx: ServiceContext) -> None:
    ctx.settings = SiteSettings(audit_max_records=5)
    for n in range(12):
        await audit.record(ctx, "ops", "POST /v1/networks", f"/v1/networks/n{n}", 201, "::1")
    assert await audit.count(ctx) == 5
    newest = await audit.list_records(ctx)
    assert [r.target for r in newest] == [f"/v1/networks/n{n}" for n in range(11, 6, -1)]


async def test_anonymous_calls_cannot_push_out_authenticated_records(ctx: ServiceContext) -> None:
    ctx.settings = SiteSettings(audit_max_records=10, audit_max_anonymous=3)
    for n in range(6):
        await audit.record(ctx, "ops", "POST /v1/networks", f"/v1/networks/n{n}", 201, "::1")
    for n in range(50):
        await audit.record(ctx, audit.ANONYMOUS, "POST /v1/hosts", "/v1/hosts", 401, f"10.0.0.{n}")
    kept = await audit.list_records(ctx)
    assert [r.client for r in kept if r.actor == audit.ANONYMOUS] == [
        "10.0.0.49",
        "10.0.0.48",
        "10.0.0.47",
    ]
    assert [r.target for r in kept if r.actor == "ops"] == [
        f"/v1/networks/n{n}" for n in range(5, -1, -1)
    ]
    assert await audit.count(ctx) == 9
    for n in range(12):
        await audit.record(ctx, "ops", "POST /v1/networks", f"/v1/networks/m{n}", 201, "::1")
    assert await audit.count(ctx) == 13  # 10 authenticated, 3 anonymous
    for _ in range(5):  # a refused enrollment proves nothing either
        await audit.record(ctx, "join-token:x", "enroll", "host x", 403, "10.0.1.1", anonymous=True)
    assert await audit.count(ctx) == 13


async def test_audit_log_drops_records_past_their_age(ctx: ServiceContext) -> None:
    ctx.settings = SiteSettings(audit_max_age=3600)
    await audit.record(ctx, "ops", "DELETE /v1/vnfs/{name}", "/v1/vnfs/old", 202, "10.0.0.1")
    async with transaction(ctx.sessions) as s:
        old = utcnow() - dt.timedelta(hours=2)
        await s.execute(update(AuditRecord).values(at=old))
    await audit.record(ctx, "ops", "DELETE /v1/vnfs/{name}", "/v1/vnfs/new", 202, "10.0.0.1")
    assert [r.target for r in await audit.list_records(ctx)] == ["/v1/vnfs/new"]


async def test_audit_filters(ctx: ServiceContext) -> None:
    await audit.record(ctx, "a", "POST /v1/chains", "/v1/chains/c1", 202, "h")
    await audit.record(ctx, "b", "DELETE /v1/chains/{name}", "/v1/chains/c10", 202, "h")
    await audit.record(ctx, "b", "POST /v1/chains/{name}/order", "/v1/chains/c1/order", 403, "h")
    await audit.record(ctx, "b", "POST /v1/networks", "/v1/networks/c1_", 201, "h")
    assert [r.target for r in await audit.list_records(ctx, actor="a")] == ["/v1/chains/c1"]
    by_target = await audit.list_records(ctx, target="/v1/chains/c1/")
    assert [r.status for r in by_target] == [403]
    assert len(await audit.list_records(ctx, target="/v1/networks/c1_")) == 1
    assert len(await audit.list_records(ctx, target="/v1/networks/c1%")) == 0
    async with transaction(ctx.sessions) as s:
        await s.execute(
            update(AuditRecord)
            .where(AuditRecord.actor == "a")
            .values(at=utcnow() - dt.timedelta(hours=1))
        )
    since = (utcnow() - dt.timedelta(minutes=30)).astimezone(dt.timezone(dt.timedelta(hours=2)))
    assert {r.actor for r in await audit.list_records(ctx, since=since)} == {"b"}
    assert await audit.list_records(ctx, since=utcnow() + dt.timedelta(seconds=5)) == []
    assert len(await audit.list_records(ctx, limit=2)) == 2
