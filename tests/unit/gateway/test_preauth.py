"""Pre-auth accounting: per-source refusal, eviction of the oldest over the total, release once."""

from __future__ import annotations

from edgecloud.gateway.admission import Protection
from edgecloud.gateway.preauth import PreAuth


def test_per_source_refuses_and_total_evicts_the_oldest() -> None:
    preauth = PreAuth(Protection(preauth_per_source=2, preauth_max=3))
    evicted: list[str] = []
    tickets = []
    for n, source in enumerate(("a", "a", "b")):
        ticket = preauth.admit(source)
        assert ticket is not None
        ticket.on_evict = lambda name=f"{source}{n}": evicted.append(name)
        tickets.append(ticket)
    assert preauth.admit("a") is None and preauth.refused == 1
    newest = preauth.admit("c")
    assert newest is not None and evicted == ["a0"] and preauth.evicted == 1
    assert preauth.total == 3 and preauth.by_source == {"a": 1, "b": 1, "c": 1}
    tickets[0].release()  # already released by the eviction: no double count
    tickets[1].release()
    assert preauth.total == 2 and "a" not in preauth.by_source


def test_without_protection_nothing_is_limited() -> None:
    preauth = PreAuth(Protection(enabled=False, preauth_per_source=1, preauth_max=1))
    assert all(preauth.admit("a") is not None for _ in range(10))
    assert preauth.total == 10 and preauth.refused == preauth.evicted == 0
