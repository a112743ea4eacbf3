"""Central's own store: the sites it knows and the alarms it raises about them.

Separate from a site's store (store/models.py): its own metadata and its own Alembic history
(central/migrations, version table ``central_alembic_version``), so a central and a site never
share a schema even when they share a PostgreSQL server.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from edgecloud.store.models import NAMING, UtcDateTime, new_id, utcnow


class CentralBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UtcDateTime()}


class Site(CentralBase):
    """A site central orchestrates: added with a one-time join token, then connected by its
    controller (``state``: pending until it joined, then online or offline)."""

    __tablename__ = "sites"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|online|offline
    token_hash: Mapped[str | None] = mapped_column(String(128))  # None once used
    token_expires_at: Mapped[dt.datetime | None]
    cert_serial: Mapped[str | None] = mapped_column(String(64))  # the site's current certificate
    release: Mapped[str | None] = mapped_column(String(64))
    protocol: Mapped[int | None]
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # protocol/central.py
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    joined_at: Mapped[dt.datetime | None]
    last_seen_at: Mapped[dt.datetime | None]
    state_since: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # its desired state (central/deployments.py): bumped with every change of what it should
    # run; the version it last applied, as it said (``applied``) or at hello
    group: Mapped[str | None] = mapped_column(String(63), index=True)  # deploy/upgrade by group
    desired_version: Mapped[int] = mapped_column(default=0)
    applied_version: Mapped[int] = mapped_column(default=0)


class CentralAlarm(CentralBase):
    """An alarm central raises about a site (offline), cleared when the condition ends."""

    __tablename__ = "central_alarms"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    alarm_id: Mapped[str] = mapped_column(String(16), index=True)  # fm/catalogue.yaml
    severity: Mapped[str] = mapped_column(String(16))
    site_id: Mapped[str | None] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    entity: Mapped[str] = mapped_column(String(255), index=True)
    reason: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="active")  # active|cleared
    raised_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    cleared_at: Mapped[dt.datetime | None]


class CatalogueEntry(CentralBase):
    """A service template in central's catalogue (a HOT stack template)."""

    __tablename__ = "catalogue"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="stack")
    description: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text)
    revision: Mapped[int] = mapped_column(default=1)  # bumped when the body changes
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Deployment(CentralBase):
    """A catalogue template deployed to one site, under a name (the site's stack name)."""

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("site_id", "name"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63))
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    template: Mapped[str] = mapped_column(String(63))  # a catalogue entry's name
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # as the site last said: pending (not applied yet), in-sync, failed, conflict
    status: Mapped[str] = mapped_column(String(16), default="pending")
    message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
