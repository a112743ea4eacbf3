"""Hosts whose agents are connected to another controller process of the site.

With several controllers on one store (docs/architecture.md, Leadership) an agent holds a
session with one of them, and the leader judges every host's liveness. Each gateway announces
its connected hosts every liveness check (a ``host_present`` change notice over the store's
LISTEN/NOTIFY, controller/notifying.py); the leader's gateway keeps here when each host was
last announced elsewhere. A host announced within the liveness limit is present (not missing);
one whose announcements stop (its controller died, its session ended there) is handed back
to the gateway's missing hosts, counted from its last announcement, and judged as if its
session had ended then. When this controller begins to lead, everything it heard before
counts from that moment (``restamp``; the gateway does the same with the sessions that ended
here, ``Gateway.new_term``). A pure map of the clock, tested without a network; empty on a site
with one controller. Neighbours: gateway/gateway.py (``present_elsewhere``, liveness checks).
"""

from __future__ import annotations


class Presence:
    """host id -> when (monotonic) another controller last announced its session."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, host_id: object) -> bool:
        return host_id in self._seen

    def announced(self, host_id: str, now: float) -> None:
        self._seen[host_id] = now

    def forget(self, host_id: str) -> None:
        """The host's session is here now."""
        self._seen.pop(host_id, None)

    def restamp(self, now: float) -> None:
        """Count every host as announced at ``now``: what was heard before may be stale (a
        new term of leadership often begins after the store was unreachable, when the other
        controllers' announcements were lost), so each gets the liveness limit from now."""
        for host_id in self._seen:
            self._seen[host_id] = max(self._seen[host_id], now)

    def expired(self, now: float, limit: float) -> dict[str, float]:
        """Remove and return the hosts not announced for ``limit`` seconds, with when they
        last were."""
        out = {h: at for h, at in self._seen.items() if now - at > limit}
        for host_id in out:
            del self._seen[host_id]
        return out
