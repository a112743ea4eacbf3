"""One TLS port that peers dial out to: accept, limit, hand-shake, then hand the connection on.

Shared by the site controller's agent gateway (gateway.py: nodes) and central's site gateway
(central/site_gateway.py: site controllers). Per connection: a connection is accepted only when
a TLS handshake slot is free (admission.py, so the kernel's accept queue is the wait line); an
unauthenticated peer counts against limits per source address and in total (preauth.py) until
its certificate shows it is one of ours; the TLS handshake runs in our code
(``connect_accepted_socket``), so a refused certificate is logged with its reason; then
``serve(reader, writer, peer)`` has the connection, and what it raises ends it the same way for
every user: a protocol error is said to the peer before closing, a bug is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from asyncio import sslproto
from collections.abc import Awaitable, Callable
from typing import Any

from edgecloud.errors import EdgecloudError
from edgecloud.gateway.admission import Admission, GatewayStats, HandshakeLease, Protection
from edgecloud.gateway.preauth import PreAuth, Ticket
from edgecloud.protocol import messages
from edgecloud.protocol.framing import write_frame

log = logging.getLogger(__name__)
# A TLS handshake takes one round trip of work; one that has not finished in this time holds
# a handshake slot for nothing (at 10,000 nodes, 32 stalled handshakes froze admission for the
# whole 15 s that used to be the limit here).
TLS_HANDSHAKE_TIMEOUT = 5.0
UNBOUNDED_BACKLOG = 4096  # the accept queue without protections
TLS_READ_BUFFER = 32 * 1024

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter, str], Awaitable[None]]


def lean_tls_buffers(size: int = TLS_READ_BUFFER) -> None:
    """asyncio gives every TLS connection a 256 KiB read buffer (``SSLProtocol.max_size``,
    allocated and zeroed per connection): 2.5 GiB for 10,000 agents. A TLS record is at most
    16 KiB, so a smaller buffer only means more, smaller reads on bulk transfers. Applies to
    the whole process (the controller, central; the simulator's workers)."""
    sslproto.SSLProtocol.max_size = size


class TlsListener:
    """The accept loop and TLS handshake of one port; ``serve`` gets each connection."""

    def __init__(
        self,
        tls: Callable[[], ssl.SSLContext],
        serve: Serve,
        protection: Protection,
        stats: GatewayStats,
        peers: str = "agent",
    ) -> None:
        self.tls, self.serve, self.protection, self.stats = tls, serve, protection, stats
        self.peers = peers  # who dials this port, for the log ("agent", "site")
        self.admission = Admission(protection, stats)
        self.preauth = PreAuth(protection)
        self._socket: socket.socket | None = None
        self._acceptor: asyncio.Task[None] | None = None
        self.tasks: set[asyncio.Task[Any]] = set()  # connections, and work started beside them

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the port actually bound (``port`` 0 picks a free one)."""
        lean_tls_buffers()
        backlog = self.protection.backlog if self.protection.enabled else UNBOUNDED_BACKLOG
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.create_server(
            (host, port),
            family=family,
            backlog=backlog,
            dualstack_ipv6=host == "::" and socket.has_dualstack_ipv6(),
        )
        self._socket.setblocking(False)
        self._acceptor = asyncio.create_task(self._accept_forever(), name=f"{self.peers}-accept")
        return int(self._socket.getsockname()[1])

    def background(self, coro: Any) -> asyncio.Task[Any]:
        """Run ``coro`` beside the connections; cancelled at ``stop``."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def stop(self) -> None:
        """Stop accepting, cancel every connection and background task, and wait for them."""
        if self._acceptor is not None:
            self._acceptor.cancel()
        if self._socket is not None:
            self._socket.close()
        for task in list(self.tasks):
            task.cancel()
        pending = [*self.tasks, *([self._acceptor] if self._acceptor else [])]
        await asyncio.gather(*pending, return_exceptions=True)

    async def _accept_forever(self) -> None:
        """Accept a connection whenever a handshake slot is free (admission.py)."""
        assert self._socket is not None
        loop = asyncio.get_running_loop()
        while True:
            await self.admission.handshake_slot()
            try:
                sock, address = await loop.sock_accept(self._socket)
            except OSError as exc:  # out of file descriptors, for one
                self.admission.handshake_done()
                log.warning("accepting a%s %s connection failed: %s", _n(self.peers),
                            self.peers, exc)  # fmt: skip
                await asyncio.sleep(0.1)
                continue
            except BaseException:
                self.admission.handshake_done()
                raise
            ticket = self.preauth.admit(address[0])
            if ticket is None:  # too many unauthenticated connections from there (preauth.py)
                sock.close()
                self.admission.handshake_done()
                continue
            self.stats.accepted += 1
            lease = self.admission.lease()
            peer = "{}:{}".format(*address[:2])
            task = self.background(self._connection(sock, peer, lease, ticket))
            ticket.on_evict = task.cancel  # a newer pre-auth connection needs its place

    async def _connection(
        self, sock: socket.socket, peer: str, lease: HandshakeLease, ticket: Ticket
    ) -> None:
        started = time.monotonic()
        try:
            reader, writer = await self._handshake(sock, peer)
        finally:
            lease.done()
            self.stats.handshake_seconds += time.monotonic() - started
        if writer is None:
            ticket.release()
            return
        if writer.get_extra_info("peercert"):
            ticket.release()  # a certificate of our CA: no longer pre-auth
        try:
            await self.serve(reader, writer, peer)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        except OSError as exc:  # TLS-level misbehaviour of the peer (ssl.SSLError), for one
            log.info("connection from %s ended: %s", peer, exc)
        except EdgecloudError as exc:
            log.warning("closing connection from %s: %s", peer, exc)
            with contextlib.suppress(Exception):
                await write_frame(writer, messages.error("protocol", str(exc)))
        except Exception:  # a bug: logged (the fuzzer counts these), the connection closed
            log.exception("closing connection from %s after an unexpected error", peer)
        finally:
            ticket.release()
            writer.close()

    async def _handshake(
        self, sock: socket.socket, peer: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter | None]:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, sock, ssl=self.tls(), ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT
            )
        except asyncio.CancelledError:
            sock.close()  # evicted (preauth.py) or stopping
            raise
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            sock.close()
            self.stats.handshakes_failed += 1
            log.warning("refused %s connection from %s: TLS handshake failed: %s",
                        self.peers, peer, _reason(exc))  # fmt: skip
            return reader, None
        return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


def common_name(cert: dict[str, Any]) -> str | None:
    """The subject CN of a verified peer certificate (``getpeercert()``), None without one."""
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def _n(word: str) -> str:
    return "n" if word[:1] in "aeiou" else ""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"client certificate rejected: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return str(exc) or type(exc).__name__
