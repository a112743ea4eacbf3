"""Rotating the site CA without re-enrolling the nodes: begin (overlap), then finish.

1. ``begin``: a new CA signs from now on; ``trust.crt`` holds the new CA then the old one, and
   the controller (controller/tls.py notices the files) trusts both for client certificates,
   keeps its server certificate from the old CA (nodes that have not renewed trust only the old
   CA), hands the bundle to every node that enrolls or renews, and asks every connected node to
   renew at once: each gets a certificate of the new CA and the bundle.
   A node that connects during the overlap with a certificate of the old CA is asked to renew
   at once too (gateway.py), so every node that was online since ``begin`` holds the new CA.
2. ``finish`` (once every node was online since ``begin``): the old CA is dropped from the
   trust; the controller re-issues its server certificate from the new CA. A node that never renewed (offline all along) is refused and must be enrolled
   again (``edgecloud host token NAME``).

The old CA's key is kept as ``ca.previous.key`` during the overlap (``rollback`` restores it)
and deleted by ``finish``. Each file is replaced atomically; the new key and certificate are
written beside the old ones first and renamed key first, certificate last (a crash in between
is completed at the next load: authority.py ``settle_replacement``). Docs: docs/security.md.

On a site whose controllers share the CA through the store (controller/shared_ca.py) the steps
are taken in the store (controller/site_ca_rotation.py) and every controller makes its folder
match with ``mirror``: the same files, written in the same safe order as the steps here.
"""

from __future__ import annotations

from pathlib import Path

from edgecloud.errors import Conflict
from edgecloud.files import write_atomic
from edgecloud.pki.authority import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    TRUST_FILE,
    CertificateAuthority,
    folder_lock,
    settle_replacement,
)
from edgecloud.pki.identity import fingerprint_of

PREVIOUS_CERT = "ca.previous.crt"
PREVIOUS_KEY = "ca.previous.key"


def in_progress(directory: Path) -> bool:
    return (directory / TRUST_FILE).exists()


def begin(directory: Path, site_name: str) -> CertificateAuthority:
    """Start a rotation; returns the new CA."""
    with folder_lock(directory):
        return _begin(directory, site_name)


def _begin(directory: Path, site_name: str) -> CertificateAuthority:
    _settle(directory)
    if in_progress(directory):
        raise Conflict(f"a CA rotation is in progress in {directory}: finish it first")
    if not (directory / CA_CERT_FILE).exists():
        raise Conflict(f"{directory} holds no site CA (is it a controller's state folder?)")
    old = CertificateAuthority.load_files(directory / CA_CERT_FILE, directory / CA_KEY_FILE)
    new = CertificateAuthority.create(site_name)
    write_atomic(directory / PREVIOUS_KEY, old.key_pem, 0o600)
    write_atomic(directory / PREVIOUS_CERT, old.cert_pem, 0o644)
    write_atomic(directory / TRUST_FILE, new.cert_pem + old.cert_pem, 0o644)
    _replace(directory, new.cert_pem, new.key_pem)
    return new


def finish(directory: Path) -> None:
    """End the overlap: only the new CA is trusted from now on."""
    with folder_lock(directory):
        _settle(directory)
        if not in_progress(directory):
            raise Conflict(f"no CA rotation is in progress in {directory}")
        (directory / TRUST_FILE).unlink()
        (directory / PREVIOUS_KEY).unlink(missing_ok=True)


def rollback(directory: Path) -> None:
    """Abandon a rotation: the old CA signs and is the only one trusted again (nodes that
    already renewed onto the new CA must be enrolled again)."""
    with folder_lock(directory):
        _settle(directory)
        if not in_progress(directory):
            raise Conflict(f"no CA rotation is in progress in {directory}")
        key, cert = directory / PREVIOUS_KEY, directory / PREVIOUS_CERT
        _replace(directory, cert.read_bytes(), key.read_bytes())
        (directory / TRUST_FILE).unlink()
        key.unlink()
        cert.unlink()


def previous_fingerprint(directory: Path) -> str | None:
    """The old CA's fingerprint while a rotation is in progress."""
    with folder_lock(directory):
        cert = _read(directory / PREVIOUS_CERT)
        return fingerprint_of(cert) if cert is not None and in_progress(directory) else None


def server_issuer(directory: Path, ca: CertificateAuthority) -> CertificateAuthority:
    """The CA to issue this controller's server certificate from: during a rotation the old
    one (nodes that have not renewed trust only it), else ``ca``."""
    cert, key = directory / PREVIOUS_CERT, directory / PREVIOUS_KEY
    with folder_lock(directory):
        if not (ca.rotating and cert.exists() and key.exists()):
            return ca
        old = CertificateAuthority.load_files(cert, key)
    return CertificateAuthority(old.certificate, old.private_key, ca.trust_pem)


def mirror(
    directory: Path, cert_pem: bytes, key_pem: bytes, previous: tuple[bytes, bytes] | None
) -> bool:
    """Make the folder hold this CA (signing) and, during a rotation, ``previous`` (old
    certificate and key) trusted beside it; whether a file changed.

    Idempotent, and safe at every point for a controller reading the folder meanwhile
    (controller/tls.py): the bundle is written before the signing CA changes and removed after,
    as ``begin``, ``finish`` and ``rollback`` do, so the server certificate is never re-issued
    from a CA that nodes do not trust yet."""
    with folder_lock(directory):
        return _mirror(directory, cert_pem, key_pem, previous)


def _mirror(
    directory: Path, cert_pem: bytes, key_pem: bytes, previous: tuple[bytes, bytes] | None
) -> bool:
    _settle(directory)
    changed = False
    if previous is not None:
        old_cert, old_key = previous
        changed |= _put(directory / PREVIOUS_KEY, old_key, 0o600)
        changed |= _put(directory / PREVIOUS_CERT, old_cert, 0o644)
        changed |= _put(directory / TRUST_FILE, cert_pem + old_cert, 0o644)
    if _read(directory / CA_CERT_FILE) != cert_pem or _read(directory / CA_KEY_FILE) != key_pem:
        _replace(directory, cert_pem, key_pem)
        changed = True
    if previous is None:
        for name in (TRUST_FILE, PREVIOUS_KEY, PREVIOUS_CERT):
            if (directory / name).exists():
                (directory / name).unlink()
                changed = True
    return changed


def _put(path: Path, data: bytes, mode: int) -> bool:
    if _read(path) == data:
        return False
    write_atomic(path, data, mode)
    return True


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _replace(directory: Path, cert_pem: bytes, key_pem: bytes) -> None:
    write_atomic(directory / "ca.next.key", key_pem, 0o600)
    write_atomic(directory / "ca.next.crt", cert_pem, 0o644)
    _settle(directory)


def _settle(directory: Path) -> None:
    settle_replacement(directory)
