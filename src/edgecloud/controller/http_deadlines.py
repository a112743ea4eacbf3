"""A deadline on each request's headers at the REST API: slowloris peers are closed.

uvicorn (0.54, h11) arms no timer until a first response is complete: a peer that finishes
TLS and then sends a request's headers a byte every few seconds (slowloris) holds its socket
and its TLS state forever, and a few thousand such peers exhaust the controller's file
descriptors, agents' sockets included (the API and the gateway share one process). Its
``timeout_keep_alive`` covers only the silence between requests and is cancelled by the
first byte; ``limit_concurrency`` answers 503 to complete requests, never to half-sent ones;
and an ASGI layer (api/limits.py) never sees a request whose headers do not end.

So the protocol below (uvicorn's own, given to ``uvicorn.Config(http=...)``) gives each
request ``header_timeout`` seconds, from the connection's TLS handshake or the previous
response, to deliver its complete request line and headers, however it trickles them; when
the deadline passes with the headers unfinished the connection is closed, as Apache's
mod_reqtimeout (header=20-40) and nginx's client_header_timeout (60 s) do. A request whose
headers did arrive in time is never cut by it (its body and the app's work are bounded
elsewhere: api/limits.py). The count of closed connections is kept in ``closed``.

Neighbours: controller/site.py starts uvicorn with it.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT = 10.0  # API clients (CLI, SDK, browsers) send their headers in one packet


class HeaderDeadlines:
    """What the protocol instances of one server share: the deadline and a count."""

    def __init__(self, timeout: float = HEADER_TIMEOUT) -> None:
        self.timeout = timeout
        self.closed = 0

    def protocol(self) -> type[H11Protocol]:
        """uvicorn's h11 protocol with this deadline (a class: what ``Config.http`` takes)."""
        deadlines = self

        class DeadlineH11Protocol(_DeadlineH11Protocol):
            shared = deadlines

        return DeadlineH11Protocol


class _DeadlineH11Protocol(H11Protocol):
    shared: HeaderDeadlines
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request on this connection: the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.shared.timeout, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        # IDLE: h11 has not seen a whole request line and headers since the last response
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.shared.closed += 1
            self.transport.close()
