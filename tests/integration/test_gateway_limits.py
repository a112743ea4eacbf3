"""Nothing an unauthenticated peer can exhaust at the gateway, over real TLS on loopback:
connections before authentication are limited per source address (beyond: closed at accept) and
in total (beyond: the oldest is evicted), an anonymous peer gets a 64 KiB frame and a few seconds, a peer that never finishes
its TLS handshake is dropped; an agent from another address connects meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgecloud.agent.enrolling import enroll
from edgecloud.agent.runner import Agent
from edgecloud.gateway import listener as listener_module
from edgecloud.gateway.admission import Protection
from edgecloud.pki.identity import client_ssl_context
from edgecloud.protocol import messages
from edgecloud.protocol.framing import read_frame, write_frame
from tests.integration.harness import AgentHandle, Site, eventually, running_site

LIMITS = Protection(preauth_per_source=3, preauth_max=6, preauth_timeout=0.5)


def _gateway_address(site: Site) -> tuple[str, int]:
    host, _, port = str(site.info["gateway"]).rpartition(":")
    return host, int(port)


@contextlib.asynccontextmanager
async def _raw(site: Site, source: str, count: int) -> AsyncIterator[list[socket.socket]]:
    """``count`` TCP connections from ``source`` that never start TLS (a slow-loris peer)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((source, 0))
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, _gateway_address(site))
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


async def _closed_by_peer(sock: socket.socket, within: float) -> bool:
    """Whether the gateway closes this connection (EOF or reset) within ``within`` seconds."""
    try:
        data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 1), within)
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return data == b""


async def _preauth_counted(site: Site, total: int) -> None:
    gateway = site.controller.gateway
    assert gateway is not None

    async def counted() -> bool:
        return gateway.preauth.total == total

    await eventually(counted, 5, f"{total} pre-auth connections counted")


async def test_preauth_connections_are_limited_per_source_and_in_total(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listener_module, "TLS_HANDSHAKE_TIMEOUT", 30.0)  # they stay pre-auth
    async with running_site(tmp_path, protection=LIMITS) as site:
        gateway = site.controller.gateway
        assert gateway is not None
        who = await enroll(await site.add_host("node1"), tmp_path / "node1")
        async with _raw(site, "127.0.0.1", 3) as held:
            await _preauth_counted(site, 3)
            async with _raw(site, "127.0.0.1", 1) as (over,):
                assert await _closed_by_peer(over, 5), "a 4th connection from one source"
            assert gateway.preauth.refused == 1
            async with _raw(site, "127.0.0.3", 3):
                await _preauth_counted(site, 6)
                # a 7th in total is taken, and the oldest pre-auth connection makes room
                async with _raw(site, "127.0.0.4", 1) as (newest,):
                    assert await _closed_by_peer(held[0], 5), "the oldest was evicted"
                    assert not await _closed_by_peer(newest, 0.2)
                    assert gateway.preauth.evicted == 1 and gateway.preauth.total == 6
            await _preauth_counted(site, 2)
            # an agent from another address gets in while this source holds connections
            agent = Agent(who, compute="fake", source_address="127.0.0.2")
            site.agents["node1"] = AgentHandle(
                agent, asyncio.create_task(agent.run()), who.state_dir
            )
            await site.wait_host("node1", "online")
            assert not any([await _closed_by_peer(s, 0.01) for s in held[1:]])
        await _preauth_counted(site, 0)
        assert gateway.preauth.refused == 1


async def test_a_peer_that_never_finishes_its_tls_handshake_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listener_module, "TLS_HANDSHAKE_TIMEOUT", 0.5)
    async with running_site(tmp_path, protection=LIMITS) as site:
        async with _raw(site, "127.0.0.1", 1) as (idle,):
            started = time.monotonic()
            assert await _closed_by_peer(idle, 5)
            assert time.monotonic() - started < 3
        await _preauth_counted(site, 0)


async def _anonymous(site: Site) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = _gateway_address(site)
    return await asyncio.open_connection(host, port, ssl=client_ssl_context(None))


async def test_an_anonymous_peer_gets_a_small_frame_and_little_time(tmp_path: Path) -> None:
    async with running_site(tmp_path, protection=LIMITS) as site:
        reader, writer = await _anonymous(site)
        writer.write(struct.pack(">I", 1024 * 1024))  # announces 1 MiB: refused before reading
        await writer.drain()
        reply = await asyncio.wait_for(read_frame(reader), 5)
        assert reply["t"] == "error" and "limit 65536" in reply["message"]
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()

        reader, writer = await _anonymous(site)  # says nothing: closed after preauth_timeout
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert time.monotonic() - started < 3
        writer.close()

        reader, writer = await _anonymous(site)  # the one thing it may ask still works
        await write_frame(writer, messages.make("get_ca"))
        assert (await asyncio.wait_for(read_frame(reader), 5))["t"] == "ca"
        writer.close()
        await _preauth_counted(site, 0)
