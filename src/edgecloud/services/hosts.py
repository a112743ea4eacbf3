"""Hosts: adding (with a one-time join token), listing, locking/disabling, deleting.

Enrollment itself (token check, CSR signing) is in services/enrollment.py; availability
(online/offline) is set by services/availability.py from what the gateway sees.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.errors import Conflict
from edgecloud.pki import tokens
from edgecloud.services.context import ServiceContext
from edgecloud.store import controllers, instances, repository
from edgecloud.store.database import reading, transaction
from edgecloud.store.models import Host, JoinToken, utcnow


async def list_hosts(ctx: ServiceContext) -> list[Host]:
    async with reading(ctx.sessions) as s:
        return await repository.all_of(s, Host)


async def get_host(ctx: ServiceContext, name: str) -> Host:
    async with reading(ctx.sessions) as s:
        return await repository.by_name(s, Host, name, "host")


async def add_host(ctx: ServiceContext, name: str) -> tuple[Host, str, dt.datetime]:
    """Create the host record and a one-time join token for its agent."""
    async with transaction(ctx.sessions) as s:
        if await repository.find_by_name(s, Host, name) is not None:
            raise Conflict(f"host {name!r} already exists")
        host = Host(name=name)
        s.add(host)
        token, expires = await _new_token(ctx, s, name)
    return host, token, expires


async def new_join_token(ctx: ServiceContext, name: str) -> tuple[Host, str, dt.datetime]:
    """A fresh one-time token to (re-)enroll an existing host; older unused ones stop working,
    and so does the host's current certificate: its live session is closed at once (the
    gateway checks the serial when told the host changed) and the agent must enroll again."""
    async with transaction(ctx.sessions) as s:
        host = await repository.by_name(s, Host, name, "host")
        for old in await s.scalars(select(JoinToken).where(JoinToken.host_name == name)):
            old.used_at = old.used_at or utcnow()
        host.cert_serial = None
        token, expires = await _new_token(ctx, s, name)
    ctx.notifier.host_changed(host.id)
    return host, token, expires


async def _new_token(ctx: ServiceContext, s: AsyncSession, name: str) -> tuple[str, dt.datetime]:
    secret = tokens.new_secret()
    addresses = await controllers.gateways(s, ctx.settings.gateway_address)
    expires = utcnow() + dt.timedelta(seconds=ctx.settings.join_token_ttl)
    s.add(JoinToken(host_name=name, secret_hash=tokens.hash_secret(secret), expires_at=expires))
    token = tokens.JoinToken(
        address=ctx.settings.gateway_address,
        ca_fingerprint=ctx.ca_fingerprint,
        secret=secret,
        host=name,
        others=tuple(addresses[1:]),
    )
    return tokens.encode(token), expires


async def set_state(ctx: ServiceContext, name: str, state: str) -> Host:
    """Enable or disable a host (disabled hosts get no new instances). A locked host changes
    only through unlock (services/maintenance.py)."""
    async with transaction(ctx.sessions) as s:
        host = await repository.by_name(s, Host, name, "host")
        if host.state == "locked":
            raise Conflict(
                f"host {name} is locked: unlock it first (`edgecloud host unlock {name}`)"
            )
        host.state = state
    if state == "enabled":
        await requeue_unscheduled(ctx)
    return host


async def delete_host(ctx: ServiceContext, name: str) -> None:
    """Forget a host; refused while instances are placed on it. Its certificate stops working."""
    async with transaction(ctx.sessions) as s:
        host = await repository.by_name(s, Host, name, "host")
        placed = await instances.on_host(s, host.id)
        if placed:
            names = ", ".join(i.name for i in placed[:5])
            raise Conflict(f"host {name!r} still has {len(placed)} VNF(s): {names}")
        for token in await s.scalars(select(JoinToken).where(JoinToken.host_name == name)):
            await s.delete(token)
        await s.delete(host)
    ctx.notifier.host_changed(host.id)


async def requeue_unscheduled(ctx: ServiceContext) -> None:
    """Ask the scheduler to try again for every instance still waiting for a host."""
    async with transaction(ctx.sessions) as s:
        waiting = await instances.waiting_for_host(s)
    for instance_id in waiting:
        ctx.notifier.instance_changed(instance_id)
