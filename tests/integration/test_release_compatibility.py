"""The agent contract across releases (issue 12): an agent of an earlier release against a
controller of this checkout, and an agent of this checkout against a controller of the earlier
release, each side in its own processes with its own code.

The earlier releases are fixed commits of this repository (tests/releases.py): release N-1
(``PREVIOUS_RELEASE``, 0.2.0, agent protocol 2: the pair a site upgrade goes through) and
release 0.1.0 (``FIRST_RELEASE``, protocol 1: the oldest protocol this checkout still speaks),
each built into its own virtual environment on first use and cached. Both processes are the ordinary commands (``edgecloud controller``,
``edgecloud agent --driver fake``), talking mutual TLS on loopback with the certificates the
controller's CA issued at enrollment; the test drives the controller's REST API and reads the
agent's log and its fake hypervisor's state file as an operator would.

One run goes through, in order: enrollment by join token; hello and welcome at the negotiated
protocol (the older side's newest: the newer side falls back), stored per host by a controller
since 0.2.0, logged by an agent since 0.2.0; the host online; a VNF with three vNICs and a
config drive (user data, metadata) deployed, its image fetched by the node over the agent's mTLS, its vNICs in declared order and
verified from the guest; its console; stop, start and reboot; a vNIC hot-unplugged and plugged
back; heartbeats keeping the host online; nack -> the host's apply-failed alarm (a VNF whose
image the controller cannot serve) -> recovered; CA rotation (begin: the node renews over its
session onto the new CA; finish); the agent killed (host offline, alarm), restarted on its
renewed certificate (host online, alarms cleared, both VNFs adopted without a restart); a
service chain created and a service inserted make-before-break; delete, the node's image cache
emptied.

Found by it (issue 12): an agent acked only versions the controller pushed, so after a nack the
host's apply-failed alarm stayed raised although the agent's retry had applied that version;
0.2.0 agents ack it (agent/applying.py ``retry``), 0.1.0 agents clear it at the next push.

Not covered: a failed start (VNF fault alarm 700.001) and guest crash, which need the fake
driver's fault hooks that a separate process does not expose; the chain's flows on the node (the
fake vSwitch keeps them in memory only: the chain is checked through the API); live migration,
host maintenance and recovery, controllers following (``controllers`` messages need a second
controller), PCI devices, fencing.

Timing on the 2-core development host (shared with other work): 23-30 s per case once the
earlier release is built; a build takes 44-62 s, in the first case's setup (tests/releases.py).
"""

from __future__ import annotations

import base64
import functools
import json
from pathlib import Path
from typing import Any

import pytest

from edgecloud.images.building import build_blank_disk
from edgecloud.pki.identity import verify_signed_by
from tests import releases
from tests.integration.release_processes import CURRENT, Api, Processes, Release

pytestmark = [pytest.mark.compatibility, pytest.mark.timeout(600)]

HEARTBEAT = 0.5  # --heartbeat-interval; 3 missed beats and the host is offline
NICS = [{"network": "lan"}, {"network": "wan", "model": "e1000"}, {"network": "mgmt", "tag": "oam"}]
USER_DATA = b"#cloud-config\nhostname: across-releases\n"
CHAIN_SERVICE = """
heat_template_version: 2018-08-31
resources:
  left: {type: OS::Neutron::Net}
  right: {type: OS::Neutron::Net}
  vnf:
    type: OS::Nova::Server
    properties:
      image: img
      flavor: small
      networks:
        - {network: {get_resource: left}, tag: customer}
        - {network: {get_resource: right}, tag: network}
  service:
    type: Edgecloud::Chain::Service
    properties: {server: {get_resource: vnf}, customer_nic: 0, network_nic: 1}
"""


@functools.cache
def _earlier(name: str) -> Release:
    """Release 0.2.0 (N-1: protocol 2) or 0.1.0 (protocol 1), built on first use."""
    earlier = {e.name: e for e in (releases.PREVIOUS_RELEASE, releases.FIRST_RELEASE)}[name]
    venv = releases.built(earlier.commit)
    return Release(
        earlier.name, releases.python(venv), 1 if earlier is releases.FIRST_RELEASE else 2
    )


# N-1 in `make test`; 0.1.0 (N-2, the oldest protocol) with `make scenarios` (the 45-minute budget)
EARLIER = [
    releases.PREVIOUS_RELEASE.name,
    pytest.param(releases.FIRST_RELEASE.name, marks=pytest.mark.scenario),
]


@pytest.mark.parametrize("earlier", EARLIER)
@pytest.mark.parametrize(
    ("agent_side", "controller_side"),
    [("earlier", "current"), ("current", "earlier")],
    ids=["agent-earlier-controller-current", "agent-current-controller-earlier"],
)
def test_the_agent_contract_across_releases(
    agent_side: str,
    controller_side: str,
    earlier: str,
    processes: Processes,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    sides = {"earlier": _earlier(earlier), "current": CURRENT}
    agent, controller = sides[agent_side], sides[controller_side]
    root = processes.root
    image = build_blank_disk(tmp_path_factory.getbasetemp() / "images")  # shared, cached

    # a controller, and a host enrolled by join token
    processes.start(
        "controller", controller, "controller", "--state-dir", str(root / "controller"),
        "--api-port", "0", "--gateway-port", "0", "--heartbeat-interval", str(HEARTBEAT),
    )  # fmt: skip
    processes.poll(lambda: (root / "controller" / "controller.json").exists(), "controller ready")
    api = Api(root / "controller")
    try:
        _agent_contract(processes, api, agent, controller, image)
    finally:
        api.client.close()


def _agent_contract(
    processes: Processes, api: Api, agent: Release, controller: Release, image: Path
) -> None:
    root = processes.root
    agent_state = root / "agent"
    agent_args = (
        "agent", "--state-dir", str(agent_state), "--driver", "fake", "--resync-interval", "0.2",
    )  # fmt: skip
    token = api.call("POST", "/v1/hosts", 201, json={"name": "node1"})["join_token"]
    processes.start("agent", agent, *agent_args, "--join", token)

    # hello and welcome: both sides speak the older side's newest protocol
    spoken = min(agent.protocol, controller.protocol)
    host = processes.poll(lambda: _host_in(api, "node1", "online"), "node1 online")
    assert host["hypervisor"] and host["vcpus"] > 0  # the facts the hello carried
    [listed] = api.get("/v1/hosts")  # what `edgecloud host list` shows
    if controller.says_release:  # a controller since 0.2.0 stores what the hello said
        assert (listed["protocol"], listed["release"]) == (spoken, agent.name)
    else:  # a 0.1.0 controller stores neither
        assert "protocol" not in listed and "release" not in listed
    connected = processes.poll(
        lambda: _line(processes.log("agent"), "connected to the controller"), "agent connected"
    )
    if agent.says_release:  # (a 0.1.0 welcome says no protocol: version 1)
        assert f"(release {controller.name}, protocol {spoken})" in connected, connected

    # a VNF with three vNICs in declared order and a config drive; its image fetched by the node
    for network in ("lan", "wan", "mgmt"):
        api.call("POST", "/v1/networks", 201, json={"name": network})
    api.call("POST", "/v1/flavors", 201, json={"name": "small", "vcpus": 1, "memory_mib": 256})
    uploaded = api.call(
        "PUT", "/v1/images/img", 201, params={"disk_format": "qcow2"}, content=image.read_bytes()
    )
    created = api.call(
        "POST", "/v1/vnfs", 201,
        json={
            "name": "v1", "image": "img", "flavor": "small", "nics": NICS,
            "user_data": base64.b64encode(USER_DATA).decode(), "metadata": {"role": "vcpe"},
        },
    )  # fmt: skip
    assert [n["network"] for n in created["nics"]] == ["lan", "wan", "mgmt"]
    assert [n["pci_slot"] for n in created["nics"]] == [3, 5, 7]
    running = processes.poll(lambda: _vnf_in(api, "v1", "running"), "v1 running")
    assert running["host"] == "node1"
    assert [n["model"] for n in running["nics"]] == ["virtio", "e1000", "virtio"]
    verified = processes.poll(lambda: _verified(api, "v1", 3), "v1's vNIC binding verified")
    assert [n["guest_name"] for n in verified["nics"]] == ["eth0", "eth1", "eth2"]
    assert uploaded["sha256"] in [p.name for p in _blobs(agent_state)]
    [domain] = _domains(agent_state)
    assert domain["spec"]["metadata"]["meta"] == {"role": "vcpe"}, domain["spec"]["metadata"]
    assert base64.b64decode(domain["spec"]["user_data"]) == USER_DATA
    processes.poll(lambda: _in_sync(api, "node1"), "node1 acked its desired version")

    # the console, read over the agent channel
    console = api.get("/v1/vnfs/v1/console")
    assert "EDGECLOUD-READY" in console["output"] and console["host"] == "node1"

    # stop and start
    api.call("POST", "/v1/vnfs/v1/actions", 202, json={"action": "stop"})
    processes.poll(lambda: _vnf_in(api, "v1", "stopped"), "v1 stopped")
    api.call("POST", "/v1/vnfs/v1/actions", 202, json={"action": "start"})
    restarted = processes.poll(lambda: _vnf_in(api, "v1", "running"), "v1 running again")
    assert restarted["boot_id"] != running["boot_id"]
    api.call("POST", "/v1/vnfs/v1/actions", 202, json={"action": "reboot"})
    started = processes.poll(lambda: _booted_again(api, "v1", restarted["boot_id"]), "v1 rebooted")

    # hot-plug: a vNIC out and back in, the others where they were, no restart
    api.call("DELETE", "/v1/vnfs/v1/nics/1", 202)
    processes.poll(lambda: _verified(api, "v1", 2), "the guest reports two vNICs")
    api.call("POST", "/v1/vnfs/v1/nics", 202, json={"network": "wan", "position": 1})
    plugged = processes.poll(lambda: _verified(api, "v1", 3), "the guest reports three vNICs")
    assert [n["pci_slot"] for n in plugged["nics"]] == [3, 5, 7]
    assert plugged["boot_id"] == started["boot_id"], "hot-plug restarted the VNF"

    # heartbeats kept the host online through all that (it is lost after 3 silent intervals)
    assert api.host("node1")["availability"] == "online"

    # nack -> alarm: a VNF whose image the controller cannot serve (its blob moved away) fails
    # on the node, which nacks; the host's alarm names it; once the blob is back the agent's
    # retry applies it; a 0.2.0 agent then acks the version and the alarm clears
    other = build_blank_disk(image.parent, size_mib=32)
    sha256 = api.call(
        "PUT", "/v1/images/img2", 201, params={"disk_format": "qcow2"}, content=other.read_bytes()
    )["sha256"]
    blob, hidden = root / "controller" / "images" / sha256, root / "hidden-blob"
    blob.rename(hidden)
    api.call("POST", "/v1/vnfs", 201, json={"name": "v2", "image": "img2", "flavor": "small"})
    processes.poll(
        lambda: "200.011" in api.host_alarms("node1"), "node1's apply-failed alarm (a nack)"
    )
    assert api.host("node1")["last_error"], "the nack's error was not stored"
    hidden.rename(blob)
    processes.poll(lambda: _vnf_in(api, "v2", "running"), "v2 running once its image is back")
    if agent.says_release:  # an agent since 0.2.0 acks what its retry applied
        processes.poll(lambda: "200.011" not in api.host_alarms("node1"), "the alarm cleared")
        processes.poll(lambda: _in_sync(api, "node1"), "node1 acked again")
    # else: a 0.1.0 agent acks only a version the controller pushes, so the alarm stays until
    # the next push (here: at its reconnect below, which presents the older applied version)

    # CA rotation: begun on the controller (its own release's command), the connected node
    # renews over its session onto the new CA and trusts both; finished: only the new CA
    pki = root / "controller" / "pki"
    old_ca = (pki / "ca.crt").read_bytes()
    processes.run(controller, "ca", "rotate", "begin", "--state-dir", str(root / "controller"))
    new_ca = (pki / "ca.crt").read_bytes()
    assert new_ca != old_ca
    processes.poll(
        lambda: verify_signed_by((agent_state / "host.crt").read_bytes(), new_ca),
        "node1 renewed onto the new CA",
    )
    assert (agent_state / "ca.crt").read_bytes() == new_ca + old_ca  # trusts both meanwhile
    processes.run(controller, "ca", "rotate", "finish", "--state-dir", str(root / "controller"))
    processes.poll(
        lambda: verify_signed_by((pki / "server.crt").read_bytes(), new_ca),
        "the controller's certificate re-issued by the new CA",
    )
    processes.poll(api.trust_again, "the API verified with the new CA")

    # the agent killed: the host is lost; restarted (with its renewed certificate, the
    # controller's new one): back, its VNFs adopted as they ran
    processes.kill("agent")
    processes.poll(lambda: _host_in(api, "node1", "offline"), "node1 offline")
    assert "200.004" in api.host_alarms("node1")
    processes.start("agent", agent, *agent_args)
    processes.poll(lambda: _host_in(api, "node1", "online"), "node1 online again")
    processes.poll(lambda: not api.host_alarms("node1"), "node1's alarm cleared")
    processes.poll(lambda: _in_sync(api, "node1"), "node1 in sync again")
    adopted = processes.poll(lambda: _vnf_in(api, "v1", "running"), "v1 running after restart")
    assert adopted["boot_id"] == started["boot_id"], "the agent restart restarted the VNF"
    assert [d["state"] for d in _domains(agent_state)] == ["running", "running"]

    # a service chain: created, then a service inserted make-before-break (steering ahead of
    # the snapshots: ``steer``/``steer_chain``, which a version-1 session sends only to an
    # agent whose hello asked for them)
    body = {
        "name": "c1", "customer": "acme", "host": "node1", "ingress_port": "cust0",
        "egress_port": "net0", "services": [{"name": "router", "template": CHAIN_SERVICE}],
    }  # fmt: skip
    api.call("POST", "/v1/chains", 202, json=body)
    chain = processes.poll(lambda: _settled(api, "c1"), "chain c1 settled", timeout=60)
    assert chain["path"] == ["router"] and chain["status"] == "active"
    boots = {v["name"]: v["boot_id"] for v in api.get("/v1/vnfs")}
    api.call(
        "POST", "/v1/chains/c1/services", 202,
        json={"name": "wanopt", "template": CHAIN_SERVICE, "after": "router"},
    )  # fmt: skip
    chain = processes.poll(lambda: _settled(api, "c1"), "wanopt inserted", timeout=60)
    assert chain["path"] == ["router", "wanopt"] and chain["last_error"] is None
    assert chain["last_result"]["kind"] == "insert"
    after = {v["name"]: v["boot_id"] for v in api.get("/v1/vnfs")}
    assert all(after[name] == boot for name, boot in boots.items()), "the insert restarted VNFs"
    api.call("DELETE", "/v1/chains/c1", 202)
    processes.poll(lambda: not api.get("/v1/chains"), "chain c1 deleted", timeout=60)

    # delete
    for name in ("v1", "v2"):
        assert api.call("DELETE", f"/v1/vnfs/{name}", 202)["status"] == "deleting"
    processes.poll(lambda: api.vnf("v1") is None and api.vnf("v2") is None, "VNFs deleted")
    processes.poll(lambda: _domains(agent_state) == [], "the domains undefined")
    processes.poll(
        lambda: not any(p.name in (uploaded["sha256"], sha256) for p in _blobs(agent_state)),
        "the node's unused image blobs evicted",
    )
    processes.poll(lambda: _in_sync(api, "node1"), "node1 in sync after the delete")


def _booted_again(api: Api, name: str, boot_id: str) -> dict[str, Any] | None:
    vnf = _vnf_in(api, name, "running")
    return vnf if vnf and vnf["boot_id"] != boot_id else None


def _blobs(agent_state: Path) -> list[Path]:
    """The node's image cache (agent/image_cache.py): complete blobs, named by sha256."""
    return [p for p in (agent_state / "images").glob("*") if p.is_file()]


def _settled(api: Api, name: str) -> dict[str, Any] | None:
    chain = api.get(f"/v1/chains/{name}")
    return dict(chain) if chain["operation"] is None and chain["path_applied"] else None


def _host_in(api: Api, name: str, availability: str) -> dict[str, Any] | None:
    host = api.host(name)
    return host if host["availability"] == availability else None


def _in_sync(api: Api, name: str) -> bool:
    host = api.host(name)
    return bool(host["applied_version"] == host["desired_version"] and not host["last_error"])


def _vnf_in(api: Api, name: str, status: str) -> dict[str, Any] | None:
    vnf = api.vnf(name)
    return vnf if vnf and vnf["status"] == status else None


def _verified(api: Api, name: str, count: int) -> dict[str, Any] | None:
    vnf = api.vnf(name)
    return vnf if vnf and len(vnf["nics"]) == count and vnf["binding_verified"] else None


def _line(text: str, needle: str) -> str | None:
    return next((line for line in reversed(text.splitlines()) if needle in line), None)


def _domains(agent_state: Path) -> list[dict[str, Any]]:
    """The fake hypervisor's domains, from the file it rewrites at every change."""
    path = agent_state / "fake-domains.json"
    return list(json.loads(path.read_text())["domains"]) if path.exists() else []
