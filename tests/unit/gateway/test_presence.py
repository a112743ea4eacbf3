"""Hosts announced by another controller: present while their holder speaks; what a holder
says at each check is its changes, and its whole list every FULL_EVERY checks."""

from edgecloud.gateway.presence import Announcement, Announcer, Presence


def test_a_holders_hosts_are_present_until_it_is_silent_for_the_limit() -> None:
    presence = Presence()
    presence.held("c1", "h1", 10.0)
    presence.held("c2", "h2", 10.0)
    presence.holding("c1", 12.0)  # c1's heartbeat; c2 says nothing more
    assert presence.expired(13.5, limit=3.0) == {"h2": 10.0}  # c2's last word: 3.5 s ago
    assert "h1" in presence and "h2" not in presence and len(presence) == 1
    presence.forget("h1")  # its session is here now
    assert presence.expired(100.0, limit=3.0) == {}


def test_a_released_host_is_missing_from_the_release_unless_it_moved_on() -> None:
    presence = Presence()
    presence.held("c1", "h1", 1.0)
    presence.held("c1", "h2", 1.0)
    presence.held("c2", "h2", 2.0)  # h2's agent moved to c2
    assert presence.released("c1", "h2", 3.0) == {}  # c1's late release: h2 is c2's now
    assert presence.released("c1", "h1", 4.0) == {"h1": 4.0}
    assert "h1" not in presence and "h2" in presence


def test_a_whole_list_prunes_the_hosts_it_does_not_name() -> None:
    """A release lost while the feed was down: the holder's next whole list corrects it."""
    presence = Presence()
    for host in ("h1", "h2", "h3"):
        presence.held("c1", host, 1.0)
    assert presence.listed("c1", 1.0) == {}
    presence.held("c1", "h1", 5.0)  # the next list names h1 and h3 only
    presence.held("c1", "h3", 5.0)
    presence.held("c2", "h9", 5.0)  # another holder's hosts are not touched
    assert presence.listed("c1", 5.0) == {"h2": 5.0}
    assert sorted(h for h in ("h1", "h2", "h3", "h9") if h in presence) == ["h1", "h3", "h9"]


def test_an_announcer_sends_its_whole_list_then_changes_then_the_whole_list_again() -> None:
    announcer = Announcer(full_every=3)
    assert announcer.next(["h2", "h1"]) == Announcement(("h1", "h2"), (), True)
    assert announcer.next(["h1", "h2", "h3"]) == Announcement(("h3",), (), False)
    assert announcer.next(["h3"]) == Announcement((), ("h1", "h2"), False)  # heartbeat + changes
    assert announcer.next(["h3", "h4"]) == Announcement(("h3", "h4"), (), True)
    announcer.resend_all()  # the feed reconnected: notices may be lost
    assert announcer.next(["h4"]) == Announcement(("h4",), ("h3",), True)


def test_what_one_controller_announces_the_other_judges_alike() -> None:
    """Over many checks with sessions coming and going, the receiver's view equals the
    sender's sessions after every check."""
    announcer, presence = Announcer(full_every=4), Presence()
    sessions: set[str] = set()
    for check in range(40):
        sessions ^= {f"h{check % 7}", f"h{(check * 3) % 11}"}
        said = announcer.next(sessions)
        for host in said.released:
            presence.released("c1", host, float(check))
        for host in said.held:
            presence.held("c1", host, float(check))
        if said.complete:
            presence.listed("c1", float(check))
        else:
            presence.holding("c1", float(check))
        seen = {f"h{i}" for i in range(11) if f"h{i}" in presence}
        assert seen == sessions, check


def test_a_new_term_counts_every_holder_from_its_start() -> None:
    presence = Presence()
    presence.held("c1", "h1", 10.0)  # then nothing: its controller died, the store failed over
    presence.held("c2", "h2", 25.0)
    presence.restamp(20.0)  # this controller begins to lead at 20
    assert presence.expired(21.9, limit=2.0) == {}  # h1 would have expired at 12
    assert presence.expired(22.1, limit=2.0) == {"h1": 20.0}
    assert "h2" in presence  # a later word keeps its own time
