"""The node certificate in libvirt's and QEMU's layouts: written, kept, rewritten when stale."""

from __future__ import annotations

import stat
from pathlib import Path

from edgecloud.agent import identity, tls_files


def _identity(tmp_path: Path, cert: bytes) -> identity.AgentIdentity:
    return identity.save(tmp_path, "node-1", "127.0.0.1:7443", b"CA", cert, b"KEY")


def test_layouts_written_with_private_keys(tmp_path: Path) -> None:
    who = _identity(tmp_path, b"CERT")
    written = tls_files.ensure(who)
    assert len(written) == 10
    libvirt = tls_files.libvirt_dir(tmp_path)
    assert (libvirt / "cacert.pem").read_bytes() == b"CA"
    assert (libvirt / "servercert.pem").read_bytes() == b"CERT"
    assert (libvirt / "clientkey.pem").read_bytes() == b"KEY"
    qemu = tmp_path / "tls" / "qemu"
    assert (qemu / "ca-cert.pem").read_bytes() == b"CA"
    assert (qemu / "server-key.pem").read_bytes() == b"KEY"
    for key in (libvirt / "serverkey.pem", libvirt / "clientkey.pem", qemu / "client-key.pem"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_unchanged_files_are_kept_and_stale_ones_rewritten(tmp_path: Path) -> None:
    tls_files.ensure(_identity(tmp_path, b"CERT"))
    assert tls_files.ensure(identity.load(tmp_path)) == []
    changed = tls_files.ensure(_identity(tmp_path, b"NEW-CERT"))  # re-enrolled
    assert {p.name for p in changed} == {
        "servercert.pem",
        "clientcert.pem",
        "server-cert.pem",
        "client-cert.pem",
    }
    assert (tls_files.libvirt_dir(tmp_path) / "clientcert.pem").read_bytes() == b"NEW-CERT"
