"""Pure planning of a chain's dataplane: hops of the path, and the flows a change touches.

A chain steers traffic by input port: customer traffic entering at the ingress port goes to
the first service's customer-facing vNIC, each service's network-facing vNIC goes on to the
next service's customer-facing vNIC, and the last one goes to the egress port; the reverse
direction mirrors it. One flow per hop and direction, matched on ``in_port`` alone, so an
insert, remove or replace changes only the flows of the hops that change (an insert: two
modified and two new flows) and the switchover is one atomic bundle (make before break).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


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


def steering(ingress: Port, egress: Port, services: Sequence[ServiceHop]) -> dict[str, str]:
    """Every flow of the path as {input port key: output port key}, both directions."""
    forward = [ingress]
    for service in services:
        forward += [service.customer, service.network]
    forward.append(egress)
    flows: dict[str, str] = {}
    for i in range(0, len(forward), 2):
        src, dst = forward[i], forward[i + 1]
        flows[src.key()] = dst.key()
        flows[dst.key()] = src.key()
    return flows


@dataclass(frozen=True)
class FlowChanges:
    """What one bundle must do: flows to add or overwrite, and input ports to stop steering."""

    put: dict[str, str]
    remove: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.put) + len(self.remove)


def changes(current: Mapping[str, str], desired: Mapping[str, str]) -> FlowChanges:
    """The smallest set of flow changes that turns ``current`` into ``desired``."""
    put = {port: out for port, out in desired.items() if current.get(port) != out}
    remove = tuple(sorted(port for port in current if port not in desired))
    return FlowChanges(put, remove)


def apply(current: Mapping[str, str], change: FlowChanges) -> dict[str, str]:
    """``current`` after ``change`` (what the switch holds once the bundle committed)."""
    result = {port: out for port, out in current.items() if port not in change.remove}
    result.update(change.put)
    return result
