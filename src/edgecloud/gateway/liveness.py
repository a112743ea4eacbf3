"""Which disconnected hosts to declare offline: one at a time, or hold off for a mass event.

A pure function of the clock, the gateway's ``gone_since`` map (host -> when its session
ended) and the set of hosts caught in a mass event, so it is tested without a network. When
many hosts are missing together (a fibre cut, a power loss, a controller restart) that is one
event: the gateway raises ONE alarm (200.020) and waits (``mass_loss_grace``) instead of
declaring each host failed. Every host that was missing while many were (``together``, even
before anyone's silence passed the normal limit) is caught in the event and keeps its grace
after the count drops: the last stragglers of a reconnect storm are not declared failed just
because most of the others are back by the time their silence passes the limit.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

from edgecloud.gateway.admission import Protection


@dataclass(frozen=True)
class Verdict:
    offline: list[str]  # declare these offline now
    mass_loss: bool  # a multi-host loss is in progress (raise the alarm)
    together: bool  # many hosts are missing now (catch them all in the event)
    silent: int  # hosts missing for longer than the normal limit


def judge(
    now: float,
    gone_since: dict[str, float],
    total: int,
    limit: float,
    protection: Protection,
    caught: Set[str] = frozenset(),
) -> Verdict:
    """``total``: hosts the gateway knows (connected + missing); ``limit``: the normal grace;
    ``caught``: hosts that were missing during a mass event (the caller keeps this set: add
    every missing host while ``together``, drop a host when it returns or goes offline)."""
    silent = [h for h, since in gone_since.items() if now - since > limit]
    threshold = max(protection.mass_loss_min, protection.mass_loss_ratio * total)
    together = protection.enabled and len(gone_since) >= threshold
    mass = together and bool(silent)
    grace = max(limit, protection.mass_loss_grace) if protection.enabled else limit
    late = [
        h
        for h, since in gone_since.items()
        if now - since > (grace if mass or h in caught else limit)
    ]
    return Verdict(late, mass, together, len(silent))
