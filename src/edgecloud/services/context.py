"""What services need from the rest of the controller, as small injected interfaces."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud.images.blobs import BlobStore
from edgecloud.pki.software import SignedManifest

HostSteering = tuple[int, dict[str, Any]]  # a host's desired version, its steering section


class ChainSteer(NamedTuple):
    """One chain's flows on a host before and after a change (snapshot form:
    chains/planning.py ``to_wire``), and the host's desired version with the change."""

    version: int
    before: dict[str, Any]
    after: dict[str, Any]


class Notifier(Protocol):
    """Told after a commit that something needs reconciling."""

    def instance_changed(self, instance_id: str) -> None: ...

    def host_changed(self, host_id: str) -> None: ...

    def steering_changed(self, host_id: str, change: ChainSteer | None = None) -> None:
        """A chain path change altered the host's flows (``host_changed`` follows): they may
        go to the node ahead of the whole snapshot (gateway/steering.py); ``change``: the
        chain's flows there before -> after, as committed, when the caller has them (a notice
        from another controller process has not: that gateway reads the host's table)."""

    def chain_changed(self, chain_id: str) -> None: ...

    def host_maintenance(self, host_id: str) -> None: ...

    def migration_changed(self, migration_id: str) -> None: ...


class ManifestSigner(Protocol):
    """Signs a software package's manifest with the site's software-signing key
    (pki/software.py ``SiteSigner``)."""

    def sign(self, manifest: dict[str, Any]) -> SignedManifest: ...


class NodeCalls(Protocol):
    """Requests to a node's agent over its channel (console, probes, ...)."""

    async def call(self, host_id: str, op: str, args: dict[str, Any], timeout: float) -> Any: ...


class NullNotifier:
    """A notifier that ignores everything (tools and tests that need no reconciling)."""

    def instance_changed(self, instance_id: str) -> None:
        return None

    def host_changed(self, host_id: str) -> None:
        return None

    def steering_changed(self, host_id: str, change: ChainSteer | None = None) -> None:
        return None

    def chain_changed(self, chain_id: str) -> None:
        return None

    def host_maintenance(self, host_id: str) -> None:
        return None

    def migration_changed(self, migration_id: str) -> None:
        return None


@dataclass
class SiteSettings:
    """Site-wide settings that services apply."""

    gateway_address: str = "127.0.0.1:7444"
    controller_id: str = ""  # this controller process (store/controllers.py)
    join_token_ttl: float = 3600.0
    heartbeat_interval: float = 10.0
    heartbeat_misses: int = 3  # a host is lost after this many silent intervals
    # failed hosts' VNFs are recovered elsewhere and agents fence themselves (recovery.py)
    host_recovery: bool = False
    audit_max_records: int = 100_000  # services/audit.py: the newest kept ...
    audit_max_anonymous: int = 10_000  # ... and of calls without a valid token ...
    audit_max_age: float = 90 * 86400.0  # ... and none older (seconds)


@dataclass
class ServiceContext:
    sessions: async_sessionmaker[AsyncSession]
    notifier: Notifier = field(default_factory=NullNotifier)
    nodes: NodeCalls | None = None
    settings: SiteSettings = field(default_factory=SiteSettings)
    ca_fingerprint: str = ""
    images: BlobStore | None = None  # the site's image store (services/images.py)
    signer: ManifestSigner | None = None  # signs software packages (services/software.py)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict, repr=False)
    _wakeups: dict[str, asyncio.Event] = field(default_factory=dict, repr=False)

    def lock(self, name: str) -> asyncio.Lock:
        """A lock shared by everything using this context (this controller process), by name:
        work that two callers must not do at once (an asyncio lock binds to one event loop,
        so it lives with the context, not in a module)."""
        return self._locks.setdefault(name, asyncio.Lock())

    def wakeup(self, name: str) -> asyncio.Event:
        """An event shared in this controller process, by name: a loop that polls slowly
        while idle waits on it, and what gives it work sets it (e.g. ``upgrade start``)."""
        return self._wakeups.setdefault(name, asyncio.Event())
