"""A frame fuzzer against the gateway, over real TLS on loopback, bounded in time (FUZZ_SECONDS).

Malformed, oversized, truncated, deeply nested and wrong-type frames, each sent both by an
anonymous peer (no client certificate: the enrollment path) and by a peer holding a node
certificate of the site CA (after a valid hello: the session path). Acceptance: no server error
(no log record at ERROR or above, no unhandled exception: asyncio logs those at ERROR), the
controller keeps running and answering, and an agent connected all along keeps its session.
The cases run in a seeded order (FUZZ_SEED) so a failure replays; docs/security.md ("Gateway
fuzzing") lists the categories and the result of a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import ssl
import struct
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgecloud.agent.enrolling import enroll
from edgecloud.pki.identity import client_ssl_context
from edgecloud.protocol import messages
from edgecloud.protocol.schemas import SCHEMAS
from tests.integration.harness import Site, running_site

FUZZ_SECONDS = float(os.environ.get("EDGECLOUD_FUZZ_SECONDS", "40"))
FUZZ_SEED = int(os.environ.get("EDGECLOUD_FUZZ_SEED", "14"))
WORKERS = 6
REPLY_WAIT = 0.7
Frame = bytes  # what is written after the TLS handshake (and the hello, with a certificate)


def _frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def _json(value: Any) -> bytes:
    return _frame(json.dumps(value).encode())


def _nasty(rng: random.Random) -> Any:
    return rng.choice(
        [
            None,
            True,
            -1,
            2**64,
            10**400,  # beyond any column
            1e308,
            float("nan"),
            "",
            "x" * rng.choice([300, 70_000]),
            "\x00\ud800",
            [],
            [1, "a", None],
            {},
            {"nested": {"k": [1, 2, {"z": None}]}},
        ]
    )


def _wrong_types(rng: random.Random) -> bytes:
    kind = rng.choice(sorted(SCHEMAS))
    fields = [*SCHEMAS[kind].model_fields, "extra"]
    message = messages.make(kind)
    for name in rng.sample(fields, k=min(len(fields), rng.randint(1, 4))):
        message[name] = _nasty(rng)
    return _frame(json.dumps(message, allow_nan=True).encode())


def _deep(rng: random.Random) -> bytes:
    depth = rng.choice([65, 1000, 20_000])
    inner = "[" * depth + "]" * depth
    if rng.random() < 0.5:
        return _frame(inner.encode())
    return _frame(f'{{"v":1,"t":"res","id":1,"ok":true,"result":{inner}}}'.encode())


CASES: dict[str, Callable[[random.Random], bytes]] = {
    "random bytes": lambda rng: rng.randbytes(rng.randint(1, 2048)),
    "length header only, huge": lambda rng: struct.pack(
        ">I", rng.choice([2**32 - 1, 16 * 2**20 + 1, 64 * 1024 + 1])
    ),
    "truncated frame": lambda rng: struct.pack(">I", 4096) + rng.randbytes(rng.randint(0, 100)),
    "not JSON / not UTF-8": lambda rng: _frame(rng.choice([b"{", b"\xff\xfe\x00", b"nul\x00"])),
    "JSON but not an object": lambda rng: _json(rng.choice([[], 1, "s", None, [{"t": "hello"}]])),
    "deeply nested": _deep,
    "wrong version or type": lambda rng: _json(
        rng.choice(
            [
                {"t": "hello"},
                {"v": 99, "t": "hello"},
                {"v": "1", "t": "hb"},
                {"v": 1, "t": "welcome"},
                {"v": 1, "t": "desired", "version": 1, "spec": {}},
                {"v": 1, "t": rng.randbytes(8).hex()},
                {"v": 1},
            ]
        )
    ),
    "wrong-type fields (every agent type)": _wrong_types,
    "large valid-looking frame (1-4 MiB)": lambda rng: _json(
        messages.make("res", id=1, ok=True, result="x" * rng.choice([2**20, 4 * 2**20]))
    ),
    "many frames in a row": lambda rng: (
        b"".join(
            _json(messages.make("hb", seq=i, ts=time.time())) for i in range(rng.randint(50, 500))
        )
        + _wrong_types(rng)
    ),
}


class ServerErrors(logging.Handler):
    """Every log record at ERROR or above, and every record carrying a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)


async def _one(
    address: tuple[str, int], context: ssl.SSLContext, hello: bytes | None, payload: bytes
) -> str:
    """Send one case; how the gateway ended it."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*address, ssl=context), 10)
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        return f"connect failed: {type(exc).__name__}"
    try:
        if hello is not None:
            writer.write(hello)
            await writer.drain()
            (length,) = struct.unpack(">I", await asyncio.wait_for(reader.readexactly(4), 10))
            await asyncio.wait_for(reader.readexactly(length), 10)  # the welcome
        writer.write(payload)
        await writer.drain()
        # what comes back within REPLY_WAIT (shorter than the liveness limit of the site)
        data = b""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REPLY_WAIT):
                while chunk := await reader.read(1 << 20):
                    data += chunk
        if b'"t":"error"' in data:
            return "error frame, closed"
        if reader.at_eof():
            return "closed"
        return "message dropped, session kept" if hello is not None else "kept open (waiting)"
    except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
        return "closed"
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 2)


@pytest.mark.timeout(FUZZ_SECONDS + 120)
async def test_gateway_survives_a_frame_fuzzer(tmp_path: Path) -> None:
    errors = ServerErrors()
    logging.getLogger().addHandler(errors)
    try:
        async with running_site(tmp_path) as site:
            results = await _fuzz(site, tmp_path)
    finally:
        logging.getLogger().removeHandler(errors)
    table = _table(results)
    print(table)  # the table in docs/security.md comes from this (pytest -s)
    assert sum(results.values()) >= 200, table
    assert not errors.records, [f"{r.name}: {r.getMessage()}" for r in errors.records[:10]]


async def _fuzz(site: Site, tmp_path: Path) -> Counter[tuple[str, str, str]]:
    bystander = await site.join("bystander")
    gateway = site.controller.gateway
    assert gateway is not None
    (session,) = [s for s in gateway.sessions.values() if s.host_name == "bystander"]
    host, _, port = str(site.info["gateway"]).rpartition(":")
    address = (host, int(port))
    anonymous = client_ssl_context(None)
    nodes = []  # one enrolled node per worker (a node's new session replaces its old one)
    for i in range(WORKERS):
        who = await enroll(await site.add_host(f"fuzz{i}"), tmp_path / f"fuzz{i}")
        hello = _json(messages.make("hello", host=who.host, applied_version=0, facts={}))
        nodes.append((client_ssl_context(who.ca, who.cert, who.key), hello))
    rng = random.Random(FUZZ_SEED)
    cases = list(CASES.items())
    results: Counter[tuple[str, str, str]] = Counter()
    deadline = time.monotonic() + FUZZ_SECONDS
    plan = iter(range(10**9))

    async def worker(certified: ssl.SSLContext, hello: bytes) -> None:
        while time.monotonic() < deadline:
            n = next(plan)
            name, make = cases[n % len(cases)]
            with_cert = (n // len(cases)) % 2 == 1
            payload = make(rng)
            mode = "client certificate" if with_cert else "anonymous"
            outcome = await _one(
                address,
                certified if with_cert else anonymous,
                hello if with_cert else None,
                payload,
            )
            results[(name, mode, outcome)] += 1

    await asyncio.gather(*(worker(*node) for node in nodes))
    # the controller is up and answers; the bystander kept its one session all along
    assert not site.task.done()
    assert (await site.api.get("/v1/hosts")).status_code == 200
    assert gateway.sessions.get(session.host_id) is session and not session.closed.is_set()
    assert bystander.agent.connected.is_set() and not bystander.task.done()
    assert await _one(address, anonymous, None, _json(messages.make("get_ca"))) == "closed"
    return results


def _table(results: Counter[tuple[str, str, str]]) -> str:
    rows: dict[tuple[str, str], Counter[str]] = {}
    for (name, mode, outcome), count in results.items():
        rows.setdefault((name, mode), Counter())[outcome] += count
    lines = ["| frames | peer | cases | how the gateway ended them |", "|---|---|---|---|"]
    for (name, mode), outcomes in sorted(rows.items()):
        how = ", ".join(f"{o}: {c}" for o, c in outcomes.most_common())
        lines.append(f"| {name} | {mode} | {sum(outcomes.values())} | {how} |")
    return "\n".join(lines)
