"""Pure planning of a chain's dataplane: the path, its hops, each host's flows, the changes.

A chain steers traffic by input port: customer traffic entering at the ingress port goes to
the first service's customer-facing vNIC, each service's network-facing vNIC goes on to the
next service's customer-facing vNIC, and the last one goes to the egress port; the reverse
direction mirrors it. Each pair of neighbouring ports is a *hop*. One flow per hop end and
direction, matched on ``in_port`` alone, so an insert, remove or replace changes only the
flows of the hops that change (an insert on one host: two modified and two new flows).

Across hosts (``host_flows``): a hop whose two ends sit on one host is a local output; a hop
that crosses hosts carries its frames over the node's uplink (a VLAN trunk to the site
switch) tagged with a *tag* of the hop's direction: the sending host pushes the tag and
outputs to the uplink (output token ``vlan:<tag>``), the receiving host matches
``in_port=uplink,dl_vlan=<tag>`` (match key ``vlan:<tag>``), pops the tag and outputs to
the port. Each direction has its own tag, so the MACs that are destinations on a tag's
VLAN never appear on it as sources: a learning site switch never learns where they are and
floods the tag to every node, and only the nodes holding the receiving port (two while an
instance migrates) take it in. So a port on two hosts gets every frame on both (a local
output and/or a tagged copy): no moment exists where a hop points at neither copy, and no
stale MAC table entry can send a hop to the wrong node. Tags are allocated site-wide by
services/chain_paths.py from ``HOP_TAGS``; a hop keeps its tags while it exists and a new hop
gets tags no live hop holds (the least recently released first), so old and new paths
never share a tag.

Make-before-break across hosts (``additive``, ``switched``): first every host gets the new
path's flows whose match keys the old path does not use (no old traffic crosses them), then
the flows whose outputs change, with the old path's other flows kept (in-flight frames
drain), then the old path's leftovers go. Any mix of hosts in the first or second state
forwards end to end (tests/unit/chains/test_planning_hosts.py).

``next_order`` says where services stand after an operation (insert, replace, remove,
reorder, create, delete).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar


@dataclass(frozen=True)
class Port:
    """A vSwitch port of the path: a named port (ingress/egress attachment) or a vNIC."""

    name: str | None = None
    instance_id: str | None = None
    vnic_index: int | None = None

    def key(self) -> str:
        """A stable text form, used on the wire and as the flow's identity."""
        return self.name if self.name is not None else f"vnic:{self.instance_id}:{self.vnic_index}"

    @classmethod
    def parse(cls, key: str) -> Port:
        if key.startswith("vnic:"):
            _, instance_id, index = key.split(":")
            return cls(instance_id=instance_id, vnic_index=int(index))
        return cls(name=key)


@dataclass(frozen=True)
class ServiceHop:
    """One service of the chain: its VNF and which vNICs face the customer and the network."""

    instance_id: str
    customer_vnic: int
    network_vnic: int

    @property
    def customer(self) -> Port:
        return Port(instance_id=self.instance_id, vnic_index=self.customer_vnic)

    @property
    def network(self) -> Port:
        return Port(instance_id=self.instance_id, vnic_index=self.network_vnic)


Hop = tuple[str, str]  # (port key sending in the forward direction, port key receiving)
Outputs = tuple[str, ...]  # port keys and ``vlan:<tag>`` tokens, in the order they are output
HostFlows = dict[str, Outputs]  # match key (port key or ``vlan:<tag>``) -> outputs
HOP_TAGS = range(3000, 4095)  # VLAN ids of hops on the uplink; networks use below (catalog.py)
TAGGED = "vlan:"


def tagged(tag: int) -> str:
    """The match key / output token of a hop tag on the uplink."""
    return f"{TAGGED}{tag}"


def tag_of(key: str) -> int | None:
    """The hop tag of a ``vlan:<tag>`` key or token; None for a port key."""
    return int(key[len(TAGGED) :]) if key.startswith(TAGGED) else None


def hops(ingress: Port, egress: Port, services: Sequence[ServiceHop]) -> list[Hop]:
    """The path's hops in forward order: ingress -> first service ... last service -> egress."""
    forward = [ingress]
    for service in services:
        forward += [service.customer, service.network]
    forward.append(egress)
    return [(forward[i].key(), forward[i + 1].key()) for i in range(0, len(forward), 2)]


def hop_id(hop: Hop) -> str:
    """A hop direction's stored identity, ``<from>><to>`` (its tag is kept under it)."""
    return f"{hop[0]}>{hop[1]}"


def host_flows(
    path: Iterable[Hop], where: Mapping[str, Collection[str]], tags: Mapping[str, int]
) -> dict[str, HostFlows]:
    """Each host's flows for ``path``: ``where`` maps port keys to the hosts holding the port
    (two while an instance migrates; none: the end is left out), ``tags`` hop direction ids
    to tags (needed for both directions of every hop that crosses hosts)."""
    flows: dict[str, dict[str, list[str]]] = {}

    def add(host: str, key: str, outputs: Iterable[str]) -> None:
        have = flows.setdefault(host, {}).setdefault(key, [])
        have += [out for out in outputs if out not in have]

    for hop in path:
        ends = {key: set(where.get(key, ())) for key in hop}
        for here, there in (hop, hop[::-1]):  # each direction on its own tag
            for host in ends[here]:  # senders
                outputs = [there] if host in ends[there] else []
                if ends[there] - {host}:
                    outputs.append(tagged(_tag(tags, (here, there))))
                if outputs:
                    add(host, here, outputs)
            for host in ends[there]:  # receivers of what another host sent
                if ends[here] - {host}:
                    add(host, tagged(_tag(tags, (here, there))), [there])
    return {host: {key: tuple(out) for key, out in f.items()} for host, f in flows.items()}


def _tag(tags: Mapping[str, int], direction: Hop) -> int:
    tag = tags.get(hop_id(direction))
    if tag is None:
        raise ValueError(f"hop {hop_id(direction)} crosses hosts and has no tag")
    return tag


def directions(path: Iterable[Hop]) -> list[Hop]:
    """Both directions of every hop (what tags are allocated for)."""
    return [d for hop in path for d in (hop, (hop[1], hop[0]))]


def steering(ingress: Port, egress: Port, services: Sequence[ServiceHop]) -> dict[str, str]:
    """Every flow of a path whose ports all sit on one host, as {input port key: output port
    key} (both directions)."""
    path = hops(ingress, egress, services)
    where = {key: ("here",) for hop in path for key in hop}
    return {key: out[0] for key, out in host_flows(path, where, {}).get("here", {}).items()}


def additive(old: Mapping[str, HostFlows], new: Mapping[str, HostFlows]) -> dict[str, HostFlows]:
    """Phase 1 of a change: the old flows plus the new path's flows on match keys the old
    path does not use (nothing of the old path's traffic changes)."""
    return {host: {**new.get(host, {}), **old.get(host, {})} for host in {*old, *new}}


def switched(old: Mapping[str, HostFlows], new: Mapping[str, HostFlows]) -> dict[str, HostFlows]:
    """Phase 2: the new path's flows, and the old path's other flows kept so that frames in
    flight (inside a leaving service, on an old tag) still arrive."""
    return {host: {**old.get(host, {}), **new.get(host, {})} for host in {*old, *new}}


def to_wire(flows: Mapping[str, Outputs]) -> dict[str, Any]:
    """The snapshot form: one output as a plain string (what every agent understands), two or
    more as a list."""
    return {key: out[0] if len(out) == 1 else list(out) for key, out in sorted(flows.items())}


def from_wire(flows: Mapping[str, Any]) -> HostFlows:
    """The snapshot form back to outputs (a string or a list of strings per key)."""
    return {
        str(key): (str(out),) if isinstance(out, str) else tuple(str(o) for o in out)
        for key, out in flows.items()
    }


def next_order(
    kind: str, active: Sequence[str], pending: Sequence[str], op: Mapping[str, Any]
) -> list[str]:
    """Service names in path order after an operation of ``kind``: ``active`` the current
    path, ``pending`` the new services (in their own order), ``op`` the operation's
    ``position`` / ``order`` / ``old`` (services leaving)."""
    staying = [name for name in active if name not in op.get("old", ())]
    if kind == "create":
        return list(pending)
    if kind == "insert":
        at = min(int(op.get("position", len(staying))), len(staying))
        return [*staying[:at], *pending, *staying[at:]]
    if kind == "replace":
        at = min(int(op.get("position", len(staying))), len(staying))
        return [*staying[:at], *pending, *staying[at:]]
    if kind == "reorder":
        return [str(name) for name in op["order"]]
    return staying  # remove, delete (every service is in ``old``)


V = TypeVar("V")


@dataclass(frozen=True)
class FlowChanges(Generic[V]):
    """What one bundle must do: flows to add or overwrite, and input ports to stop steering."""

    put: dict[str, V]
    remove: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.put) + len(self.remove)


def changes(current: Mapping[str, V], desired: Mapping[str, V]) -> FlowChanges[V]:
    """The smallest set of flow changes that turns ``current`` into ``desired``."""
    put = {port: out for port, out in desired.items() if current.get(port) != out}
    remove = tuple(sorted(port for port in current if port not in desired))
    return FlowChanges(put, remove)


def apply(current: Mapping[str, V], change: FlowChanges[V]) -> dict[str, V]:
    """``current`` after ``change`` (what the switch holds once the bundle committed)."""
    result = {port: out for port, out in current.items() if port not in change.remove}
    result.update(change.put)
    return result
