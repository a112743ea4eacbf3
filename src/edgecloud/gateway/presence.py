"""Hosts whose agents are connected to another controller process of the site.

With several controllers on one store (docs/architecture.md, Leadership) an agent holds a
session with one of them, and the leader judges every host's liveness. So each gateway tells
the others, over the store's LISTEN/NOTIFY (controller/notifying.py), which hosts it holds:
``Announcer`` turns its sessions at each liveness check into an ``Announcement`` (the hosts
newly held and released since the last check, and every ``FULL_EVERY`` checks all of them,
closed by a ``listed`` mark); every check carries the holder's heartbeat. ``Presence``, on the
receiving side, keeps which holder holds each host and when each holder last spoke. A host is
present while its holder speaks; when a holder falls silent for the liveness limit (its
controller died) all its hosts are handed back to the gateway's missing hosts, counted from
its last word; a released host is missing from when the release arrived; a full list prunes
the holder's hosts it did not name (a release lost while the feed was down). When this
controller begins to lead, every holder counts as having spoken at that moment (``restamp``;
the gateway does the same with the sessions that ended here, ``Gateway.new_term``).

So a controller sends one heartbeat per check plus its session changes, and its whole list
only every ``FULL_EVERY`` checks (before: every host id at every check, 2,000 ids a second
per controller at 10,000 hosts). Pure maps of the clock, tested without a network; empty on
a site with one controller. Neighbours: gateway/gateway.py (liveness checks),
controller/notifying.py (the notices).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

FULL_EVERY = 20  # checks: at interval/2 a check, a 1 s beat sends its whole list every 10 s


@dataclass(frozen=True)
class Announcement:
    """What a gateway tells the other controllers at one liveness check."""

    held: tuple[str, ...]  # newly held (all held when ``complete``)
    released: tuple[str, ...]
    complete: bool  # ``held`` is every host held here: the others prune the rest


@dataclass
class Announcer:
    """The sending side: one ``Announcement`` per liveness check."""

    full_every: int = FULL_EVERY
    _last: set[str] = field(default_factory=set)
    _checks: int = 0

    def next(self, sessions: Iterable[str]) -> Announcement:
        now = set(sessions)
        complete = self._checks % self.full_every == 0
        held = now if complete else now - self._last
        released = self._last - now
        self._last, self._checks = now, self._checks + 1
        return Announcement(tuple(sorted(held)), tuple(sorted(released)), complete)

    def resend_all(self) -> None:
        """Notices may have been lost (the feed reconnected): the whole list next check."""
        self._checks = 0


class Presence:
    """The receiving side: host id -> its holder; holder -> when it last spoke."""

    def __init__(self) -> None:
        self._holder_of: dict[str, str] = {}
        self._spoke: dict[str, float] = {}
        self._named: dict[str, set[str]] = {}  # hosts each holder named since its last list

    def __len__(self) -> int:
        return len(self._holder_of)

    def __contains__(self, host_id: object) -> bool:
        return host_id in self._holder_of

    def holding(self, holder: str, now: float) -> None:
        """The holder's heartbeat: its hosts are still connected there."""
        self._spoke[holder] = now

    def held(self, holder: str, host_id: str, now: float) -> None:
        self._holder_of[host_id] = holder
        self._spoke[holder] = now
        self._named.setdefault(holder, set()).add(host_id)

    def released(self, holder: str, host_id: str, now: float) -> dict[str, float]:
        """The host left the holder (ignored if it has moved to another holder since)."""
        if self._holder_of.get(host_id) != holder:
            return {}
        del self._holder_of[host_id]
        return {host_id: now}

    def listed(self, holder: str, now: float) -> dict[str, float]:
        """The holder's whole list is complete: its hosts it did not name are gone (now)."""
        self._spoke[holder] = now
        named = self._named.pop(holder, set())
        gone = [h for h, by in self._holder_of.items() if by == holder and h not in named]
        for host_id in gone:
            del self._holder_of[host_id]
        return dict.fromkeys(gone, now)

    def forget(self, host_id: str) -> None:
        """The host's session is here now."""
        self._holder_of.pop(host_id, None)

    def restamp(self, now: float) -> None:
        """Count every holder as having spoken at ``now``: what was heard before may be stale
        (a new term of leadership often begins after the store was unreachable, when the
        other controllers' announcements were lost), so their hosts get the liveness limit
        from now."""
        for holder, at in self._spoke.items():
            self._spoke[holder] = max(at, now)

    def expired(self, now: float, limit: float) -> dict[str, float]:
        """Remove and return the hosts of holders silent for ``limit`` seconds, with when
        their holder last spoke."""
        silent = {holder: at for holder, at in self._spoke.items() if now - at > limit}
        out = {h: silent[by] for h, by in self._holder_of.items() if by in silent}
        for host_id in out:
            del self._holder_of[host_id]
        for holder in silent:
            del self._spoke[holder]
            self._named.pop(holder, None)
        return out
