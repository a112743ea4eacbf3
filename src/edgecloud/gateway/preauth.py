"""Limits on peers the gateway has not authenticated yet: nothing an anonymous peer can exhaust.

A connection is *pre-auth* from accept until its TLS handshake ends with a client certificate
of the site CA (then it is an agent: the serial check and admission.py's sync stage follow).
Anonymous peers (enrollment: ``get_ca``, ``enroll``) stay pre-auth for their one request. While
pre-auth a connection counts against ``preauth_max`` (the whole gateway) and
``preauth_per_source`` (one source address); a connection beyond either is closed at accept,
before any TLS work (``refused`` counts them). Each pre-auth connection is also bounded in time
(TLS handshake: gateway.TLS_HANDSHAKE_TIMEOUT; the anonymous request: ``preauth_timeout``) and
in size (``preauth_frame``: an enrollment request with a CSR is about 1 KiB; the 16 MiB frame
limit of protocol/framing.py applies only after authentication). So one source holds at most
``preauth_per_source`` sockets for at most a few seconds each, and all sources together at
most ``preauth_max`` (about 100 KiB of TLS state each: ~100 MiB at the default).

The limits live in admission.py's ``Protection`` (off in the simulator's baseline).
Neighbours: gateway.py (admits at accept, releases once authenticated or closed).
"""

from __future__ import annotations

from collections import Counter

from edgecloud.gateway.admission import Protection


class PreAuth:
    """Counts pre-auth connections, globally and per source address."""

    def __init__(self, protection: Protection) -> None:
        self.protection = protection
        self.by_source: Counter[str] = Counter()
        self.total = 0
        self.refused = 0

    def admit(self, source: str) -> Ticket | None:
        """A ticket for a new connection from ``source``, None when over a limit (close it)."""
        p = self.protection
        if p.enabled and (
            self.total >= p.preauth_max or self.by_source[source] >= p.preauth_per_source
        ):
            self.refused += 1
            return None
        self.total += 1
        self.by_source[source] += 1
        return Ticket(self, source)

    def _release(self, source: str) -> None:
        self.total -= 1
        self.by_source[source] -= 1
        if self.by_source[source] <= 0:
            del self.by_source[source]


class Ticket:
    """One pre-auth connection's place; ``release`` (idempotent) when authenticated or closed."""

    def __init__(self, preauth: PreAuth, source: str) -> None:
        self._preauth, self._source, self._held = preauth, source, True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._preauth._release(self._source)
