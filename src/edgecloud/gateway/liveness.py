"""Which disconnected hosts to declare offline: one at a time, or hold off for a mass event.

A pure function of the clock and the gateway's ``gone_since`` map (host -> when its session
ended), so it is tested without a network. When many hosts are missing together (a fibre cut,
a power loss, a controller restart) that is one event: the gateway raises ONE alarm (200.020)
and waits (``mass_loss_grace``) instead of declaring each host failed.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgecloud.gateway.admission import Protection


@dataclass(frozen=True)
class Verdict:
    offline: list[str]  # declare these offline now
    mass_loss: bool  # a multi-host loss is in progress
    silent: int  # hosts missing for longer than the normal limit


def judge(
    now: float, gone_since: dict[str, float], total: int, limit: float, protection: Protection
) -> Verdict:
    """``total``: hosts the gateway knows (connected + missing); ``limit``: the normal grace."""
    silent = [h for h, since in gone_since.items() if now - since > limit]
    threshold = max(protection.mass_loss_min, protection.mass_loss_ratio * total)
    mass = protection.enabled and len(gone_since) >= threshold and bool(silent)
    if not mass:
        return Verdict(silent, False, len(silent))
    grace = max(limit, protection.mass_loss_grace)
    late = [h for h, since in gone_since.items() if now - since > grace]
    return Verdict(late, True, len(silent))
