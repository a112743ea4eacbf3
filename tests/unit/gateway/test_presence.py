"""Hosts announced by another controller: present until their announcements stop."""

from edgecloud.gateway.presence import Presence


def test_a_host_is_present_until_not_announced_for_the_limit() -> None:
    presence = Presence()
    presence.announced("h1", 10.0)
    presence.announced("h2", 10.0)
    presence.announced("h1", 12.0)
    assert presence.expired(13.5, limit=3.0) == {"h2": 10.0}  # h2's last: 3.5 s ago
    assert "h1" in presence and "h2" not in presence and len(presence) == 1
    presence.forget("h1")  # its session is here now
    assert presence.expired(100.0, limit=3.0) == {}


def test_a_new_term_counts_every_announcement_from_its_start() -> None:
    presence = Presence()
    presence.announced("h1", 10.0)  # then nothing: its controller died, the store failed over
    presence.announced("h2", 25.0)
    presence.restamp(20.0)  # this controller begins to lead at 20
    assert presence.expired(21.9, limit=2.0) == {}  # h1 would have expired at 12
    assert presence.expired(22.1, limit=2.0) == {"h1": 20.0}
    assert "h2" in presence  # a later announcement keeps its own time
