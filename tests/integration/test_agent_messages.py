"""Agent messages are schema-checked: a bad message from one host is refused for that host
alone (nothing of it written, its session stays up, an alarm names it) while another host's
messages in the same write batch land; on PostgreSQL a report the store itself refuses (a NUL
in a text) is isolated the same way.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from edgecloud import __version__
from edgecloud.fm import catalogue
from edgecloud.protocol import messages
from tests.integration.harness import Site, eventually, running_site


async def _alarm(site: Site, name: str) -> dict[str, Any] | None:
    response = await site.api.get("/v1/alarms")
    assert response.status_code == 200, response.text
    for alarm in response.json():
        if (
            alarm["entity"] == f"host={name}"
            and alarm["alarm_id"] == catalogue.HOST_INVALID_MESSAGE
        ):
            return dict(alarm)
    return None


async def _send(site: Site, name: str, message: dict[str, Any]) -> None:
    session = site.agents[name].agent._session
    assert session is not None
    await session.send(message)


async def test_a_bad_message_is_refused_for_its_host_alone(
    tmp_path: Path, db_url: str | None
) -> None:
    async with running_site(tmp_path, db_url) as site:
        bad, good = await site.join("node1"), await site.join("node2")
        version = (await site.host("node2"))["applied_version"]
        # in one batch window: node1's report lacks a vNIC index, node2's ack is fine
        await asyncio.gather(
            _send(site, "node1", messages.make("observed", instances={"x": {"guest_vnics": [{}]}})),
            _send(site, "node1", messages.make("ack", version=10**30)),
            _send(site, "node2", messages.make("ack", version=version + 5)),
        )
        alarm = await eventually(lambda: _alarm(site, "node1"), 10, "invalid-message alarm")
        assert "guest_vnics.0.index" in alarm["reason"]

        async def acked() -> bool:
            return bool((await site.host("node2"))["applied_version"] == version + 5)

        await eventually(acked, 10, "node2's ack written")
        assert (await site.host("node1"))["applied_version"] < 10**30
        assert await _alarm(site, "node2") is None
        for handle in (bad, good):  # both sessions stay up
            assert handle.agent.connected.is_set() and not handle.task.done()


async def test_a_write_the_store_refuses_fails_for_its_host_alone(
    tmp_path: Path, db_url: str | None
) -> None:
    async with running_site(tmp_path, db_url) as site:
        await site.join("node1")
        await site.join("node2")
        await asyncio.gather(
            _send(site, "node1", messages.make("nack", version=1, error="broken\x00text")),
            _send(site, "node2", messages.make("nack", version=1, error="disk full")),
        )

        async def written() -> bool:
            return bool((await site.host("node2"))["last_error"] == "disk full")

        await eventually(written, 10, "node2's nack written")
        if db_url is not None and db_url.startswith("postgresql"):  # PostgreSQL refuses NUL
            alarm = await eventually(lambda: _alarm(site, "node1"), 10, "poisoned-write alarm")
            assert "could not be written" in alarm["reason"]
        else:
            assert (await site.host("node1"))["last_error"] == "broken\x00text"


async def test_an_agent_with_no_protocol_in_common_is_refused_with_an_alarm_naming_both(
    tmp_path: Path, db_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent of a release too new for this controller (it speaks only version 9) opens no
    session; alarm 200.032 says which versions each side speaks, and clears once the node
    runs an agent this controller serves."""
    make = messages.make
    offered = {"node1": [9]}

    def hello(type_: str, **fields: Any) -> dict[str, Any]:
        if type_ == "hello" and fields.get("host") in offered:
            fields["protocols"] = offered[fields["host"]]
        return make(type_, **fields)

    monkeypatch.setattr(messages, "make", hello)
    async with running_site(tmp_path, db_url) as site:
        await site.start_agent("node1", await site.add_host("node1"))
        alarm = await eventually(lambda: _alarm(site, "node1"), 15, "no-common-protocol alarm")
        assert (
            "no protocol version in common: the agent speaks [9], this controller "
            f"(release {__version__}) speaks [1, 2]"
        ) in alarm["reason"]
        host = await site.host("node1")
        assert host["availability"] != "online" and host["protocol"] is None
        offered.clear()  # the node's agent is replaced by one this controller serves
        host = await site.wait_host("node1", "online", timeout=40)
        assert (host["protocol"], host["release"]) == (messages.PROTOCOL_VERSION, __version__)
        await eventually(
            lambda: _none(_alarm(site, "node1")), 10, "the alarm cleared at the next hello"
        )


async def _none(found: Any) -> bool:
    return await found is None
