"""Shared helpers of the libvirt e2e tests (test_libvirt_boot.py, test_libvirt_conformance.py).

The skip check (root, libvirt-python, libvirtd reachable, ovsdb reachable), per-run names
(domains ``ec-e2e<hex>-...``, bridge ``ect<hex>``, taps ``ecv<hex><n>``) and finalizer
clean-up that never raises: every domain of the run is destroyed and undefined, the bridge
deleted. The test bridge uses the userspace datapath (HOST-NOTES: no openvswitch module).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecloud.drivers.compute.base import DOMAIN_PREFIX, VifBinding
from tests.e2e.ovs_support import delete_bridge, ovs_skip_reason


def libvirt_skip_reason(uri: str = "qemu:///system") -> str | None:
    """Why the libvirt e2e tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (defines QEMU domains and OVS ports)"
    try:
        import libvirt
    except ImportError:
        return "needs libvirt-python (scripts/bootstrap-host --venv .venv)"
    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    try:
        libvirt.open(uri).close()
    except libvirt.libvirtError as exc:
        return f"libvirtd is unreachable at {uri} ({exc}): run scripts/bootstrap-host"
    return ovs_skip_reason()


@dataclass
class RunNames:
    """Names of one test run, so parallel or leftover runs never collide."""

    token: str = field(default_factory=lambda: secrets.token_hex(3))
    _ports: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def domain_prefix(self) -> str:
        return f"{DOMAIN_PREFIX}e2e{self.token}-"

    @property
    def bridge(self) -> str:
        return f"ect{self.token}"

    def port_name(self) -> str:
        """A new tap name (at most 15 characters, as Linux wants)."""
        return f"ecv{self.token}{next(self._ports):04x}"


def plugged(binding: VifBinding) -> VifBinding:
    """``binding`` with its tap and tagged OVS port made, as the OVS network driver's ``bind``
    makes them (the domain only opens the tap); the run's bridge clean-up deletes both."""
    subprocess.run(["ip", "tuntap", "add", "dev", binding.port_name, "mode", "tap"],
                   check=True, capture_output=True, timeout=30)  # fmt: skip
    subprocess.run(["ip", "link", "set", binding.port_name, "up"],
                   check=True, capture_output=True, timeout=30)  # fmt: skip
    tag = f"tag={binding.vlan}" if binding.vlan is not None else "tag=[]"
    subprocess.run(
        ["ovs-vsctl", "--timeout=10", "--may-exist", "add-port", binding.bridge,
         binding.port_name, "--", "set", "Port", binding.port_name, tag],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return binding


def create_bridge(name: str) -> None:
    subprocess.run(
        ["ovs-vsctl", "--timeout=10", "add-br", name, "--", "set", "bridge", name,
         "datapath_type=netdev"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip


def sweep_domains(prefix: str, uri: str = "qemu:///system") -> list[str]:
    """Destroy and undefine every domain whose name starts with ``prefix``; never raises."""
    import libvirt

    swept: list[str] = []
    try:
        conn: Any = libvirt.open(uri)
    except libvirt.libvirtError:
        return swept
    try:
        for dom in conn.listAllDomains(0):
            if not dom.name().startswith(prefix):
                continue
            swept.append(dom.name())
            with contextlib.suppress(libvirt.libvirtError):
                if dom.isActive():
                    dom.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
    finally:
        conn.close()
    return swept


def clean_up_run(names: RunNames) -> None:
    """The run's finalizer: domains first (they hold ports on the bridge), then the bridge."""
    sweep_domains(names.domain_prefix)
    delete_bridge(names.bridge)


def ovs_port_tag(port: str) -> int | None:
    """The VLAN tag of an OVS port, or None."""
    out = subprocess.run(
        ["ovs-vsctl", "--timeout=10", "get", "port", port, "tag"],
        check=True, capture_output=True, text=True, timeout=30,
    ).stdout.strip()  # fmt: skip
    return None if out in ("[]", "") else int(out)


def ovs_ports(bridge: str) -> set[str]:
    out = subprocess.run(
        ["ovs-vsctl", "--timeout=10", "list-ports", bridge],
        check=True, capture_output=True, text=True, timeout=30,
    ).stdout  # fmt: skip
    return set(out.split())


def our_domains(uri: str = "qemu:///system") -> list[str]:
    """Names of every edgecloud domain (``DOMAIN_PREFIX``) libvirt knows, running or not."""
    import libvirt

    conn: Any = libvirt.open(uri)
    try:
        return [d.name() for d in conn.listAllDomains(0) if d.name().startswith(DOMAIN_PREFIX)]
    finally:
        conn.close()


def qemu_pid(domain: str) -> int | None:
    """The pid of a running domain's QEMU process (libvirt's pid file), or None."""
    try:
        return int(Path(f"/run/libvirt/qemu/{domain}.pid").read_text().strip())
    except (OSError, ValueError):
        return None
