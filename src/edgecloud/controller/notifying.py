"""Where a change notice goes: this process's reconcilers (while it leads) and its gateway,
and, on PostgreSQL, every other controller process (store/change_feed.py).

Services call the ``Notifier`` methods (services/context.py) after a commit. ``Notices``
delivers each call here at once and publishes it to the feed; a notice from another process
arrives through ``deliver`` and is only delivered here. So an API write on a follower wakes the
leader's reconcilers, and a placement by the leader reaches the host's agent whichever
controller it is connected to. Neighbours: controller/leader_work.py (the reconcilers),
gateway/gateway.py ``host_changed``, controller/relaying.py (node requests of another
controller), controller/ca_following.py (a CA rotation step, sent by the CLI's transaction),
controller/site.py (wires it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from edgecloud.controller.leader_work import LeaderWork
from edgecloud.controller.relaying import DONE, REQUEST, RelayedCalls
from edgecloud.controller.site_ca_rotation import NOTICE as SITE_CA_CHANGED
from edgecloud.gateway.gateway import Gateway
from edgecloud.gateway.presence import Announcement
from edgecloud.services.context import ChainSteer
from edgecloud.store.change_feed import ChangeFeed

log = logging.getLogger(__name__)

# presence.py's announcements: key "HOLDER HOST" for held and released, "HOLDER SEQ" for the
# heartbeat and the end of a whole list (unique, so it stays behind the list's lines in the feed)
# "presence_wanted HOLDER": a controller that starts or lost notices asks for everyone's list
PRESENCE = ("host_held", "host_released", "holder_alive", "hosts_listed", "presence_wanted")
KINDS = (
    "instance_changed",
    "host_changed",
    "steering_changed",
    "chain_changed",
    "host_maintenance",
    "migration_changed",
    *PRESENCE,
    SITE_CA_CHANGED,
    REQUEST,
    DONE,
)


class Notices:
    """A ``Notifier`` for the controller: local routing plus the cross-process feed."""

    def __init__(
        self, gateway: Gateway, work: LeaderWork | None = None, holder: str = "controller"
    ) -> None:
        self.work = work
        self.holder = holder  # this controller's id, in its presence announcements
        self._said = 0
        self.gateway = gateway
        self.feed: ChangeFeed | None = None
        self.relay: RelayedCalls | None = None  # node requests across controllers (relaying.py)
        self.site_ca: Callable[[], None] | None = None  # a CA rotation step (ca_following.py)

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

    def hosts_present(self, said: Announcement) -> None:
        """Tell the other controllers which hosts' agents are connected here (the gateway
        calls it every liveness check; gateway/presence.py)."""
        feed, holder = self.feed, self.holder
        if feed is None:
            return
        for host_id in said.released:
            feed.publish("host_released", f"{holder} {host_id}")
        for host_id in said.held:
            feed.publish("host_held", f"{holder} {host_id}")
        self._said += 1
        feed.publish("hosts_listed" if said.complete else "holder_alive", f"{holder} {self._said}")

    def want_presence(self) -> None:
        """Ask every other controller for its whole list of hosts at its next check (this
        one has just started, or its feed reconnected and notices may be lost)."""
        if self.feed is not None:
            self.feed.publish("presence_wanted", self.holder)

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
        elif kind in PRESENCE:
            holder, _, last = key.rpartition(" ") if kind != "presence_wanted" else (key, "", "")
            if kind == "host_held":
                self.gateway.presence_elsewhere(holder, held=last, released=None)
            elif kind == "host_released":
                self.gateway.presence_elsewhere(holder, held=None, released=last)
            elif kind == "hosts_listed":
                self.gateway.listed_elsewhere(holder)
            elif kind == "presence_wanted":
                self.gateway.announcer.resend_all()
            else:
                self.gateway.presence_elsewhere(holder, held=None, released=None)
        elif kind == SITE_CA_CHANGED:
            if self.site_ca is not None:
                self.site_ca()
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
