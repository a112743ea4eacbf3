"""The audit log: every mutating API call (api/auditing.py) and every node enrollment
(gateway/enrolling.py), with who, what, target, result, when and from where.

Retention is bounded on write, in two classes: calls without a valid token (actor
ANONYMOUS) and refused enrollments (anyone can make them, so they must never push the
others out) keep their newest
``SiteSettings.audit_max_anonymous``, every other record (authenticated calls, enrollments)
its newest ``audit_max_records``; and nothing older than ``audit_max_age`` seconds. Each
record's transaction numbers it in its class (``seq``: the class's highest plus one) and
deletes what falls out of the class's window, both by the (anonymous, seq) index, and what is
too old, by the time index: cheap at any size. Two PostgreSQL transactions at once may take
the same number; the bound then holds to within the number of concurrent writers.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, func, select

from edgecloud.services.context import ServiceContext
from edgecloud.store.database import transaction
from edgecloud.store.models import AuditRecord, utcnow

ANONYMOUS = "-"
MAX_LIMIT = 1000


def _clip(text: str, size: int = 255) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


async def record(
    ctx: ServiceContext,
    actor: str,
    action: str,
    target: str,
    status: int,
    client: str,
    anonymous: bool | None = None,
) -> None:
    """Store one record and prune its class beyond its bound, in one transaction.
    ``anonymous``: made by someone who proved nothing (default: the actor is ANONYMOUS)."""
    settings = ctx.settings
    anonymous = actor == ANONYMOUS if anonymous is None else anonymous
    bound = settings.audit_max_anonymous if anonymous else settings.audit_max_records
    in_class = AuditRecord.anonymous.is_(anonymous)
    async with transaction(ctx.sessions) as s:
        last = await s.scalar(select(func.max(AuditRecord.seq)).where(in_class))
        seq = (last or 0) + 1
        s.add(
            AuditRecord(
                actor=_clip(actor, 63),
                action=_clip(action),
                target=_clip(target),
                status=status,
                client=_clip(client),
                anonymous=anonymous,
                seq=seq,
            )
        )
        oldest = utcnow() - dt.timedelta(seconds=settings.audit_max_age)
        await s.execute(delete(AuditRecord).where(in_class, AuditRecord.seq <= seq - bound))
        await s.execute(delete(AuditRecord).where(AuditRecord.at < oldest))


async def list_records(
    ctx: ServiceContext,
    since: dt.datetime | None = None,
    actor: str | None = None,
    target: str | None = None,
    limit: int = 100,
) -> list[AuditRecord]:
    """The newest records first; ``target`` matches a prefix (``/v1/chains/c1`` also finds
    its services' changes)."""
    query = select(AuditRecord).order_by(AuditRecord.id.desc()).limit(min(limit, MAX_LIMIT))
    if since is not None:  # compared in UTC: SQLite keeps no zone
        query = query.where(AuditRecord.at >= since.astimezone(dt.UTC))
    if actor is not None:
        query = query.where(AuditRecord.actor == actor)
    if target is not None:
        escaped = target.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(AuditRecord.target.like(escaped + "%", escape="\\"))
    async with transaction(ctx.sessions) as s:
        return list(await s.scalars(query))


async def count(ctx: ServiceContext) -> int:
    async with transaction(ctx.sessions) as s:
        return int((await s.scalar(select(func.count()).select_from(AuditRecord))) or 0)
