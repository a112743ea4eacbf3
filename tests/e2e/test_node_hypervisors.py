"""Two nodes' own libvirt daemons on one machine (allinone/hypervisors.py): each has its own
host UUID and socket, answers on its own, keeps its domains to itself, and stop() leaves no
daemon or guest behind, also when started again after its daemons were killed."""

from __future__ import annotations

import os
import signal
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgecloud.allinone.hypervisors import NodeHypervisor
from tests.e2e.libvirt_support import libvirt_skip_reason

libvirt = pytest.importorskip("libvirt")

GUEST = """<domain type='qemu'><name>ec-hvtest-{n}</name><memory unit='MiB'>64</memory>
<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os><features><acpi/></features>
</domain>"""  # <acpi/>: without it libvirt 9.0 passes -no-acpi, which QEMU >= 9.0 refuses


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[NodeHypervisor, NodeHypervisor]]:
    reason = libvirt_skip_reason()
    if reason:
        pytest.skip(reason)
    pair = tuple(NodeHypervisor(f"n{i}", tmp_path / f"n{i}", f"127.0.1.{i}") for i in (1, 2))
    try:
        yield pair  # type: ignore[misc]
    finally:
        for node in pair:
            node.purge()


def _host_uuid(conn: object) -> str:
    caps = ET.fromstring(conn.getCapabilities())  # type: ignore[attr-defined]
    found = caps.find("host/uuid")
    assert found is not None and found.text
    return found.text


def _daemon_pids(node: NodeHypervisor) -> list[int]:
    return [int((node.root / "run" / f).read_text()) for f in ("libvirtd.pid", "virtlogd.pid")]


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.split(") ", 1)[1].startswith("Z")  # exited, not reaped by PID 1


def test_each_node_has_its_own_daemon_uuid_and_domains(
    nodes: tuple[NodeHypervisor, NodeHypervisor],
) -> None:
    for node in nodes:
        node.start()
        node.start()  # idempotent
    conns = [libvirt.open(node.uri) for node in nodes]
    try:
        daemons = [pid for node in nodes for pid in _daemon_pids(node)]
        assert len(set(daemons)) == 4
        assert _host_uuid(conns[0]) != _host_uuid(conns[1])
        assert _host_uuid(conns[0]) == nodes[0].host_uuid
        conns[0].createXML(GUEST.format(n=1), 0)
        assert [d.name() for d in conns[0].listAllDomains()] == ["ec-hvtest-1"]
        assert conns[1].listAllDomains() == []
        qemu = int((nodes[0].root / "run" / "qemu" / "ec-hvtest-1.pid").read_text())
    finally:
        for conn in conns:
            conn.close()
    nodes[0].stop()
    assert _gone(qemu)  # the node's guest went with it
    assert not nodes[0].running() and nodes[1].running()
    nodes[1].stop()
    assert all(_gone(pid) for pid in daemons)
    assert not any(node.socket_dir.exists() for node in nodes)


def test_a_node_whose_daemon_died_starts_again(
    nodes: tuple[NodeHypervisor, NodeHypervisor],
) -> None:
    node = nodes[0]
    node.start()
    conn = libvirt.open(node.uri)
    conn.createXML(GUEST.format(n=1), 0)
    conn.close()
    qemu = int((node.root / "run" / "qemu" / "ec-hvtest-1.pid").read_text())
    libvirtd, virtlogd = _daemon_pids(node)
    os.kill(libvirtd, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while node.running():  # the signal takes a moment
        assert time.monotonic() < deadline, "libvirtd outlived SIGKILL"
        time.sleep(0.05)
    node.start()  # a new libvirtd, the same virtlogd, and the guest kept running
    assert _daemon_pids(node)[1] == virtlogd and _daemon_pids(node)[0] != libvirtd
    conn = libvirt.open(node.uri)
    try:
        assert _host_uuid(conn) == node.host_uuid
        assert not _gone(qemu)
        assert [d.name() for d in conn.listAllDomains()] == ["ec-hvtest-1"]
        assert conn.lookupByName("ec-hvtest-1").isActive()
    finally:
        conn.close()
