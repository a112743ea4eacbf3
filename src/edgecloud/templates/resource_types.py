"""The resource types templates may use: property schemas, attributes, update behaviour.

A registry of plain data. templates/properties.py checks property values against the
``Schema`` entries, templates/loading.py checks ``get_attr`` against ``attributes``, and
templates/diffing.py reads ``update`` to decide between an in-place update and a
replacement. Adding a type is one ``ResourceType(...)`` entry in ``RESOURCE_TYPES``.

``Edgecloud::Chain::Service`` is edgecloud's own: it says which of a server's vNICs (an index
into its ``networks`` list) faces the customer and which faces the network.

Each type has a ``role``: ``object`` (becomes a site object: services/stacks.py maps it),
``computed`` (its attributes are computed by the engine, templates/software_configs.py: no
site object), ``ignored`` (accepted so that templates written for a full OpenStack load, with
a documented reason it has no effect on an edge site) or ``group`` (expanded into members by
templates/expanding.py). Types with no meaning on an edge site are in ``REFUSED`` with the
reason the operator is told. ``aliases`` are Heat's deprecated property names
(``network_id`` for ``network``), renamed when the template is loaded. Names of site objects
follow the API's rule (``NAME_PATTERN``, as api/schemas.py ``Name``): a template cannot carry
``../`` or spaces into node paths through a server or network name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["string", "integer", "number", "boolean", "list", "map"]
Update = Literal["in_place", "replace"]
Role = Literal["object", "computed", "ignored", "group"]
Format = Literal["cidr", "ip"]

NET = "OS::Neutron::Net"
PORT = "OS::Neutron::Port"
SERVER = "OS::Nova::Server"
CHAIN_SERVICE = "Edgecloud::Chain::Service"
SUBNET = "OS::Neutron::Subnet"
KEYPAIR = "OS::Nova::KeyPair"
RANDOM_STRING = "OS::Heat::RandomString"
CLOUD_CONFIG = "OS::Heat::CloudConfig"
MULTIPART_MIME = "OS::Heat::MultipartMime"
SOFTWARE_CONFIG = "OS::Heat::SoftwareConfig"
NONE = "OS::Heat::None"
SERVER_GROUP = "OS::Nova::ServerGroup"
RESOURCE_GROUP = "OS::Heat::ResourceGroup"
SECURITY_GROUP = "OS::Neutron::SecurityGroup"
SECURITY_GROUP_RULE = "OS::Neutron::SecurityGroupRule"
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}"  # the API's Name rule (api/schemas.py)
MAX_GROUP_COUNT = 100
CHARACTER_CLASSES = (
    "lettersdigits", "letters", "lowercase", "uppercase", "digits", "hexdigits", "octdigits",
)  # fmt: skip
USER_DATA_FORMATS = ("RAW", "SOFTWARE_CONFIG", "HEAT_CFNTOOLS")
IPV6_MODES = ("slaac", "dhcpv6-stateful", "dhcpv6-stateless")

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
    allowed: tuple[object, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    pattern: str | None = None
    items: Schema | None = None
    fields: Mapping[str, Schema] | None = None
    one_of: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    reference_only: bool = False
    index_into: tuple[str, str] | None = None
    format: Format | None = None


@dataclass(frozen=True)
class ResourceType:
    """A supported resource type; ``distinct`` pairs of properties must not be equal.

    ``open_properties``/``open_attributes``: any property / attribute name is accepted
    (OS::Heat::None, ignored types, groups).
    """

    name: str
    properties: Mapping[str, Schema]
    attributes: frozenset[str]
    distinct: tuple[tuple[str, str], ...] = ()
    description: str = field(default="", compare=False)
    role: Role = "object"
    aliases: Mapping[str, str] = field(default_factory=dict)
    open_properties: bool = False
    open_attributes: bool = False


def _type(
    name: str,
    properties: Mapping[str, Schema],
    attributes: set[str],
    description: str,
    distinct: tuple[tuple[str, str], ...] = (),
    **extra: object,
) -> ResourceType:
    return ResourceType(
        name,
        dict(properties),
        frozenset(attributes),
        distinct,
        description,
        **extra,  # type: ignore[arg-type]
    )


_NAME = Schema("string", update="in_place", pattern=NAME_PATTERN)
_IGNORED_LIST = Schema("list")


_SERVER_NIC = Schema(
    "map",
    fields={
        "network": Schema("string", references=(NET,)),
        "port": Schema("string", references=(PORT,), reference_only=True),
        "tag": Schema("string"),
        "vif_model": Schema("string", allowed=VIF_MODELS),
        "pci_slot": Schema("integer", minimum=3, maximum=31),
        "fixed_ip": Schema("string", format="ip"),
        "subnet": Schema("string", references=(SUBNET,)),
    },
    one_of=("network", "port"),
)
_FIXED_IP = Schema(
    "map",
    fields={
        "ip_address": Schema("string", format="ip"),
        "subnet": Schema("string", references=(SUBNET,)),
    },
)
_SUBNET_MODE = Schema("string", allowed=IPV6_MODES)

_TYPES = (
    _type(
        NET,
        {
            "name": _NAME,
            "admin_state_up": Schema("boolean"),
            "shared": Schema("boolean"),
            "port_security_enabled": Schema("boolean"),
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
            "name": _NAME,
            "mac_address": Schema("string", pattern=MAC_PATTERN),
            "binding:vnic_type": Schema("string", allowed=VNIC_TYPES),
            "fixed_ips": Schema("list", items=_FIXED_IP),
            "security_groups": _IGNORED_LIST,
            "port_security_enabled": Schema("boolean"),
            "allowed_address_pairs": _IGNORED_LIST,
            "admin_state_up": Schema("boolean"),
        },
        {"id", "mac_address", "network", "fixed_ips", "name"},
        "A port on a network, to hand to a server's networks list.",
        aliases={"network_id": "network"},
    ),
    _type(
        SERVER,
        {
            "name": _NAME,
            "image": Schema("string", required=True),
            "flavor": Schema("string", required=True, update="in_place"),
            "networks": Schema("list", items=_SERVER_NIC),
            "metadata": Schema("map", update="in_place"),
            "scheduler_hints": Schema("map", fields={"group": Schema("string")}),
            "user_data": Schema("string"),
            "user_data_format": Schema("string", allowed=USER_DATA_FORMATS),
            "user_data_update_policy": Schema("string", allowed=("REPLACE", "IGNORE")),
            "key_name": Schema("string", pattern=NAME_PATTERN),
            # edgecloud's own: what happens when the server's host fails (services/recovery.py)
            "recovery_policy": Schema("string", allowed=("recover", "restart", "none")),
            "config_drive": Schema("boolean"),
            "security_groups": _IGNORED_LIST,
            "availability_zone": Schema("string"),
        },
        {"id", "name", "host", "status", "networks", "first_address"},
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

_CHARACTER_CLASS = Schema(
    "map",
    fields={
        "class": Schema("string", allowed=CHARACTER_CLASSES),
        "min": Schema("integer", minimum=1, maximum=512),
    },
)
_CHARACTER_SEQUENCE = Schema(
    "map",
    fields={
        "sequence": Schema("string", required=True),
        "min": Schema("integer", minimum=1, maximum=512),
    },
)
_MORE_TYPES = (
    _type(
        SUBNET,
        {
            "network": Schema("string", required=True, references=(NET,)),
            "cidr": Schema("string", required=True, format="cidr"),
            "ip_version": Schema("integer", allowed=(4, 6)),
            "gateway_ip": Schema("string", format="ip", update="in_place"),
            "allocation_pools": Schema(
                "list",
                update="in_place",
                items=Schema(
                    "map",
                    fields={
                        "start": Schema("string", required=True, format="ip"),
                        "end": Schema("string", required=True, format="ip"),
                    },
                ),
            ),
            "dns_nameservers": Schema(
                "list", update="in_place", items=Schema("string", format="ip")
            ),
            "host_routes": Schema(
                "list",
                update="in_place",
                items=Schema(
                    "map",
                    fields={
                        "destination": Schema("string", required=True, format="cidr"),
                        "nexthop": Schema("string", required=True, format="ip"),
                    },
                ),
            ),
            "enable_dhcp": Schema("boolean", update="in_place"),
            "name": _NAME,
            "ipv6_address_mode": _SUBNET_MODE,
            "ipv6_ra_mode": _SUBNET_MODE,
        },
        {"id", "name", "cidr", "gateway_ip", "network_id", "ip_version", "allocation_pools",
         "dns_nameservers", "host_routes", "enable_dhcp"},
        "An IPv4 or IPv6 subnet of a network: addresses, gateway, pools, DNS, routes, DHCP.",
        aliases={"network_id": "network"},
    ),
    _type(
        KEYPAIR,
        {
            "name": Schema("string", required=True, pattern=NAME_PATTERN),
            "public_key": Schema("string"),
            "save_private_key": Schema("boolean"),
            "type": Schema("string", allowed=("ssh",)),
        },
        {"public_key", "private_key", "name"},
        "An SSH key pair for servers' key_name; generated when no public_key is given.",
    ),
    _type(
        RANDOM_STRING,
        {
            "length": Schema("integer", minimum=1, maximum=512),
            "sequence": Schema("string", allowed=CHARACTER_CLASSES),
            "character_classes": Schema("list", items=_CHARACTER_CLASS),
            "character_sequences": Schema("list", items=_CHARACTER_SEQUENCE),
            "salt": Schema("string"),
        },
        {"value"},
        "A random string, made once and kept across stack updates (a new salt remakes it).",
        role="computed",
    ),
    _type(
        CLOUD_CONFIG,
        {"cloud_config": Schema("map")},
        {"config"},
        "A #cloud-config document for a server's user_data.",
        role="computed",
    ),
    _type(
        SOFTWARE_CONFIG,
        {
            "config": Schema("string"),
            "group": Schema("string"),
            "inputs": Schema("list"),
            "outputs": Schema("list"),
            "options": Schema("map"),
        },
        {"config"},
        "A configuration text for a server's user_data (no in-guest Heat agent is involved).",
        role="computed",
    ),
    _type(
        MULTIPART_MIME,
        {
            "parts": Schema(
                "list",
                items=Schema(
                    "map",
                    fields={
                        "config": Schema("string", required=True),
                        "filename": Schema("string"),
                        "subtype": Schema("string"),
                        "type": Schema("string", allowed=("text", "multipart")),
                    },
                ),
            ),
            "group": Schema("string"),
        },
        {"config"},
        "A multipart MIME user_data made of configs (references or inline text).",
        role="computed",
    ),
    _type(
        SERVER_GROUP,
        {
            "name": Schema("string", pattern=NAME_PATTERN),
            "policies": Schema(
                "list", items=Schema("string", allowed=("anti-affinity", "soft-anti-affinity"))
            ),
            "policy": Schema("string", allowed=("anti-affinity", "soft-anti-affinity")),
        },
        {"name"},
        "An anti-affinity group: servers naming it in scheduler_hints.group go to different hosts.",
        role="computed",
    ),
    _type(
        NONE,
        {},
        set(),
        "Does nothing (the usual resource_registry target to switch a resource off).",
        role="computed",
        open_properties=True,
        open_attributes=True,
    ),
    _type(
        SECURITY_GROUP,
        {},
        set(),
        "Accepted and ignored: edgecloud's vSwitch does not filter a VNF's traffic (the VNFs "
        "are the firewalls); ports keep no security group.",
        role="ignored",
        open_properties=True,
        open_attributes=True,
    ),
    _type(
        SECURITY_GROUP_RULE,
        {},
        set(),
        "Accepted and ignored, as OS::Neutron::SecurityGroup.",
        role="ignored",
        open_properties=True,
        open_attributes=True,
    ),
    _type(
        RESOURCE_GROUP,
        {
            "count": Schema("integer", minimum=0, maximum=MAX_GROUP_COUNT),
            "resource_def": Schema(
                "map",
                required=True,
                fields={
                    "type": Schema("string", required=True),
                    "properties": Schema("map"),
                    "metadata": Schema("map"),
                },
            ),
            "index_var": Schema("string"),
            "removal_policies": Schema("list"),
            "removal_policies_mode": Schema("string", allowed=("append", "update")),
        },
        set(),
        "count copies of resource_def, %index% replaced by 0, 1, ... in their properties.",
        role="group",
        open_attributes=True,
    ),
)  # fmt: skip

RESOURCE_TYPES: Mapping[str, ResourceType] = {t.name: t for t in (*_TYPES, *_MORE_TYPES)}

_NO_ROUTER = (
    "an edge site has no Neutron router, NAT or external network: VNFs are reached on their "
    "provider networks, and routing is a VNF's job"
)
_NO_AGENT = (
    "it needs Heat's in-guest agent and a signal endpoint, which an edge site does not run; "
    "configure guests with user_data (OS::Heat::CloudConfig, OS::Heat::MultipartMime)"
)
_NO_TELEMETRY = "autoscaling needs a telemetry service; use OS::Heat::ResourceGroup with a count"
REFUSED: Mapping[str, str] = {
    "OS::Neutron::FloatingIP": _NO_ROUTER,
    "OS::Neutron::FloatingIPAssociation": _NO_ROUTER,
    "OS::Neutron::Router": _NO_ROUTER,
    "OS::Neutron::RouterInterface": _NO_ROUTER,
    "OS::Neutron::RouterGateway": _NO_ROUTER,
    "OS::Neutron::ProviderNet": "use OS::Neutron::Net with network_type and segmentation_id",
    "OS::Neutron::Trunk": "VLAN trunk ports are not supported on the edge vSwitch",
    "OS::Cinder::Volume": "there is no block storage service on an edge site: each VNF boots "
    "from its own disk made from its image",
    "OS::Cinder::VolumeAttachment": "there is no block storage service on an edge site",
    "OS::Heat::WaitCondition": _NO_AGENT,
    "OS::Heat::WaitConditionHandle": _NO_AGENT,
    "OS::Heat::SwiftSignal": _NO_AGENT,
    "OS::Heat::SwiftSignalHandle": _NO_AGENT,
    "OS::Heat::SoftwareDeployment": _NO_AGENT,
    "OS::Heat::SoftwareDeployments": _NO_AGENT,
    "OS::Heat::SoftwareDeploymentGroup": _NO_AGENT,
    "OS::Heat::StructuredConfig": _NO_AGENT,
    "OS::Heat::StructuredDeployment": _NO_AGENT,
    "OS::Heat::StructuredDeployments": _NO_AGENT,
    "OS::Heat::AutoScalingGroup": _NO_TELEMETRY,
    "OS::Heat::ScalingPolicy": _NO_TELEMETRY,
    "OS::Heat::Stack": "remote stacks are not supported; use a nested template file",
}
REFUSED_PREFIXES: Mapping[str, str] = {
    "AWS::": "CloudFormation-compatible (AWS::) types are not supported; use the OS:: types",
    "OS::Aodh::": _NO_TELEMETRY,
    "OS::Octavia::": "there is no load-balancer service on an edge site; run a load-balancer VNF",
    "OS::Neutron::LBaaS::": "there is no load-balancer service on an edge site; run a "
    "load-balancer VNF",
    "OS::Swift::": "there is no object storage on an edge site",
    "OS::Glance::": "images are uploaded with `edgecloud image upload`, not made by stacks",
}


def resource_type(name: str) -> ResourceType | None:
    """The registered type called ``name``, or None."""
    return RESOURCE_TYPES.get(name)


def refusal(name: str) -> str | None:
    """Why resource type ``name`` is refused on an edge site, or None."""
    if name in REFUSED:
        return REFUSED[name]
    return next((why for prefix, why in REFUSED_PREFIXES.items() if name.startswith(prefix)), None)
