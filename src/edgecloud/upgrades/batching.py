"""In what order an upgrade takes the site's controllers and hosts (StarlingX's upgrade
strategy stages): decided up front, shown by `upgrade check`, so an operator sees the plan
before anything changes. Pure functions, no I/O.

- **Controllers first**, one at a time: those that follow, then the leader (on a redundant site
  the standby is upgraded, leadership moves to it, then the other), so the site always has a
  working controller.
- **Hosts in batches** of at most ``max_parallel``, one batch after another. A batch never
  holds two hosts with members of one anti-affinity group (the group exists so that one host's
  outage leaves the others), nor every host a chain runs on when it runs on several (the chain
  keeps capacity on a host outside the batch). A chain on one host only is taken with that
  host whatever the order; for a release that reboots, that host is emptied by live migration
  first.

Hosts are placed first-fit in name order: deterministic, and optimal when nothing constrains
them (``ceil(hosts / max_parallel)`` batches).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class HostLoad:
    """What on a host constrains its batch."""

    name: str
    groups: frozenset[str] = field(default_factory=frozenset)  # anti-affinity groups on it
    chains: frozenset[str] = field(default_factory=frozenset)  # chains with a part on it


@dataclass(frozen=True)
class Plan:
    controllers: tuple[str, ...]  # in upgrade order, the leader last
    batches: tuple[tuple[str, ...], ...]  # host names, batch by batch


def controller_order(controllers: Sequence[str], leader: str | None) -> tuple[str, ...]:
    """Followers first (by id), the leader last."""
    last = [leader] if leader is not None and leader in controllers else []
    return (*sorted(c for c in controllers if c != leader), *last)


def plan_batches(hosts: Sequence[HostLoad], max_parallel: int) -> tuple[tuple[str, ...], ...]:
    """Every host in exactly one batch of at most ``max_parallel`` (>= 1), no batch breaking
    an anti-affinity group or a chain's last capacity."""
    if max_parallel < 1:
        raise ValueError(f"max_parallel must be at least 1, not {max_parallel}")
    spans: dict[str, set[str]] = {}
    for host in hosts:
        for chain in host.chains:
            spans.setdefault(chain, set()).add(host.name)
    batches: list[list[HostLoad]] = []
    for host in sorted(hosts, key=lambda h: h.name):
        for batch in batches:
            if _fits(batch, host, max_parallel, spans):
                batch.append(host)
                break
        else:
            batches.append([host])
    return tuple(tuple(h.name for h in batch) for batch in batches)


def _fits(
    batch: list[HostLoad], host: HostLoad, max_parallel: int, spans: dict[str, set[str]]
) -> bool:
    if len(batch) >= max_parallel:
        return False
    if any(host.groups & other.groups for other in batch):
        return False
    names = {h.name for h in batch} | {host.name}
    return not any(len(spans[chain]) > 1 and spans[chain] <= names for chain in host.chains)


def plan(
    controllers: Sequence[str], leader: str | None, hosts: Sequence[HostLoad], max_parallel: int
) -> Plan:
    return Plan(controller_order(controllers, leader), plan_batches(hosts, max_parallel))
