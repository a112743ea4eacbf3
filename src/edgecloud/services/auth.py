"""API bearer tokens: the admin token made at first start, checking presented tokens, and their
lifecycle (create, list, rotate, revoke).

A token is an identity: its name (the holder: a person or a tool), a role (ROLES) and an
optional customer scope. Only the secret's SHA-256 is stored; the secret is shown once, when
it is made (create, rotate). Every request checks the token against the store (no cache), so
a revoked, rotated-away or expired secret is refused from the next request on. What each role
and scope may do is services/authorization.py's job; api/deps.py calls both.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.errors import Conflict, InvalidInput, NotFound, Unauthorized
from edgecloud.services.context import ServiceContext
from edgecloud.store.database import transaction
from edgecloud.store.models import ApiToken, as_utc, utcnow

ROLES = ("admin", "operator", "reader")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")  # as every name in the API
PREFIX = "ec_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name, role and customer scope (None: every customer)."""

    name: str
    role: str
    customer: str | None = None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


async def ensure_admin_token(ctx: ServiceContext) -> str | None:
    """Create the admin token if none exists; returns it only when newly created."""
    async with transaction(ctx.sessions) as s:
        if (await s.scalars(select(ApiToken).where(ApiToken.name == "admin"))).first():
            return None
        token = _secret()
        s.add(ApiToken(name="admin", token_hash=_hash(token), role="admin"))
    return token


async def check_token(ctx: ServiceContext, token: str) -> Principal:
    """Who holds this secret; Unauthorized when it is unknown, revoked or expired."""
    async with transaction(ctx.sessions) as s:
        query = select(ApiToken).where(ApiToken.token_hash == _hash(token))
        row = (await s.scalars(query)).first()
    if row is None:
        raise Unauthorized("the API token is not valid for this site")
    if row.revoked_at is not None:
        raise Unauthorized(f"the API token {row.name!r} has been revoked")
    if row.expires_at is not None and as_utc(row.expires_at) <= utcnow():
        raise Unauthorized(f"the API token {row.name!r} has expired")
    return Principal(row.name, row.role, row.customer)


def _check(name: str, role: str, customer: str | None, expires_in: float | None) -> None:
    if not NAME.match(name):
        raise InvalidInput(
            "a token name is 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit",
            field="name",
        )
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", field="role")
    if customer is not None and role == "admin":
        raise InvalidInput("an admin token cannot be scoped to a customer", field="customer")
    if expires_in is not None and expires_in <= 0:
        raise InvalidInput("expires_in must be a positive number of seconds", field="expires_in")


def _expiry(expires_in: float | None) -> dt.datetime | None:
    return None if expires_in is None else utcnow() + dt.timedelta(seconds=expires_in)


async def create_token(
    ctx: ServiceContext,
    name: str,
    role: str,
    customer: str | None = None,
    expires_in: float | None = None,
) -> tuple[ApiToken, str]:
    """A new token and its secret (shown once); ``expires_in`` seconds, None: never."""
    _check(name, role, customer, expires_in)
    secret = _secret()
    async with transaction(ctx.sessions) as s:
        if (await s.scalars(select(ApiToken).where(ApiToken.name == name))).first():
            raise Conflict(f"token {name!r} already exists")
        row = ApiToken(
            name=name,
            token_hash=_hash(secret),
            role=role,
            customer=customer,
            expires_at=_expiry(expires_in),
        )
        s.add(row)
    return row, secret


async def list_tokens(ctx: ServiceContext) -> list[ApiToken]:
    async with transaction(ctx.sessions) as s:
        return list(await s.scalars(select(ApiToken).order_by(ApiToken.name)))


async def get_token(ctx: ServiceContext, name: str) -> ApiToken:
    async with transaction(ctx.sessions) as s:
        return await _token(s, name)


async def _token(s: AsyncSession, name: str) -> ApiToken:
    row = (await s.scalars(select(ApiToken).where(ApiToken.name == name))).first()
    if row is None:
        raise NotFound(f"no token named {name!r}")
    return row


async def rotate_token(
    ctx: ServiceContext, name: str, expires_in: float | None = None
) -> tuple[ApiToken, str]:
    """A new secret for the same identity; the old secret is refused from now on.
    ``expires_in``: a new lifetime from now; None keeps the current expiry."""
    if expires_in is not None and expires_in <= 0:
        raise InvalidInput("expires_in must be a positive number of seconds", field="expires_in")
    secret = _secret()
    async with transaction(ctx.sessions) as s:
        row = await _token(s, name)
        if row.revoked_at is not None:
            raise Conflict(f"token {name!r} is revoked; create a new one")
        row.token_hash = _hash(secret)
        row.rotated_at = utcnow()
        if expires_in is not None:
            row.expires_at = _expiry(expires_in)
    return row, secret


async def revoke_token(ctx: ServiceContext, name: str) -> ApiToken:
    """Refuse the token from now on (kept, marked revoked, so list and audit still name it).
    The last usable admin token cannot be revoked: the site would have no administrator."""
    async with transaction(ctx.sessions) as s:
        row = await _token(s, name)
        if row.revoked_at is not None:
            return row
        if row.role == "admin":
            admins = await s.scalars(
                select(ApiToken).where(ApiToken.role == "admin", ApiToken.revoked_at.is_(None))
            )
            usable = [a for a in admins if not _expired(a)]
            if usable == [row]:
                raise Conflict(f"token {name!r} is the last admin token; create another first")
        row.revoked_at = utcnow()
    return row


def _expired(row: ApiToken) -> bool:
    return row.expires_at is not None and as_utc(row.expires_at) <= utcnow()


def state(row: ApiToken) -> str:
    """active, expired or revoked."""
    if row.revoked_at is not None:
        return "revoked"
    return "expired" if _expired(row) else "active"
