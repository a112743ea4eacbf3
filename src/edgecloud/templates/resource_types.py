"""The resource types templates may use: property schemas, attributes, update behaviour.

A registry of plain data. templates/properties.py checks property values against the
``Schema`` entries, templates/loading.py checks ``get_attr`` against ``attributes``, and
templates/diffing.py reads ``update`` to decide between an in-place update and a
replacement. Adding a type is one ``ResourceType(...)`` entry in ``RESOURCE_TYPES``.

``Edgecloud::Chain::Service`` is edgecloud's own: it says which of a server's vNICs (an index
into its ``networks`` list) faces the customer and which faces the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["string", "integer", "number", "boolean", "list", "map"]
Update = Literal["in_place", "replace"]

NET = "OS::Neutron::Net"
PORT = "OS::Neutron::Port"
SERVER = "OS::Nova::Server"
CHAIN_SERVICE = "Edgecloud::Chain::Service"

MAC_PATTERN = r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}"
VNIC_TYPES = ("normal", "direct", "direct-physical")
VIF_MODELS = ("virtio", "e1000", "rtl8139", "sriov-vf", "pci-passthrough")
NETWORK_TYPES = ("vlan", "flat")


@dataclass(frozen=True)
class Schema:
    """What one property (or one key of a map property, or a list's items) may hold.

    ``references``: resource types a ``get_resource`` here may name; ``reference_only``: the
    value must be such a ``get_resource``. ``fields`` lists a map's keys (None: any keys);
    ``one_of``: exactly one of these keys must be set. ``index_into=(sibling, prop)``: the
    value indexes list property ``prop`` of the resource that sibling property ``sibling``
    references. ``update`` is how a change to a top-level property is applied.
    """

    kind: Kind
    required: bool = False
    update: Update = "replace"
    allowed: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    pattern: str | None = None
    items: Schema | None = None
    fields: Mapping[str, Schema] | None = None
    one_of: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    reference_only: bool = False
    index_into: tuple[str, str] | None = None


@dataclass(frozen=True)
class ResourceType:
    """A supported resource type; ``distinct`` pairs of properties must not be equal."""

    name: str
    properties: Mapping[str, Schema]
    attributes: frozenset[str]
    distinct: tuple[tuple[str, str], ...] = ()
    description: str = field(default="", compare=False)


def _type(
    name: str,
    properties: Mapping[str, Schema],
    attributes: set[str],
    description: str,
    distinct: tuple[tuple[str, str], ...] = (),
) -> ResourceType:
    return ResourceType(name, dict(properties), frozenset(attributes), distinct, description)


_SERVER_NIC = Schema(
    "map",
    fields={
        "network": Schema("string", references=(NET,)),
        "port": Schema("string", references=(PORT,), reference_only=True),
        "tag": Schema("string"),
        "vif_model": Schema("string", allowed=VIF_MODELS),
        "pci_slot": Schema("integer", minimum=3, maximum=31),
    },
    one_of=("network", "port"),
)

_TYPES = (
    _type(
        NET,
        {
            "name": Schema("string", update="in_place"),
            "segmentation_id": Schema("integer", minimum=1, maximum=4094),
            "network_type": Schema("string", allowed=NETWORK_TYPES),
        },
        {"name", "id"},
        "A virtual network (a VLAN or a flat network on the edge vSwitch).",
    ),
    _type(
        PORT,
        {
            "network": Schema("string", required=True, references=(NET,)),
            "name": Schema("string", update="in_place"),
            "mac_address": Schema("string", pattern=MAC_PATTERN),
            "binding:vnic_type": Schema("string", allowed=VNIC_TYPES),
        },
        {"id", "mac_address", "network"},
        "A port on a network, to hand to a server's networks list.",
    ),
    _type(
        SERVER,
        {
            "name": Schema("string", update="in_place"),
            "image": Schema("string", required=True),
            "flavor": Schema("string", required=True, update="in_place"),
            "networks": Schema("list", items=_SERVER_NIC),
            "metadata": Schema("map", update="in_place"),
            "scheduler_hints": Schema("map", fields={"group": Schema("string")}),
        },
        {"id", "name", "host", "status"},
        "A VNF's virtual machine; the order of networks is the order of its vNICs.",
    ),
    _type(
        CHAIN_SERVICE,
        {
            "server": Schema("string", required=True, references=(SERVER,), reference_only=True),
            "customer_nic": Schema(
                "integer", required=True, minimum=0, index_into=("server", "networks")
            ),
            "network_nic": Schema(
                "integer", required=True, minimum=0, index_into=("server", "networks")
            ),
        },
        {"server", "customer_port", "network_port"},
        "Which vNIC of a server faces the customer and which faces the network.",
        distinct=(("customer_nic", "network_nic"),),
    ),
)

RESOURCE_TYPES: Mapping[str, ResourceType] = {t.name: t for t in _TYPES}


def resource_type(name: str) -> ResourceType | None:
    """The registered type called ``name``, or None."""
    return RESOURCE_TYPES.get(name)
