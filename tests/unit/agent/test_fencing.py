"""agent/fencing.py: when a node cut off from the controllers fences, with a fake clock."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from edgecloud.agent.fencing import ContactReader, Fence, recoverable
from edgecloud.protocol.desired import read


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def wall(self) -> float:
        return self.now

    def mono(self) -> float:
        return self.now - 900.0  # another origin, same pace


def test_no_fence_without_the_controllers_fence_timeout(tmp_path: Path) -> None:
    clock = Clock()
    fence = Fence(tmp_path, clock.wall, clock.mono)
    clock.now += 3600
    assert not fence.due()  # a site without host recovery: never


def test_silence_beyond_the_timeout_is_due_once_until_lifted(tmp_path: Path) -> None:
    clock = Clock()
    fence = Fence(tmp_path, clock.wall, clock.mono)
    fence.configure(0.75)
    fence.heard()
    clock.now += 0.7
    assert not fence.due()
    fence.heard()
    clock.now += 0.76
    assert fence.due()
    fence.done(("i1",))
    assert not fence.due() and fence.fenced == ("i1",) and fence.fenced_at == clock.now
    fence.lift()
    assert fence.due()  # still silent: the next check fences again


def test_an_agent_starting_after_a_long_outage_is_due_at_once(tmp_path: Path) -> None:
    clock = Clock()
    fence = Fence(tmp_path, clock.wall, clock.mono)
    fence.configure(0.75)
    fence.heard()
    clock.now += 0.5  # restarted quickly (an upgrade): not due
    assert not Fence(tmp_path, clock.wall, clock.mono).due()
    clock.now += 60  # the host was dead for a minute
    restarted = Fence(tmp_path, clock.wall, clock.mono)
    assert restarted.after == 0.75 and restarted.due()


def test_a_torn_state_file_is_no_fence_timeout(tmp_path: Path) -> None:
    (tmp_path / "fence.json").write_text('{"after": "x"')
    assert Fence(tmp_path).after is None


def test_only_recover_policy_instances_not_migrating_are_fenced() -> None:
    def instance(name: str, **more: Any) -> dict[str, Any]:
        image = {"name": "k", "format": "qcow2"}
        return {"id": name, "name": name, "domain": f"ec-{name}", "desired_state": "running",
                "vcpus": 1, "memory_mib": 64, "disk_gib": 0, "image": image, **more}  # fmt: skip

    mark = {"id": "m-1", "kind": "live", "role": "outgoing"}
    spec = {
        "version": 1,
        "instances": [
            instance("a", recovery="recover"),
            instance("b", recovery="restart"),
            instance("c", recovery="none"),
            instance("d", recovery="recover", migration=mark),
            instance("e"),  # from a controller that sends no policy
        ],
    }
    assert recoverable(read(spec)) == ("a",)


async def test_every_frame_read_counts_as_contact() -> None:
    reader = asyncio.StreamReader()
    heard: list[int] = []
    counted = ContactReader(reader, lambda: heard.append(1))
    reader.feed_data(b"abcdef")
    assert await counted.readexactly(2) == b"ab"
    assert await counted.readexactly(4) == b"cdef"
    assert len(heard) == 2


async def test_frames_before_the_welcome_are_not_contact() -> None:
    """A ``retry`` or an error before a welcome comes from a controller that opened no
    session for the node (e.g. its store is failing over): it must not hold the fence off."""
    reader = asyncio.StreamReader()
    heard: list[int] = []
    counted = ContactReader(reader, lambda: heard.append(1), armed=False)
    reader.feed_data(b"abcdef")
    assert await counted.readexactly(3) == b"abc"
    assert heard == []
    counted.armed = True  # the welcome
    assert await counted.readexactly(3) == b"def"
    assert heard == [1]


def test_a_frame_after_the_timeout_does_not_cancel_the_fence_it_made_due(
    tmp_path: Path,
) -> None:
    """An agent frozen (SIGSTOP, a stalled VM) past the timeout reads what its socket held
    first: that late frame must not undo the fence, the controllers may have recovered."""
    clock = Clock()
    fence = Fence(tmp_path, clock.wall, clock.mono)
    fence.configure(0.75)
    fence.heard()
    clock.now += 5.0
    fence.heard()  # read before the fence check ran
    assert fence.due()
    fence.done(("i1",))
    assert not fence.due()
    fence.lift()
    fence.heard()
    assert not fence.due()  # in contact again: the overdue silence was acted on
