"""Generic queries shared by the per-resource store modules."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.errors import NotFound

T = TypeVar("T")


async def by_name(session: AsyncSession, model: type[T], name: str, what: str) -> T:
    """The object of ``model`` called ``name``; NotFound names the kind and the name."""
    found = (await session.scalars(select(model).where(model.name == name))).first()  # type: ignore[attr-defined]
    if found is None:
        raise NotFound(f"no {what} named {name!r}")
    return found


async def find_by_name(session: AsyncSession, model: type[T], name: str) -> T | None:
    """The object called ``name``, or None."""
    return (await session.scalars(select(model).where(model.name == name))).first()  # type: ignore[attr-defined]


async def all_of(session: AsyncSession, model: type[T], *order: Any) -> list[T]:
    """Every object of ``model``, by name unless ``order`` is given."""
    query = select(model).order_by(*(order or (model.name,)))  # type: ignore[attr-defined]
    return list((await session.scalars(query)).unique())
