"""A PostgreSQL connection that fails, rather than hangs, when its server stops acknowledging.

A server cut off by dropped packets (a partition between the two nodes of a redundant site,
docs/architecture.md) would otherwise hold a query, a commit, the pool's pre-ping or a LISTEN
for many minutes, until TCP gives up. Used on every asyncpg connection to the store: the
engine's pool (store/database.py), the change feed and the leader lock.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

STALL_LIMIT = 3.0  # s: unacknowledged data on a PostgreSQL connection before it fails
TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)  # Linux


def bound_stalls(conn: Any) -> None:
    """Make an asyncpg connection fail within ``STALL_LIMIT`` when what it sends stays
    unacknowledged (TCP_USER_TIMEOUT): a server cut off by dropped packets (a partition
    between the nodes of a redundant site) would otherwise hold a query, a commit or the pool's
    pre-ping for many minutes, until TCP gives up; the connection is then replaced by one to
    whichever node is primary. The kernel acknowledges, not the server process, so a slow but
    reachable server is not cut. Unix sockets are left alone."""
    transport = getattr(conn, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT, int(STALL_LIMIT * 1000))
