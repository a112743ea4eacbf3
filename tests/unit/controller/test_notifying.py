"""Change notices: handled in this process and published to the others; a notice from another
process is handled here only; reconcilers get notices only while this process leads."""

from __future__ import annotations

from typing import Any, cast

from edgecloud.controller.leader_work import LeaderWork
from edgecloud.controller.notifying import Notices
from edgecloud.gateway.gateway import Gateway
from edgecloud.gateway.presence import Announcement, Announcer
from edgecloud.services.context import ChainSteer
from edgecloud.store.change_feed import ChangeFeed


class FakeGateway:
    def __init__(self) -> None:
        self.changed: list[str] = []
        self.present: list[str] = []
        self.steering: list[tuple[str, Any]] = []
        self.announcer = Announcer()

    def host_changed(self, host_id: str) -> None:
        self.changed.append(host_id)

    def steering_changed(self, host_id: str, change: Any = None) -> None:
        self.steering.append((host_id, change))

    def presence_elsewhere(self, holder: str, held: str | None, released: str | None) -> None:
        self.present.append(f"{holder} held={held} released={released}")

    def listed_elsewhere(self, holder: str) -> None:
        self.present.append(f"{holder} listed")


class FakeQueue:
    def __init__(self) -> None:
        self.keys: list[str] = []

    def enqueue(self, key: str) -> None:
        self.keys.append(key)


class FakeFeed:
    def __init__(self) -> None:
        self.published: list[tuple[str, str]] = []

    def publish(self, kind: str, key: str) -> None:
        self.published.append((kind, key))


def make() -> tuple[Notices, FakeGateway, Any, FakeFeed]:
    gateway, feed = FakeGateway(), FakeFeed()
    work: Any = LeaderWork(cast(Gateway, gateway), cast(Any, None), lambda _h: None)
    notices = Notices(cast(Gateway, gateway), cast(LeaderWork, work))
    notices.feed = cast(ChangeFeed, feed)
    return notices, gateway, work, feed


def test_a_follower_publishes_and_pushes_but_reconciles_nothing() -> None:
    notices, gateway, work, feed = make()
    assert not work.running
    notices.instance_changed("i1")
    notices.host_changed("h1")
    notices.chain_changed("c1")
    assert gateway.changed == ["h1"]
    assert feed.published == [
        ("instance_changed", "i1"),
        ("host_changed", "h1"),
        ("chain_changed", "c1"),
    ]


def test_the_leader_reconciles_notices_from_anywhere_and_does_not_echo_them() -> None:
    notices, gateway, work, feed = make()
    work.instances, work.chains, work.maintenance, work.migrations = (FakeQueue() for _ in "1234")
    notices.deliver("instance_changed", "i1")  # from another process
    notices.deliver("chain_changed", "c1")
    notices.deliver("host_maintenance", "h1")
    notices.deliver("migration_changed", "m1")
    notices.deliver("host_held", "n2/ab12 h2")
    notices.deliver("host_released", "n2/ab12 h3")
    notices.deliver("holder_alive", "n2/ab12 7")
    notices.deliver("hosts_listed", "n2/ab12 8")
    notices.deliver("from_a_newer_controller", "x")  # ignored (logged)
    assert work.instances.keys == ["i1"] and work.chains.keys == ["c1"]
    assert work.maintenance.keys == ["h1"] and work.migrations.keys == ["m1"]
    assert gateway.present == [
        "n2/ab12 held=h2 released=None",
        "n2/ab12 held=None released=h3",
        "n2/ab12 held=None released=None",
        "n2/ab12 listed",
    ]
    assert feed.published == []  # delivered here only


def test_a_steering_change_reaches_the_gateway_here_and_elsewhere() -> None:
    """Whichever controller holds the host's session pushes its steering (gateway/steering.py)."""
    notices, gateway, _work, feed = make()
    change = ChainSteer(7, {}, {"cust0": "net0"})
    notices.steering_changed("h1", change)
    notices.deliver("steering_changed", "h2")  # from another process: no change
    assert gateway.steering == [("h1", change), ("h2", None)]
    assert gateway.changed == []
    assert feed.published == [("steering_changed", "h1")]  # the change stays here


def test_hosts_present_go_out_as_notices() -> None:
    notices, _gateway, _work, feed = make()
    notices.holder = "n1/cd34"
    notices.hosts_present(Announcement(("h1", "h2"), (), True))
    notices.hosts_present(Announcement(("h3",), ("h1",), False))
    assert feed.published == [
        ("host_held", "n1/cd34 h1"),
        ("host_held", "n1/cd34 h2"),
        ("hosts_listed", "n1/cd34 1"),  # after the list's lines: its key is new every time
        ("host_released", "n1/cd34 h1"),
        ("host_held", "n1/cd34 h3"),
        ("holder_alive", "n1/cd34 2"),
    ]


def test_a_controller_that_starts_asks_for_the_others_whole_lists() -> None:
    notices, gateway, _work, feed = make()
    notices.holder = "n2/ef56"
    notices.want_presence()
    assert feed.published == [("presence_wanted", "n2/ef56")]
    gateway.announcer = Announcer(full_every=100)
    gateway.announcer.next(["h1"])  # its whole list went out at its first check
    assert not gateway.announcer.next(["h1"]).complete
    notices.deliver("presence_wanted", "n1/ab12")  # another controller asks
    assert gateway.announcer.next(["h1"]) == Announcement(("h1",), (), True)
