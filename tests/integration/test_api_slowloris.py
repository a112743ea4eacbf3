"""The REST API closes a connection whose request headers do not arrive in time (slowloris:
controller/http_deadlines.py), and leaves alone a request that is complete, also a second one
on the same kept-alive connection and one whose headers trickle in within the deadline."""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.integration.harness import Site, running_site

DEADLINE = 1.0


async def _connect(site: Site) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    url = urlsplit(site.info["api_url"])
    context = ssl.create_default_context(cafile=site.info["ca_cert"])
    return await asyncio.open_connection(
        url.hostname, url.port, ssl=context, server_hostname=url.hostname
    )


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """True when the server ends the connection (EOF or reset) within ``seconds``."""
    try:
        while await asyncio.wait_for(reader.read(4096), seconds):
            pass
    except TimeoutError:
        return False
    except (ConnectionError, ssl.SSLError):
        pass
    return True


async def test_headers_that_never_end_are_cut_at_the_deadline(tmp_path: Path) -> None:
    async with running_site(tmp_path, api_header_timeout=DEADLINE) as site:
        reader, writer = await _connect(site)
        started = time.monotonic()
        writer.write(b"GET /v1/hosts HTTP/1.1\r\nHost: x\r\n")  # the blank line never comes

        async def drip() -> None:  # a header byte every 0.2 s: the keep-alive timer is reset
            for byte in b"X-Slow: " + b"a" * 40:
                writer.write(bytes([byte]))
                await asyncio.sleep(0.2)

        dripping = asyncio.create_task(drip())
        try:
            assert await _closed_within(reader, 10 * DEADLINE)
        finally:
            dripping.cancel()
            writer.close()
        took = time.monotonic() - started
        assert DEADLINE * 0.8 <= took < DEADLINE * 5, took
        assert site.controller.api_deadlines.closed == 1


async def test_complete_requests_are_not_cut(tmp_path: Path) -> None:
    async with running_site(tmp_path, api_header_timeout=DEADLINE) as site:
        reader, writer = await _connect(site)
        try:
            for _ in range(2):  # two requests on one connection, together longer than the deadline
                writer.write(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
                await asyncio.sleep(DEADLINE / 2)  # slow, but inside the deadline
                writer.write(b"\r\n")
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                assert head.split(b" ", 2)[1] in (b"200", b"401"), head
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                await asyncio.sleep(DEADLINE * 0.3)  # the deadline counts from here again
        finally:
            writer.close()
        assert site.controller.api_deadlines.closed == 0
