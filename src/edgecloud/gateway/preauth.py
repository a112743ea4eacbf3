"""Limits on peers the gateway has not authenticated yet: nothing an anonymous peer can exhaust.

A connection is *pre-auth* from accept until its TLS handshake ends with a client certificate
of the site CA (then it is an agent: the serial check and admission.py's sync stage follow).
Anonymous peers (enrollment: ``get_ca``, ``enroll``) stay pre-auth for their one request. While
pre-auth a connection counts against ``preauth_per_source`` (one source address: a connection
beyond it is closed at accept, before any TLS work; ``refused`` counts them) and
``preauth_max`` (the whole gateway: a new connection beyond it evicts the *oldest* pre-auth
connection; ``evicted`` counts them). Evicting rather than refusing matters: peers that hold
connections open fill the table, and refusing newcomers would lock out the agents too, while
an agent's own handshake takes milliseconds, so it is almost never the oldest. Each pre-auth connection is also bounded in time
(TLS handshake: listener.TLS_HANDSHAKE_TIMEOUT; the anonymous request: ``preauth_timeout``) and
in size (``preauth_frame``: an enrollment request with a CSR is about 1 KiB; the 16 MiB frame
limit of protocol/framing.py applies only after authentication). So one source holds at most
``preauth_per_source`` sockets for at most a few seconds each, and all sources together at
most ``preauth_max`` (about 100 KiB of TLS state each: ~100 MiB at the default).

The limits live in admission.py's ``Protection`` (off in the simulator's baseline).
Neighbours: gateway.py (admits at accept, releases once authenticated or closed).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from edgecloud.gateway.admission import Protection


class PreAuth:
    """Counts pre-auth connections, globally and per source address."""

    def __init__(self, protection: Protection) -> None:
        self.protection = protection
        self.by_source: Counter[str] = Counter()
        self._held: dict[Ticket, None] = {}  # oldest first
        self.refused = 0
        self.evicted = 0

    @property
    def total(self) -> int:
        return len(self._held)

    def admit(self, source: str) -> Ticket | None:
        """A ticket for a new connection from ``source``, None when its source is over its
        limit (close it); over the total limit the oldest pre-auth connection is evicted."""
        p = self.protection
        if p.enabled and self.by_source[source] >= p.preauth_per_source:
            self.refused += 1
            return None
        while p.enabled and self._held and self.total >= p.preauth_max:
            self.evicted += 1
            next(iter(self._held)).evict()
        ticket = Ticket(self, source)
        self._held[ticket] = None
        self.by_source[source] += 1
        return ticket

    def _release(self, ticket: Ticket) -> None:
        del self._held[ticket]
        self.by_source[ticket.source] -= 1
        if self.by_source[ticket.source] <= 0:
            del self.by_source[ticket.source]


class Ticket:
    """One pre-auth connection's place; ``release`` (idempotent) when authenticated or closed;
    ``on_evict`` ends the connection when a newer one needs the place."""

    def __init__(self, preauth: PreAuth, source: str) -> None:
        self._preauth, self.source, self._held = preauth, source, True
        self.on_evict: Callable[[], object] | None = None

    def release(self) -> None:
        if self._held:
            self._held = False
            self._preauth._release(self)

    def evict(self) -> None:
        self.release()
        if self.on_evict is not None:
            self.on_evict()
