"""An agent with several controller addresses: the order it dials them in, each one's share
of the handshake time, what it keeps on disk, and a real loopback dial that skips a controller
that refuses."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import pytest

from edgecloud.agent import connection, identity
from edgecloud.agent.connection import ResumingContext, dial_order, dial_timeout

A, B, C = "10.0.0.1:7444", "10.0.0.2:7444", "[fd00::3]:7444"


def test_the_controller_that_answered_last_is_dialled_first_then_round_the_list() -> None:
    assert dial_order((A, B, C), None) == [A, B, C]
    assert dial_order((A, B, C), B) == [B, C, A]
    assert dial_order((A, B, C), C) == [C, A, B]
    assert dial_order((A, B, C), "10.9.9.9:1") == [A, B, C]  # no longer listed
    assert dial_order((A, B, A), None) == [A, B]  # each once


def test_a_controller_on_this_node_is_dialled_first_whatever_answered_last() -> None:
    assert dial_order((A, B, C), A, home="10.0.0.2") == [B, A, C]
    assert dial_order((A, B, C), None, home="fd00::3") == [C, A, B]
    assert dial_order((A, B, C), B, home="10.9.9.9") == [B, C, A]  # none there: as before


def test_each_address_gets_a_share_of_the_handshake_time_but_not_too_little() -> None:
    assert dial_timeout(1) == connection.HANDSHAKE_TIMEOUT
    assert dial_timeout(2) == connection.HANDSHAKE_TIMEOUT / 2
    assert dial_timeout(10) == connection.MIN_DIAL


def test_every_address_is_kept_and_an_older_record_still_loads(tmp_path: Path) -> None:
    saved = identity.save(tmp_path, "n1", A, b"ca", b"cert", b"key", others=(B, C))
    assert json.loads((tmp_path / "agent.json").read_text())["controllers"] == [A, B, C]
    loaded = identity.load(tmp_path)
    assert loaded == saved and loaded.addresses == (A, B, C)
    # written by an agent from before several controllers: the one address
    (tmp_path / "agent.json").write_text(json.dumps({"host": "n1", "controller": A}))
    assert identity.load(tmp_path).addresses == (A,)
    # one controller: the record keeps its old form
    identity.save(tmp_path, "n1", A, b"ca", b"cert", b"key")
    assert json.loads((tmp_path / "agent.json").read_text()) == {"host": "n1", "controller": A}


def test_a_record_whose_controllers_are_not_addresses_reads_as_not_enrolled(
    tmp_path: Path,
) -> None:
    record = {"host": "n1", "controller": A, "controllers": "oops"}
    (tmp_path / "agent.json").write_text(json.dumps(record))
    with pytest.raises(Exception, match="not enrolled"):
        identity.load(tmp_path)


async def test_a_refusing_controller_is_skipped_for_the_next(
    tmp_path: Path,
) -> None:
    """Loopback: the first address refuses (nothing listens), the second accepts TCP; the
    dial reaches the TLS handshake there (which fails: no TLS server) within its share."""
    refusing = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    dead = refusing.sockets[0].getsockname()[1]
    refusing.close()
    await refusing.wait_closed()
    reached: list[int] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reached.append(1)
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    live = server.sockets[0].getsockname()[1]
    try:
        who = identity.AgentIdentity(tmp_path, "n1", f"127.0.0.1:{dead}", (f"127.0.0.1:{live}",))
        context = ResumingContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with pytest.raises((OSError, ConnectionError)):
            await connection.connect(who, context=context)
        assert reached == [1]  # the second was dialled after the first refused
    finally:
        server.close()
        await server.wait_closed()


def test_controllers_a_welcome_names_are_kept_with_the_enrolled_one_and_dialled(
    tmp_path: Path,
) -> None:
    enrolled = identity.save(tmp_path, "n1", A, b"ca", b"cert", b"key")
    assert identity.current_addresses(enrolled) == (A,)
    assert identity.learn_controllers(enrolled, [B, A])
    assert json.loads((tmp_path / "agent.json").read_text())["controllers"] == [A, B]
    assert identity.current_addresses(enrolled) == (A, B)  # the running agent sees it at once
    assert not identity.learn_controllers(enrolled, [B, A])  # unchanged: not written again
    assert identity.learn_controllers(enrolled, [C])  # A stays: the one it enrolled with
    assert identity.load(tmp_path).addresses == (A, C)
    assert not identity.learn_controllers(enrolled, [])
    assert not identity.learn_controllers(enrolled, ["no-port", 7])  # type: ignore[list-item]
