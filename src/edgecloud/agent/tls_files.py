"""The node's certificate in the layouts its hypervisor expects (for live migration).

A node's certificate (agent/enrolling.py) names it by host name and internal address and
serves as client and server, so the very same key pair authenticates the node's hypervisor to
other nodes' hypervisors. libvirt reads a PKI directory (``?pkipath=`` on a client URI,
``key_file``/``cert_file``/``ca_file`` for the daemon) and QEMU a TLS credentials directory
(``migrate_tls_x509_cert_dir`` / ``default_tls_x509_cert_dir`` in qemu.conf); both hold copies:

    STATE/tls/libvirt/{cacert.pem, servercert.pem, serverkey.pem, clientcert.pem, clientkey.pem}
    STATE/tls/qemu/{ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem, client-key.pem}

Keys are 0600. ``ensure`` rewrites a file only when it differs from the identity (after a
re-enrollment), so it is cheap to call at every start. Neighbours: agent/identity.py (the
source files), drivers/compute/libvirt.py (uses ``libvirt_dir`` as its migration pkipath).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgecloud import files

if TYPE_CHECKING:  # its module loads cryptography, which the site's supervisor does without
    from edgecloud.agent.identity import AgentIdentity

LIBVIRT_FILES = {
    "cacert.pem": "ca",
    "servercert.pem": "cert",
    "serverkey.pem": "key",
    "clientcert.pem": "cert",
    "clientkey.pem": "key",
}
QEMU_FILES = {
    "ca-cert.pem": "ca",
    "server-cert.pem": "cert",
    "server-key.pem": "key",
    "client-cert.pem": "cert",
    "client-key.pem": "key",
}


def tls_dir(state_dir: Path) -> Path:
    """Where the node's hypervisor TLS files live."""
    return state_dir / "tls"


def libvirt_dir(state_dir: Path) -> Path:
    """libvirt's PKI directory (``pkipath``) of this node."""
    return tls_dir(state_dir) / "libvirt"


def ensure(identity: AgentIdentity, durable: bool = True) -> list[Path]:
    """Write the layouts from the identity's files when missing or stale; returns what changed.
    ``durable``: fsynced (False only for the scale simulator's enrollment, sim/identities.py)."""
    sources = {"ca": identity.ca, "cert": identity.cert, "key": identity.key}
    content = {kind: path.read_bytes() for kind, path in sources.items()}
    written = []
    root = tls_dir(identity.state_dir)
    for folder, layout in (("libvirt", LIBVIRT_FILES), ("qemu", QEMU_FILES)):
        directory = root / folder
        files.private_dir(directory)
        for name, kind in layout.items():
            if _write_if_changed(
                directory / name, content[kind], 0o600 if kind == "key" else 0o644, durable
            ):
                written.append(directory / name)
    return written


def _write_if_changed(path: Path, data: bytes, mode: int, durable: bool = True) -> bool:
    try:
        if path.read_bytes() == data and (path.stat().st_mode & 0o777) == mode:
            return False
    except OSError:
        pass
    files.write_atomic(path, data, mode, durable)
    return True
