"""Where a change notice goes: this process's reconcilers (while it leads) and its gateway,
and, on PostgreSQL, every other controller process (store/change_feed.py).

Services call the ``Notifier`` methods (services/context.py) after a commit. ``Notices``
delivers each call here at once and publishes it to the feed; a notice from another process
arrives through ``deliver`` and is only delivered here. So an API write on a follower wakes the
leader's reconcilers, and a placement by the leader reaches the host's agent whichever
controller it is connected to. Neighbours: controller/leader_work.py (the reconcilers),
gateway/gateway.py ``host_changed``, controller/relaying.py (node requests of another
controller), controller/site.py (wires it).
"""

from __future__ import annotations

import logging

from edgecloud.controller.leader_work import LeaderWork
from edgecloud.controller.relaying import DONE, REQUEST, RelayedCalls
from edgecloud.gateway.gateway import Gateway
from edgecloud.services.context import ChainSteer
from edgecloud.store.change_feed import ChangeFeed

log = logging.getLogger(__name__)

KINDS = (
    "instance_changed",
    "host_changed",
    "steering_changed",
    "chain_changed",
    "host_maintenance",
    "migration_changed",
    "host_present",
    REQUEST,
    DONE,
)


class Notices:
    """A ``Notifier`` for the controller: local routing plus the cross-process feed."""

    def __init__(self, gateway: Gateway, work: LeaderWork | None = None) -> None:
        self.work = work
        self.gateway = gateway
        self.feed: ChangeFeed | None = None
        self.relay: RelayedCalls | None = None  # node requests across controllers (relaying.py)

    def instance_changed(self, instance_id: str) -> None:
        self._notice("instance_changed", instance_id)

    def host_changed(self, host_id: str) -> None:
        self._notice("host_changed", host_id)

    def steering_changed(self, host_id: str, change: ChainSteer | None = None) -> None:
        """To this process's gateway with the change; to the others as a notice (their
        gateway reads the host's table if it holds the host's session)."""
        self.gateway.steering_changed(host_id, change)
        if self.feed is not None:
            self.feed.publish("steering_changed", host_id)

    def chain_changed(self, chain_id: str) -> None:
        self._notice("chain_changed", chain_id)

    def host_maintenance(self, host_id: str) -> None:
        self._notice("host_maintenance", host_id)

    def migration_changed(self, migration_id: str) -> None:
        self._notice("migration_changed", migration_id)

    def hosts_present(self, host_ids: list[str]) -> None:
        """Tell the other controllers which hosts' agents are connected here (the gateway
        calls it every liveness check; gateway/presence.py)."""
        if self.feed is not None:
            for host_id in host_ids:
                self.feed.publish("host_present", host_id)

    def _notice(self, kind: str, key: str) -> None:
        self.deliver(kind, key)
        if self.feed is not None:
            self.feed.publish(kind, key)

    def deliver(self, kind: str, key: str) -> None:
        """Act on a notice in this process only."""
        work = self.work
        if kind == "host_changed":
            self.gateway.host_changed(key)
        elif kind == "steering_changed":
            self.gateway.steering_changed(key)
        elif kind == "host_present":
            self.gateway.present_elsewhere(key)
        elif kind in (REQUEST, DONE):
            if self.relay is not None:
                self.relay.deliver(kind, key)
        elif work is None:
            return
        elif kind == "instance_changed" and work.instances is not None:
            work.instances.enqueue(key)
        elif kind == "chain_changed" and work.chains is not None:
            work.chains.enqueue(key)
        elif kind == "host_maintenance" and work.maintenance is not None:
            work.maintenance.enqueue(key)
        elif kind == "migration_changed" and work.migrations is not None:
            work.migrations.enqueue(key)
        elif kind not in KINDS:
            log.warning("unknown change notice %r (a newer controller?)", kind)
