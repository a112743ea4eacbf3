"""The Open vSwitch network driver: a node's integration bridge, its VLANs and vNIC ports.

Implements ``NetworkDriver`` (drivers/network/base.py) with ``ovs-vsctl`` and ``ovs-ofctl`` run as
asyncio subprocesses; the agent is its caller, the libvirt compute driver (drivers/compute/
libvirt.py) plugs the ``VifBinding`` it returns. Everything the driver knows lives in OVSDB, so a
restarted agent rebuilds it from there (as Neutron's OVS agent does):

- the integration bridge (``br-int``): ``fail_mode=secure`` so OVS never forwards on its own, one
  base flow ``priority=0 actions=NORMAL`` (VLAN-aware MAC learning), OpenFlow 1.3-1.5 enabled so
  flows are committed atomically with OpenFlow bundles (``apply_flows_bundle``, chain steering):
  over one persistent OpenFlow connection to the bridge (drivers/network/openflow.py), or with
  an ``ovs-ofctl --bundle`` process when that connection cannot be had;
- each network: a local VLAN (``NetworkSpec.segmentation_id``, flat networks too), recorded in the
  bridge's external_ids as ``edgecloud-network:<name>``. VXLAN will add a tunnel bridge (br-tun)
  patched to br-int, mapping local VLANs to VNIs, like Neutron;
- each vNIC: an access port tagged with the network's VLAN, named by ``port_name_for`` and
  labelled in its Interface external_ids (iface-id, attached-mac, vm-uuid, edgecloud-vnic-index,
  edgecloud-network).

``bind`` makes each vNIC's tap (persistent, up) and its access port with tag and labels; the
domain's ``<interface type='ethernet'>`` names the tap with ``managed='no'``, so libvirt only
opens it and never runs ``ovs-vsctl``: a live migration's downtime holds no OVSDB round trip
(with an openvswitch virtualport libvirt read and wrote each port's external_ids while the
guest was paused, ~40 ms per vNIC here), the port's number is the same before the guest
arrives, and a domain stop or restart leaves port and flows alone. ``release_*`` deletes port
and tap. Domains defined by older releases (libvirt's own taps) keep working: ``label_port``
re-labels a port libvirt re-created, and a tap that already exists is used as it is.

``plug_namespace_port`` attaches a veth end living in a network namespace: the endpoint used by
e2e tests and by the service chain probe.

Chain steering (``apply_steering``): one flow per match at priority 300 (above NORMAL),
``in_port=<port>`` or, for a hop arriving from another node, ``in_port=<uplink>,
dl_vlan=<hop tag>`` (the tag is stripped before output); a hop to another node pushes its tag
and outputs to ``uplink`` (the node's trunk port to the site switch, carrying every VLAN).
Each flow's cookie is STEERING_COOKIE_BASE plus a hash of its match and actions, so what the
switch holds is compared with what is wanted without parsing actions back.

DHCP (``ensure_dhcp``), as Neutron's DHCP agent: per network a namespace (``dhcp_namespace``)
holding an OVS internal port (``dhcp_port_name``, access port on the network's VLAN, labelled
``edgecloud-dhcp``) with the DHCP server address of each subnet, and one dnsmasq in it
(drivers/network/dnsmasq.py) whose files live in STATE/dhcp/<network id>. ``delete_network``
removes all three. On a site of several nodes DHCP is distributed, as OVN does it: each node
answers its own vNICs with the same server address and MAC, which never crosses the uplink.

Device, port and namespace names are global to a machine, and a machine may hold several nodes
of a site (``edgecloud up --nodes N``): each name hashes the bridge in, so it is unique per node
and the same after a restart (br-int, the default, keeps the names of earlier releases). ``uplink``: the bridge's trunk port to the other nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import ipaddress
import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from edgecloud.chains import planning
from edgecloud.drivers.compute.base import VifBinding
from edgecloud.drivers.network import dnsmasq, openflow
from edgecloud.drivers.network.base import (
    DhcpReservation,
    DhcpSubnet,
    NetworkCapabilities,
    NetworkDriver,
    NetworkSpec,
    PortInfo,
)
from edgecloud.errors import DriverError

log = logging.getLogger(__name__)

DEFAULT_BRIDGE = "br-int"
TAP_QUEUE = 1000  # packets a vNIC's tap keeps for its guest (Linux's default)
HELD_TAP_QUEUE = 8  # ... while the guest is still on its way here (hold_port)
COMMAND_TIMEOUT = 10.0  # seconds, per ovs-vsctl / ovs-ofctl / ip call
OPENFLOW_VERSION = "OpenFlow14"  # the lowest version with bundles
BRIDGE_PROTOCOLS = "OpenFlow10,OpenFlow13,OpenFlow14,OpenFlow15"
BASE_FLOW_COOKIE = 0xEC00_0000_0000_0001  # flows installed by setup(); chains use other cookies
BASE_FLOWS = (f"cookie={BASE_FLOW_COOKIE:#x},table=0,priority=0,actions=NORMAL",)
MAX_IFNAME = 15  # IFNAMSIZ - 1
MAX_VNIC_INDEX = 999

# Interface external_ids (the first three as Neutron and os-vif write them).
IFACE_ID = "iface-id"
ATTACHED_MAC = "attached-mac"
VM_UUID = "vm-uuid"
VNIC_INDEX = "edgecloud-vnic-index"
NETWORK_NAME = "edgecloud-network"
NAMESPACE = "edgecloud-netns"
DHCP_PORT = "edgecloud-dhcp"  # Interface external_ids of a DHCP port: the network's name
DHCP_NAMESPACE_PREFIX = "ec-dhcp-"
# Bridge external_ids: one key per network this node knows.
NETWORK_KEY_PREFIX = "edgecloud-network:"

_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")

# Run inside a namespace (ip netns exec): turn off TX checksum offload on a veth end. The
# userspace datapath reads packets with AF_PACKET and cannot finish a partial checksum, so TCP
# and UDP from an offloading veth would arrive with bad checksums and be dropped (ICMP is
# unaffected). SIOCETHTOOL with ETHTOOL_STXCSUM, so that no ethtool binary is needed.
_TX_CSUM_OFF = """
import ctypes, fcntl, socket, struct, sys
cmd = ctypes.create_string_buffer(struct.pack("II", 0x17, 0))
ifreq = struct.pack("16sP", sys.argv[1].encode(), ctypes.addressof(cmd))
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    fcntl.ioctl(s, 0x8946, ifreq)
"""


def default_datapath_type() -> str:
    """``netdev`` (userspace datapath) without the kernel's openvswitch module, else ``system``."""
    return "system" if Path("/sys/module/openvswitch").exists() else "netdev"


def taps_on(bridge: str) -> list[str]:
    """The tap devices plugged into ``bridge`` (the vNIC taps ``bind`` made), for teardown
    paths that remove whole bridges (``edgecloud down``, tests): removing a bridge leaves its
    devices behind. Empty when the bridge does not exist."""
    argv = ["ovs-vsctl", f"--timeout={int(COMMAND_TIMEOUT)}", "list-ports", bridge]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT + 5)
    except (OSError, subprocess.TimeoutExpired):
        return []
    ports = done.stdout.split() if done.returncode == 0 else []
    return [port for port in ports if Path("/sys/class/net", port, "tun_flags").exists()]


def delete_devices_now(names: Iterable[str]) -> None:
    """Delete host network devices by name (teardown: what is already gone is no error)."""
    for name in names:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(
                ["ip", "link", "del", name], capture_output=True, timeout=COMMAND_TIMEOUT
            )


DHCP_GUARD_COOKIE = 0xEC0D_0000_0000_0001  # the flows keeping a DHCP MAC on its node
DHCP_GUARD_PRIORITY = 200  # above NORMAL, below chain steering (a vNIC port never has that MAC)
STEERING_COOKIE = 0xEC5E_0000_0000_0001  # chain steering flows before chains across hosts
STEERING_COOKIE_BASE = 0xEC5E_0000_0000_0000  # chain steering flows: base | hash(flow)
STEERING_COOKIE_MASK = 0xFFFF_0000_0000_0000
STEERING_PRIORITY = 300  # above the NORMAL flow, so steered ports bypass MAC learning
STEERING_REREAD = 30.0  # seconds: chain flows read back from the switch at least this often
_COOKIE_RE = re.compile(r"cookie=(0x[0-9a-f]+)")
_IN_PORT_RE = re.compile(r"in_port=\"?([^,\s\"]+)\"?")
_DL_VLAN_RE = re.compile(r"dl_vlan=(\d+)")


def _steering_match(in_port: str, vlan: int | None) -> str:
    return f"in_port={in_port}" + (f",dl_vlan={vlan}" if vlan is not None else "")


def _steering_cookie(match: str, actions: str) -> int:
    digest = hashlib.sha256(f"{match} {actions}".encode()).digest()
    return STEERING_COOKIE_BASE | int.from_bytes(digest[:6], "big")


OFPORT_FIRST, OFPORT_COUNT = 1000, 60000  # requested OpenFlow port numbers of vNIC ports


def ofport_for(port_name: str) -> int:
    """The OpenFlow port number a vNIC port asks for (``ofport_request``): fixed by its name,
    so chain flows can name the port before its device exists (a VNF migrating in)."""
    digest = hashlib.sha256(port_name.encode()).digest()
    return OFPORT_FIRST + int.from_bytes(digest[:4], "big") % OFPORT_COUNT


def _renamed(text: str, name: str, number: int) -> str:
    """``text`` with port ``name`` (as in_port=NAME or output:NAME) written as its number."""
    return re.sub(rf"(in_port=|output:){re.escape(name)}(?=,|$)", rf"\g<1>{number}", text)


def port_name_for(instance_id: str, vnic_index: int, bridge: str) -> str:
    """The stable host-side device name of a vNIC on ``bridge``: ``ec`` + 10 hex digits + index
    (<= 15 chars).

    The hex digits hash the bridge and the whole instance id: ids sharing a prefix (sequential
    UUIDs, test ids) still get distinct names, and so do two nodes on one machine, or the two
    copies of a VNF during a migration between them (device names are global to a machine).
    The default bridge keeps the names of earlier releases (``_digest``).
    """
    if not 0 <= vnic_index <= MAX_VNIC_INDEX:
        raise DriverError(f"vNIC index {vnic_index} is out of range 0-{MAX_VNIC_INDEX}")
    return _instance_stem(instance_id, bridge) + str(vnic_index)


def dhcp_port_name(network_id: str, bridge: str) -> str:
    """The DHCP port of a network on ``bridge``: ``ecdh`` + 10 hex digits (14 characters)."""
    return "ecdh" + _digest(bridge, network_id)


def dhcp_namespace(network_id: str, bridge: str) -> str:
    """The DHCP namespace of a network on ``bridge``: ``ec-dhcp-<bridge>-<network id>``
    (``ec-dhcp-<network id>`` on the default bridge, see ``_digest``)."""
    if bridge == DEFAULT_BRIDGE:
        return f"{DHCP_NAMESPACE_PREFIX}{network_id}"
    return f"{DHCP_NAMESPACE_PREFIX}{bridge}-{network_id}"


def dhcp_mac(network_id: str) -> str:
    """The DHCP server's MAC on a network: the same on every node (distributed DHCP).

    Locally administered unicast (02:...), outside QEMU's 52:54:00 range the vNICs use.
    """
    digest = hashlib.sha256(f"dhcp/{network_id}".encode()).digest()
    return "02:ec:" + ":".join(f"{b:02x}" for b in digest[:4])


def _dhcp_guard_matches(mac: str) -> list[str]:
    """Non-strict matches of every guard flow of the DHCP server with ``mac``."""
    return [f"cookie={DHCP_GUARD_COOKIE:#x}/-1,{field}={mac}" for field in ("dl_src", "dl_dst")]


def _instance_stem(instance_id: str, bridge: str) -> str:
    return "ec" + _digest(bridge, instance_id)


def _digest(bridge: str, key: str) -> str:
    """10 hex digits of (bridge, key): the per-node salt of a machine-global name.

    The default bridge adds no salt: its names are those of the releases before nodes shared a
    machine, so an upgraded agent finds the ports of the VMs that kept running (their taps
    carry the old names until they boot again); a machine has one br-int anyway.
    """
    salted = key if bridge == DEFAULT_BRIDGE else f"{bridge}/{key}"
    return hashlib.sha256(salted.encode()).hexdigest()[:10]


def _one_sentence(text: str) -> str:
    lines = [line.strip().rstrip(".") for line in text.strip().splitlines() if line.strip()]
    return "; ".join(lines) or "no error output"


def _network_key(name: str) -> str:
    return NETWORK_KEY_PREFIX + name


def _map_arg(column: str, key: str, value: str) -> str:
    """An ovs-vsctl ``column:key=value`` argument, quoted so any text survives."""
    return f"{column}:{json.dumps(key)}={json.dumps(value)}"


async def run_command(
    argv: Sequence[str], what: str, stdin: str | None = None, limit: float = COMMAND_TIMEOUT
) -> str:
    """Run one command without blocking the loop; its stdout, or DriverError saying ``what``."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise DriverError(f"could not {what}: cannot run {argv[0]} ({exc.strerror})") from exc
    data = stdin.encode() if stdin is not None else None
    try:
        async with asyncio.timeout(limit):
            out, err = await proc.communicate(data)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise DriverError(f"could not {what}: {argv[0]} gave no answer in {limit:g} s") from None
    if proc.returncode != 0:
        raise DriverError(f"could not {what}: {_one_sentence(err.decode(errors='replace'))}")
    return out.decode(errors="replace")


@dataclass(frozen=True)
class _OvsPort:
    """One port of the bridge as OVSDB holds it (its first interface's external_ids)."""

    name: str
    tag: int | None
    external_ids: Mapping[str, str]


def _datum(value: Any) -> Any:
    """Decode an OVSDB JSON datum: ["uuid", u], ["set", [...]], ["map", [[k, v]...]], atoms."""
    if isinstance(value, list) and len(value) == 2:
        kind, body = value
        if kind == "map":
            return {k: _datum(v) for k, v in body}
        if kind == "set":
            return [_datum(v) for v in body]
        if kind in ("uuid", "named-uuid"):
            return body
    return value


def _tables(output: str) -> list[list[dict[str, Any]]]:
    """Parse the ``--format=json`` tables of one ovs-vsctl call (one per line) into rows."""
    tables = []
    for line in output.splitlines():
        if line.strip():
            doc = json.loads(line)
            headings = doc["headings"]
            tables.append(
                [dict(zip(headings, map(_datum, row), strict=True)) for row in doc["data"]]
            )
    return tables


def _dhcp_subnet(raw: dict[str, Any]) -> DhcpSubnet:
    return DhcpSubnet(
        **dict(
            raw,
            dns_nameservers=tuple(raw["dns_nameservers"]),
            host_routes=tuple(tuple(r) for r in raw["host_routes"]),
            reservations=tuple(DhcpReservation(**r) for r in raw["reservations"]),
        )
    )


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


class OvsNetworkDriver(NetworkDriver):
    """Networks as local VLANs on one Open vSwitch integration bridge."""

    name: ClassVar[str] = "ovs"
    capabilities: ClassVar[NetworkCapabilities] = NetworkCapabilities(
        kinds=("flat", "vlan"), openflow_bundles=True, dhcp=True
    )

    def __init__(
        self,
        state_dir: Path,
        bridge: str = DEFAULT_BRIDGE,
        datapath_type: str | None = None,
        timeout: float = COMMAND_TIMEOUT,
        uplink: str | None = None,
    ) -> None:
        """``uplink``: the bridge's trunk port towards the other nodes of the site (a NIC, or
        a patch port to the site switch on one machine), made a trunk of every VLAN by
        ``setup``; None on a single node."""
        if not _IFNAME_RE.match(bridge):
            raise DriverError(f"bridge name {bridge!r} is not a valid interface name")
        if uplink is not None and not _IFNAME_RE.match(uplink):
            raise DriverError(f"uplink name {uplink!r} is not a valid interface name")
        self.uplink = uplink  # trunk port to the site switch (all VLANs); None: a lone node
        self.state_dir = state_dir  # OVSDB holds the vSwitch state; dhcp/ the dnsmasq files
        self.bridge = bridge
        self.datapath_type = datapath_type or default_datapath_type()
        self.timeout = timeout
        self._steered: dict[str, int] | None = None  # chain flows last committed: match -> cookie
        # bundles go over one OpenFlow connection (openflow.py); ovs-ofctl when it cannot
        self._openflow = openflow.BundleConnection(openflow.socket_path(bridge), timeout)
        self._openflow_down: str | None = None  # why the last bundle went to ovs-ofctl
        # when the chain flows were last read from the switch: (connection number, monotonic)
        self._read: tuple[int | None, float] = (None, 0.0)

    # -- commands -------------------------------------------------------------------------

    async def _vsctl(self, what: str, *args: str) -> str:
        argv = ["ovs-vsctl", f"--timeout={max(1, int(self.timeout))}", *args]
        return await run_command(argv, what, limit=self.timeout + 5)

    async def _ofctl(self, what: str, *args: str, stdin: str | None = None) -> str:
        argv = ["ovs-ofctl", "-O", OPENFLOW_VERSION, f"--timeout={max(1, int(self.timeout))}"]
        return await run_command([*argv, *args], what, stdin, limit=self.timeout + 5)

    async def _ip(self, what: str, *args: str) -> str:
        return await run_command(["ip", *args], what, limit=self.timeout)

    # -- NetworkDriver ----------------------------------------------------------------------

    async def setup(self) -> None:
        """Create the integration bridge (secure fail mode) and its base NORMAL flow."""
        await self._vsctl(
            f"create bridge {self.bridge}",
            "--may-exist", "add-br", self.bridge,
            "--", "set", "Bridge", self.bridge,
            "fail_mode=secure",
            f"datapath_type={self.datapath_type}",
            f"protocols={BRIDGE_PROTOCOLS}",
            _map_arg("external_ids", "edgecloud-role", "integration"),
        )  # fmt: skip
        await self.apply_flows_bundle(list(BASE_FLOWS), [f"cookie={BASE_FLOW_COOKIE:#x}/-1"])
        if self.uplink:
            await self._ensure_uplink(self.uplink)

    async def _ensure_uplink(self, uplink: str) -> None:
        """The uplink as a trunk of every VLAN (no tag, no trunks list), added if missing.

        ``protected``: OVS's NORMAL action never forwards between two protected ports; the
        DHCP ports are protected too, so a node's DHCP server and the other nodes never hear
        each other (distributed DHCP, see ``ensure_dhcp``).
        """
        await self._vsctl(
            f"make {uplink} a trunk port of {self.bridge}",
            "--may-exist", "add-port", self.bridge, uplink,
            "--", "set", "Port", uplink, "tag=[]", "trunks=[]", "vlan_mode=[]", "protected=true",
            _map_arg("external_ids", "edgecloud-role", "uplink"),
        )  # fmt: skip

    async def ensure_network(self, spec: NetworkSpec) -> None:
        """Record the network's local VLAN; re-tag its ports if the VLAN changed."""
        vlan = self._local_vlan(spec)
        for other in (await self.networks()).values():
            if other.name != spec.name and other.segmentation_id == vlan:
                raise DriverError(
                    f"network {spec.name!r} cannot use VLAN {vlan} on {self.bridge}: "
                    f"network {other.name!r} already does"
                )
        record = json.dumps({"id": spec.network_id, "kind": spec.kind, "vlan": vlan})
        args = ["set", "Bridge", self.bridge]
        args.append(_map_arg("external_ids", _network_key(spec.name), record))
        for port in await self._ports():
            if port.external_ids.get(NETWORK_NAME) == spec.name and port.tag != vlan:
                args += ["--", "set", "Port", port.name, f"tag={vlan}"]
        await self._vsctl(f"record network {spec.name} on {self.bridge}", *args)

    async def delete_network(self, name: str) -> None:
        """Forget the network and stop its DHCP; its VLAN needs nothing removed."""
        known = (await self.networks()).get(name)
        if known is not None:
            await self._remove_dhcp(known.network_id)
        key = json.dumps(_network_key(name))
        await self._vsctl(
            f"forget network {name} on {self.bridge}",
            "--if-exists", "remove", "Bridge", self.bridge, "external_ids", key,
        )  # fmt: skip

    async def bind(
        self, instance_id: str, vnic_index: int, mac: str, network: NetworkSpec
    ) -> VifBinding:
        """Pre-create the vNIC's access port, tagged and labelled, and say how to plug it."""
        vlan = await self._ensured_vlan(network)
        interface_id = f"{instance_id}-{vnic_index}"
        binding = VifBinding(
            kind="ovs",
            bridge=self.bridge,
            port_name=port_name_for(instance_id, vnic_index, self.bridge),
            vlan=vlan,
            interface_id=interface_id,
            external_ids={
                IFACE_ID: interface_id,
                ATTACHED_MAC: mac.lower(),
                VM_UUID: instance_id,
                VNIC_INDEX: str(vnic_index),
                NETWORK_NAME: network.name,
            },
        )
        await self.label_port(binding)
        return binding

    async def release_instance(self, instance_id: str) -> None:
        """Delete every port of the instance: labelled with its vm-uuid, or named after it."""
        stem = _instance_stem(instance_id, self.bridge)
        doomed = [
            port.name
            for port in await self._ports()
            if port.external_ids.get(VM_UUID) == instance_id
            or (port.name.startswith(stem) and port.name[len(stem) :].isdigit())
        ]
        await self._delete_ports(doomed, f"release the ports of instance {instance_id}")
        await self._delete_devices(doomed, f"release the taps of instance {instance_id}")

    async def release_vnic(self, instance_id: str, vnic_index: int) -> None:
        """Delete the port of one vNIC of the instance."""
        name = port_name_for(instance_id, vnic_index, self.bridge)
        await self._delete_ports([name], f"release port {name}")
        await self._delete_devices([name], f"release tap {name}")

    async def port_plugged(self, binding: VifBinding) -> None:
        """A domain started or arrived: make sure its port is whole (a domain defined by an
        older release has libvirt re-create the port at start, without our tag and labels)
        and its tap keeps a normal queue again (``hold_port``)."""
        await self.label_port(binding)
        await self._set_queue(binding.port_name, TAP_QUEUE)

    async def hold_port(self, binding: VifBinding) -> None:
        """An incoming migration's tap keeps HELD_TAP_QUEUE packets: the chain feeds both
        copies while the memory is copied, and a default queue (1,000) would hold a second of
        stale traffic for the guest to forward on arrival, fresh packets dropped behind it."""
        await self._set_queue(binding.port_name, HELD_TAP_QUEUE)

    async def _set_queue(self, port_name: str, length: int) -> None:
        if Path("/sys/class/net", port_name, "tun_flags").exists():  # our tap, not a veth
            await self._ip(
                f"set the queue of {port_name}", "link", "set", "dev", port_name,
                "txqueuelen", str(length),
            )  # fmt: skip

    async def list_ports(self) -> list[PortInfo]:
        """The vNIC ports on the bridge, rebuilt from their external_ids."""
        infos = []
        for port in await self._ports():
            ids = port.external_ids
            if VM_UUID in ids and ids.get(VNIC_INDEX, "").isdigit():
                infos.append(
                    PortInfo(
                        port_name=port.name,
                        instance_id=ids[VM_UUID],
                        vnic_index=int(ids[VNIC_INDEX]),
                        mac=ids.get(ATTACHED_MAC, ""),
                        network=ids.get(NETWORK_NAME, ""),
                    )
                )
        return sorted(infos, key=lambda p: (p.instance_id, p.vnic_index))

    async def ensure_dhcp(self, network: NetworkSpec, subnets: tuple[DhcpSubnet, ...]) -> None:
        """Namespace, internal port with the server addresses, and dnsmasq for ``subnets``.

        Distributed, as OVN does it: every node of the site runs the network's DHCP server
        with the same addresses and the same MAC (``dhcp_mac``), answering only the vNICs of
        its own snapshot, so frames to or from that MAC must never cross the uplink: the port
        is ``protected`` like the uplink (NORMAL never forwards between the two), and the
        guard flows (``_dhcp_guard_flows``) drop that MAC anywhere but from this port, and
        frames to it arriving on the uplink.
        """
        if not subnets:  # cheap when there is nothing to remove (the agent asks every recheck)
            folder = self._dhcp_folder(network.network_id)
            namespace = dhcp_namespace(network.network_id, self.bridge)
            if folder.exists() or namespace in await self._namespaces():
                await self._remove_dhcp(network.network_id)
            return
        vlan = await self._ensured_vlan(network)
        namespace = dhcp_namespace(network.network_id, self.bridge)
        port = dhcp_port_name(network.network_id, self.bridge)
        what = f"serve DHCP on network {network.name}"
        if namespace not in await self._namespaces():
            await self._ip(what, "netns", "add", namespace)
        await self._vsctl(
            what,
            "--may-exist", "add-port", self.bridge, port,
            "--", "set", "Port", port, f"tag={vlan}",
            "--", "set", "Port", port, "protected=true",
            "--", "set", "Interface", port, "type=internal",
            f"mac={json.dumps(dhcp_mac(network.network_id))}",
            _map_arg("external_ids", DHCP_PORT, network.name),
        )  # fmt: skip
        if not await self._link_in(namespace, port):
            await self._wait_link(port, what)
            await self._ip(what, "link", "set", port, "netns", namespace)
        mac = dhcp_mac(network.network_id)
        await self.apply_flows_bundle(self._dhcp_guard_flows(port, mac), _dhcp_guard_matches(mac))
        await self._set_addresses(namespace, port, subnets, what)
        folder = self._dhcp_folder(network.network_id)
        await dnsmasq.ensure(namespace, folder, dnsmasq.render(port, folder, subnets))
        await asyncio.to_thread(
            (folder / "served.json").write_text,
            json.dumps(
                {"network": network.name, "subnets": [dataclasses.asdict(n) for n in subnets]}
            ),
        )

    async def dhcp_served(self) -> dict[str, tuple[DhcpSubnet, ...]]:
        """The networks whose dnsmasq runs, with what it was last told to serve."""
        served: dict[str, tuple[DhcpSubnet, ...]] = {}
        root = self.state_dir / "dhcp"
        for folder in sorted(root.iterdir()) if root.is_dir() else []:
            if dnsmasq.running_pid(folder) is None or not (folder / "served.json").exists():
                continue
            raw = json.loads((folder / "served.json").read_text())
            served[raw["network"]] = tuple(_dhcp_subnet(n) for n in raw["subnets"])
        return served

    def dnsmasq_pid(self, network_id: str) -> int | None:
        """The pid of the network's dnsmasq, if it runs (tests, footprint)."""
        return dnsmasq.running_pid(self._dhcp_folder(network_id))

    def _dhcp_folder(self, network_id: str) -> Path:
        return self.state_dir / "dhcp" / network_id

    def _dhcp_guard_flows(self, port: str, mac: str) -> list[str]:
        """Flows keeping the network's DHCP MAC on this node (see ``ensure_dhcp``)."""
        head = f"cookie={DHCP_GUARD_COOKIE:#x},table=0"
        flows = [
            f"{head},priority={DHCP_GUARD_PRIORITY + 1},in_port={port},dl_src={mac},actions=NORMAL",
            f"{head},priority={DHCP_GUARD_PRIORITY},dl_src={mac},actions=drop",
        ]
        if self.uplink:
            flows.append(
                f"{head},priority={DHCP_GUARD_PRIORITY},in_port={self.uplink},dl_dst={mac},actions=drop"
            )
        return flows

    async def _remove_dhcp(self, network_id: str) -> None:
        await dnsmasq.stop(self._dhcp_folder(network_id))
        port = dhcp_port_name(network_id, self.bridge)
        mac = dhcp_mac(network_id)
        await self.apply_flows_bundle([], _dhcp_guard_matches(mac))
        await self._delete_ports([port], f"remove DHCP port {port}")
        namespace = dhcp_namespace(network_id, self.bridge)
        if namespace in await self._namespaces():
            await self._ip(f"remove namespace {namespace}", "netns", "del", namespace)

    async def _namespaces(self) -> set[str]:
        output = await self._ip("list network namespaces", "-json", "netns", "list")
        return {entry["name"] for entry in json.loads(output or "[]")}

    async def _link_in(self, namespace: str, dev: str) -> bool:
        output = await self._ip(f"list links of {namespace}", "-n", namespace, "-json", "link")
        return any(link.get("ifname") == dev for link in json.loads(output or "[]"))

    async def _wait_link(self, dev: str, what: str) -> None:
        """ovs-vswitchd creates an internal port's device shortly after the OVSDB commit."""
        deadline = asyncio.get_running_loop().time() + self.timeout
        while True:
            links = json.loads(await self._ip(what, "-json", "link", "show") or "[]")
            if any(link.get("ifname") == dev for link in links):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise DriverError(f"could not {what}: the vSwitch never created device {dev}")
            await asyncio.sleep(0.05)

    async def _set_addresses(
        self, namespace: str, dev: str, subnets: tuple[DhcpSubnet, ...], what: str
    ) -> None:
        wanted = {f"{n.server_address}/{ipaddress.ip_network(n.cidr).prefixlen}" for n in subnets}
        output = await self._ip(what, "-n", namespace, "-json", "addr", "show", "dev", dev)
        have = {
            f"{a['local']}/{a['prefixlen']}"
            for entry in json.loads(output or "[]")
            for a in entry.get("addr_info", [])
            if a.get("scope") == "global"
        }
        for cidr in sorted(have - wanted):
            await self._ip(what, "-n", namespace, "addr", "del", cidr, "dev", dev)
        for cidr in sorted(wanted - have):
            await self._ip(what, "-n", namespace, "addr", "add", cidr, "dev", dev, "nodad")
        await self._ip(what, "-n", namespace, "link", "set", dev, "up")

    # -- OVS specifics ----------------------------------------------------------------------

    async def label_port(self, binding: VifBinding) -> None:
        """Make the port exist on the bridge with its VLAN tag and every external_id (idempotent).

        Call after libvirt (re)created the port at domain start: libvirt writes its own iface-id
        and no edgecloud labels.
        """
        name = binding.port_name
        await self._ensure_tap(name)
        args = ["--may-exist", "add-port", self.bridge, name]
        args += ["--", "set", "Port", name, f"tag={binding.vlan}" if binding.vlan else "tag=[]"]
        args += ["--", "set", "Interface", name, f"ofport_request={ofport_for(name)}"]
        args += [_map_arg("external_ids", k, v) for k, v in sorted(binding.external_ids.items())]
        await self._vsctl(f"label port {name} on {self.bridge}", *args)

    async def _ensure_tap(self, name: str) -> None:
        """The vNIC's persistent tap device, up (kept if any device of that name exists)."""
        if name not in await self._host_links(f"create tap {name}"):
            await self._ip(f"create tap {name}", "tuntap", "add", "dev", name, "mode", "tap")
        await self._ip(f"bring up tap {name}", "link", "set", name, "up")

    async def _host_links(self, what: str) -> set[str]:
        """The names of the host's network devices (this network namespace)."""
        return {
            link.get("ifname", "")
            for link in json.loads(await self._ip(what, "-json", "link", "show") or "[]")
        }

    async def networks(self) -> dict[str, NetworkSpec]:
        """The networks recorded on this bridge, by name."""
        output = await self._vsctl(
            f"read the networks of {self.bridge}",
            "--format=json", "--", "--if-exists", "--columns=external_ids",
            "list", "Bridge", self.bridge,
        )  # fmt: skip
        specs = {}
        for row in _tables(output)[0]:
            for key, value in row["external_ids"].items():
                if key.startswith(NETWORK_KEY_PREFIX):
                    name, record = key[len(NETWORK_KEY_PREFIX) :], json.loads(value)
                    specs[name] = NetworkSpec(name, record["id"], record["kind"], record["vlan"])
        return specs

    async def apply_flows_bundle(self, flows: Sequence[str], delete: Sequence[str]) -> None:
        """Delete flows matching each of ``delete``, then add ``flows``: one atomic commit.

        One OpenFlow 1.4 bundle: if the switch rejects any flow, nothing changes. ``delete``
        entries are non-strict matches (e.g. ``cookie=0x10/-1``); ``flows`` are ovs-ofctl flows.
        """
        lines = [f"delete {match}" for match in delete] + [f"add {flow}" for flow in flows]
        if any("\n" in line or "\r" in line for line in lines):
            raise DriverError("a flow or match contains a line break")
        if lines:
            await self._ofctl_bundle(
                f"commit a bundle of {len(lines)} flow changes on {self.bridge}", lines
            )

    async def _ofctl_bundle(self, what: str, lines: Sequence[str]) -> None:
        await self._ofctl(
            what, "--bundle", "add-flows", self.bridge, "-", stdin="\n".join(lines) + "\n"
        )

    async def _bundle(self, what: str, lines: Sequence[str]) -> None:
        """Commit chain steering ``lines`` (add-flows --bundle syntax) as one atomic OpenFlow
        bundle: over the bridge's persistent OpenFlow connection (openflow.py, 2-4 ms), or
        with one ovs-ofctl process (30-110 ms on a loaded node) when that connection cannot be
        had or a line is outside the syntax openflow.py encodes. Either way all or nothing.
        Only the steering path opens the connection (the agent closes it with ``close``);
        setup-time bundles (``apply_flows_bundle``: base and DHCP guard flows) stay on
        ovs-ofctl, so a driver that never steers holds no connection."""
        try:
            await self._openflow.commit(lines)
            self._openflow_down = None
            return
        except openflow.FlowSyntaxError as exc:
            log.debug("%s with ovs-ofctl: %s", what, exc)
        except openflow.OpenFlowUnavailable as exc:
            if self._openflow_down is None:
                log.info("%s with ovs-ofctl: %s", what, exc)
            self._openflow_down = str(exc)
        except DriverError as exc:
            raise DriverError(f"could not {what}: {exc}") from exc
        await self._ofctl_bundle(what, lines)

    def vnic_port(self, instance_id: str, vnic_index: int) -> str:
        return port_name_for(instance_id, vnic_index, self.bridge)

    async def apply_steering(self, flows: Mapping[str, Any], fresh: bool = True) -> int:
        """``fresh``: read the switch first, unless ``_switch_kept`` says it cannot have lost
        or changed what was last committed (so a resync costs no process)."""
        wanted = planning.from_wire(flows)
        if self._steered is not None and (not fresh or self._switch_kept()):
            try:  # fast path (a path switch): one bundle against what we last committed
                return await self._commit_steering(self._steered, self._resolve(wanted, None))
            except DriverError as exc:
                log.info("chain flows: fast path refused (%s); reading the switch", exc)
        existing, pending = await self._port_numbers()
        resolved = self._resolve(wanted, existing | pending.keys(), pending)
        changed = await self._commit_steering(await self.steering(), resolved)
        self._read = (self._openflow.current(), time.monotonic())
        return changed

    def _switch_kept(self) -> bool:
        """Whether the switch still holds the chain flows last committed: they were read back
        less than STEERING_REREAD s ago, and the OpenFlow connection open then is still the one
        open now (a vswitchd restart, losing every flow, ends it; nothing else writes these
        cookies). Reading them costs three processes (30-110 ms each on a loaded node), and a
        switch waits for a read under way."""
        connection, at = self._read
        return (
            connection is not None
            and connection == self._openflow.current()
            and time.monotonic() - at < STEERING_REREAD
        )

    def _resolve(
        self,
        flows: planning.HostFlows,
        existing: set[str] | None,
        pending: Mapping[str, int] | None = None,
    ) -> dict[str, tuple[int, str]]:
        """{match: (cookie, actions)} in ovs-ofctl syntax; with ``existing``, outputs to ports
        that do not exist are left out (and flows from one, or left with none). ``pending``:
        ports in OVSDB whose device is not there yet (a VNF migrating in: libvirt creates its
        taps only when the guest arrives), named by their requested OpenFlow port number, so
        their flows are in place before the first frame."""
        present = None if existing is None else existing | ({self.uplink} if self.uplink else set())
        resolved: dict[str, tuple[int, str]] = {}
        for key, outputs in flows.items():
            source = self._steering_in(key)
            outs = [o for o in map(self._steering_out, outputs) if o is not None]
            if present is not None:
                outs = [(port, action) for port, action in outs if port in present]
            if source is None or not outs or (present is not None and source[0] not in present):
                continue
            match, actions = source[1], ",".join(action for _, action in outs)
            for name, number in (pending or {}).items():
                match = _renamed(match, name, number)
                actions = _renamed(actions, name, number)
            resolved[match] = (_steering_cookie(match, actions), actions)
        return resolved

    def _steering_in(self, key: str) -> tuple[str, str] | None:
        """(port, match) of a steering match key; None: a tagged hop on a node without uplink."""
        tag = planning.tag_of(key)
        if tag is None:
            port = self._steering_port(key)
            return port, _steering_match(port, None)
        return None if self.uplink is None else (self.uplink, _steering_match(self.uplink, tag))

    def _steering_out(self, out: str) -> tuple[str, str] | None:
        """(port, actions) of one output: pop-free local output, or push tag + uplink."""
        tag = planning.tag_of(out)
        if tag is None:
            port = self._steering_port(out)
            return port, f"output:{port}"
        if self.uplink is None:
            return None
        return self.uplink, f"push_vlan:0x8100,mod_vlan_vid:{tag},output:{self.uplink}"

    async def _commit_steering(
        self, current: dict[str, int], desired: dict[str, tuple[int, str]]
    ) -> int:
        change = planning.changes(current, {m: cookie for m, (cookie, _) in desired.items()})
        lines = [f"delete_strict priority={STEERING_PRIORITY},{match}" for match in change.remove]
        for match in sorted(change.put):
            cookie, actions = desired[match]
            if "dl_vlan=" in match:  # arrived tagged from another node: untag first
                actions = f"strip_vlan,{actions}"
            lines.append(
                f"add cookie={cookie:#x},priority={STEERING_PRIORITY},{match},actions={actions}"
            )
        await self._bundle(
            f"commit a bundle of {len(lines)} chain flow changes on {self.bridge}", lines
        )
        self._steered = planning.apply(current, change)
        return len(lines)

    async def steering(self) -> dict[str, int]:
        """The chain steering flows on the bridge: {match: cookie} (match as ``in_port=<port
        name>[,dl_vlan=<tag>]``; the cookie says which actions, see ``_steering_cookie``)."""
        output = await self._ofctl(
            f"dump the chain flows of {self.bridge}",
            "--names", "--no-stats", "dump-flows", self.bridge,
            f"cookie={STEERING_COOKIE_BASE:#x}/{STEERING_COOKIE_MASK:#x}",
        )  # fmt: skip
        flows: dict[str, int] = {}
        for line in output.splitlines():
            cookie, in_port = _COOKIE_RE.search(line), _IN_PORT_RE.search(line)
            if cookie is None or in_port is None:
                continue
            vlan = _DL_VLAN_RE.search(line)
            match = _steering_match(in_port[1], int(vlan[1]) if vlan else None)
            flows[match] = int(cookie[1], 16)
        return flows

    def _steering_port(self, key: str) -> str:
        port = planning.Port.parse(key)
        if port.name is not None:
            return port.name
        assert port.instance_id is not None and port.vnic_index is not None
        return port_name_for(port.instance_id, port.vnic_index, self.bridge)

    async def _port_numbers(self) -> tuple[set[str], dict[str, int]]:
        """The bridge's ports with a device (an OpenFlow port number), and those without one
        yet that have a requested number: ({name}, {name: requested number})."""
        names = set(await self._port_names())
        output = await self._vsctl(
            f"read the OpenFlow port numbers of {self.bridge}",
            "--format=json", "--columns=name,ofport,ofport_request", "list", "Interface",
        )  # fmt: skip
        existing: set[str] = set()
        pending: dict[str, int] = {}
        for row in _tables(output)[0]:
            name, ofport, wanted = row["name"], row["ofport"], row["ofport_request"]
            if name not in names:
                continue
            if isinstance(ofport, int) and ofport > 0:
                existing.add(name)
            elif isinstance(wanted, int) and wanted > 0:
                pending[name] = wanted
        return existing, pending

    async def _port_names(self) -> list[str]:
        output = await self._vsctl(f"list the ports of {self.bridge}", "list-ports", self.bridge)
        return output.split()

    async def dump_flows(self) -> list[str]:
        """The bridge's flows, without counters, in ovs-ofctl syntax."""
        output = await self._ofctl(
            f"dump the flows of {self.bridge}", "--no-stats", "dump-flows", self.bridge
        )
        return [line.strip() for line in output.splitlines() if line.strip()]

    async def plug_namespace_port(
        self,
        namespace: str,
        port_name: str,
        network: NetworkSpec,
        mac: str | None = None,
        ip_cidr: str | None = None,
    ) -> None:
        """Attach a veth end inside an existing namespace to the network (re-plugs if present).

        The namespace side is also called ``port_name``; its TX checksum offload is turned off
        so TCP and UDP cross the userspace datapath.
        """
        if not _IFNAME_RE.match(port_name):
            raise DriverError(f"port name {port_name!r} is not a valid interface name")
        vlan = await self._ensured_vlan(network)
        await self.unplug_port(port_name)
        what = f"plug port {port_name} into namespace {namespace}"
        await self._ip(
            what, "link", "add", port_name, "type", "veth", "peer", "name", port_name,
            "netns", namespace,
        )  # fmt: skip
        try:
            await self._configure_namespace_end(namespace, port_name, mac, ip_cidr)
            await self._ip(what, "link", "set", port_name, "up")
            await self._vsctl(
                what,
                "--may-exist", "add-port", self.bridge, port_name, f"tag={vlan}",
                "--", "set", "Interface", port_name,
                _map_arg("external_ids", NAMESPACE, namespace),
                _map_arg("external_ids", NETWORK_NAME, network.name),
            )  # fmt: skip
        except DriverError:
            with contextlib.suppress(DriverError):
                await self.unplug_port(port_name)
            raise

    async def close(self) -> None:
        """Close the OpenFlow connection (ports and flows stay)."""
        self._openflow.close()

    async def unplug_port(self, port_name: str) -> None:
        """Remove a port from the bridge and delete its device (and veth peer); no-op if absent."""
        await self._delete_ports([port_name], f"unplug port {port_name}")
        await self._delete_devices([port_name], f"unplug port {port_name}")

    # -- helpers ----------------------------------------------------------------------------

    def _local_vlan(self, spec: NetworkSpec) -> int:
        if spec.kind not in self.capabilities.kinds:
            raise DriverError(
                f"network {spec.name!r} is {spec.kind}: the ovs driver supports "
                f"{', '.join(self.capabilities.kinds)}"
            )
        vlan = spec.segmentation_id
        if vlan is None or not 1 <= vlan <= 4094:
            raise DriverError(f"network {spec.name!r} needs a VLAN id 1-4094, got {vlan}")
        return vlan

    async def _ensured_vlan(self, spec: NetworkSpec) -> int:
        """The network's VLAN, checking that ensure_network recorded it with that VLAN."""
        vlan = self._local_vlan(spec)
        known = (await self.networks()).get(spec.name)
        if known is None:
            raise DriverError(f"network {spec.name!r} is not set up on bridge {self.bridge}")
        if known.segmentation_id != vlan:
            raise DriverError(
                f"network {spec.name!r} has VLAN {known.segmentation_id} on bridge "
                f"{self.bridge}, not {vlan}"
            )
        return vlan

    async def _ports(self) -> list[_OvsPort]:
        """The bridge's ports with their tags and interface external_ids, in one transaction."""
        output = await self._vsctl(
            f"list the ports of {self.bridge}",
            "--format=json",
            "--", "--if-exists", "--columns=ports", "list", "Bridge", self.bridge,
            "--", "--columns=_uuid,name,tag,interfaces", "list", "Port",
            "--", "--columns=_uuid,name,external_ids", "list", "Interface",
        )  # fmt: skip
        bridges, ports, interfaces = _tables(output)
        if not bridges:
            return []
        on_bridge = set(_as_list(bridges[0]["ports"]))
        ids_of = {row["_uuid"]: row["external_ids"] for row in interfaces}
        return [
            _OvsPort(
                name=row["name"],
                tag=row["tag"] if isinstance(row["tag"], int) else None,
                external_ids=next(
                    (ids_of[i] for i in _as_list(row["interfaces"]) if i in ids_of), {}
                ),
            )
            for row in ports
            if row["_uuid"] in on_bridge and row["name"] != self.bridge
        ]

    async def _delete_ports(self, names: Iterable[str], what: str) -> None:
        args: list[str] = []
        for name in names:
            args += ["--", "--if-exists", "del-port", self.bridge, name]
        if args:
            await self._vsctl(what, *args)

    async def _delete_devices(self, names: Iterable[str], what: str) -> None:
        """Delete the host devices (taps, veths) among ``names`` that exist."""
        wanted = list(names)
        if not wanted:
            return
        present = await self._host_links(what)
        for name in wanted:
            if name in present:
                await self._ip(f"delete device {name}", "link", "del", name)

    async def _configure_namespace_end(
        self, namespace: str, dev: str, mac: str | None, ip_cidr: str | None
    ) -> None:
        what = f"configure {dev} in namespace {namespace}"
        if mac:
            await self._ip(what, "-n", namespace, "link", "set", dev, "address", mac)
        if ip_cidr:
            await self._ip(what, "-n", namespace, "addr", "replace", ip_cidr, "dev", dev)
        await self._ip(what, "-n", namespace, "link", "set", "lo", "up")
        await self._ip(what, "-n", namespace, "link", "set", dev, "up")
        await run_command(
            ["ip", "netns", "exec", namespace, sys.executable, "-c", _TX_CSUM_OFF, dev],
            f"turn off TX checksum offload of {dev} in namespace {namespace}",
            limit=self.timeout,
        )
