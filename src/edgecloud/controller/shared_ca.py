"""The site CA shared by every controller of a site on PostgreSQL, through the store.

With a site secret (``edgecloud controller --site-secret-file``, at least ``MIN_SECRET``
characters) the CA lives in the store's ``site_ca`` row: the certificate, and the key as
PKCS#8 PEM encrypted with the secret (``cryptography``'s best available encryption: a
password-based key derivation and AES-256). So a second controller needs only the database URL
and the site secret: at start it writes the site CA into its own ``pki/`` and issues its own
server certificate from it (pki/authority.py ``ensure_server_cert``). The first controller to
start with a secret publishes its CA (an existing ``pki/`` or a new one); starts are serialised
by a transaction-scoped advisory lock, so two first starts publish one CA.

Refused at start, with one sentence: a secret that does not open the stored key, and a
``pki/ca.crt`` that is not the site's CA (a new CA would orphan every enrolled node). Without a
secret nothing is shared (SQLite, or a PostgreSQL site whose controllers each have a copy of
``pki/`` as before).

A CA rotation is the site's too: its steps change the row (controller/site_ca_rotation.py:
the signing CA, the old CA kept during the overlap, a ``generation`` bumped by each step) and
every controller makes its ``pki/`` match the row (``sync`` at start, then
controller/ca_following.py on each change notice), with pki/rotation.py ``mirror``. The row,
not any controller's disk, says where a rotation stands, so a controller killed at any point
catches up when it runs again. A ``pki/`` holding a CA the site used before (``retired``: the
controller was away during a rotation) is brought up to date; one holding another CA is
refused. Neighbours: controller/site.py (calls ``sync`` before loading the CA), store/models.py
``SiteCa``, pki/authority.py, pki/rotation.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud import files
from edgecloud.errors import Conflict, InvalidInput
from edgecloud.pki import rotation
from edgecloud.pki.authority import CA_CERT_FILE, CertificateAuthority
from edgecloud.pki.identity import fingerprint_of
from edgecloud.store.database import transaction
from edgecloud.store.models import SiteCa

log = logging.getLogger(__name__)
SITE_CA_LOCK = 0x6564_6765_636C_6F03  # advisory lock key (beside store/leadership.py's)
MIN_SECRET = 16
MARK_FILE = "site-ca.json"  # in pki/: this folder mirrors the store's CA (which generation)


def check_secret(secret: str) -> str:
    """The secret without surrounding white space; InvalidInput when it is too short."""
    secret = secret.strip()
    if len(secret) < MIN_SECRET:
        raise InvalidInput(f"the site secret must have at least {MIN_SECRET} characters")
    return secret


def seal(key_pem: bytes, secret: str) -> str:
    """The CA key as PKCS#8 PEM encrypted with ``secret``."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(secret.encode()),
    ).decode()


def unseal(sealed: str, secret: str) -> bytes:
    """The CA key as unencrypted PKCS#8 PEM; Conflict when ``secret`` does not open it."""
    try:
        key = serialization.load_pem_private_key(sealed.encode(), password=secret.encode())
    except (ValueError, TypeError) as exc:
        raise Conflict(
            "the site secret does not open the site CA key in the store: give this controller "
            "the secret the site's other controllers use"
        ) from exc
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class SiteCaState:
    """The site CA as the store holds it, keys opened: what every controller's pki/ mirrors."""

    generation: int
    cert_pem: bytes
    key_pem: bytes
    previous: tuple[bytes, bytes] | None  # the old CA (certificate, key) during a rotation
    retired: tuple[str, ...]  # fingerprints of the CAs the site used before

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.cert_pem)

    def knows(self, fingerprint: str) -> bool:
        """Whether the CA is (or was) this site's."""
        old = fingerprint_of(self.previous[0]) if self.previous else None
        return fingerprint in (self.fingerprint, old, *self.retired)


def opened(row: SiteCa, secret: str) -> SiteCaState:
    """The row with its keys opened by ``secret`` (Conflict when it does not open them)."""
    previous = None
    if row.previous_cert_pem and row.previous_key_encrypted:
        previous = (row.previous_cert_pem.encode(), unseal(row.previous_key_encrypted, secret))
    return SiteCaState(
        row.generation,
        row.cert_pem.encode(),
        unseal(row.key_encrypted, secret),
        previous,
        tuple(row.retired or ()),
    )


async def read(sessions: async_sessionmaker[AsyncSession], secret: str) -> SiteCaState | None:
    """The store's site CA (None when no controller published one yet)."""
    async with sessions() as s:
        row = await s.get(SiteCa, 1)
    return None if row is None else await asyncio.to_thread(opened, row, secret)


async def generation(sessions: async_sessionmaker[AsyncSession]) -> int | None:
    """The row's generation alone (a cheap check whether anything changed)."""
    async with sessions() as s:
        found = await s.scalar(text("SELECT generation FROM site_ca WHERE id = 1"))
    return None if found is None else int(found)


def mirror(pki_dir: Path, state: SiteCaState) -> bool:
    """Make ``pki_dir`` hold the store's CA files (pki/rotation.py ``mirror``) and say which
    generation it holds (``MARK_FILE``); whether a CA file changed."""
    changed = rotation.mirror(pki_dir, state.cert_pem, state.key_pem, state.previous)
    mark = json.dumps({"generation": state.generation, "fingerprint": state.fingerprint})
    if (pki_dir / MARK_FILE).exists() and (pki_dir / MARK_FILE).read_text() == mark:
        return changed
    files.write_atomic(pki_dir / MARK_FILE, mark, files.PUBLIC_FILE)
    return changed


def mirrored(pki_dir: Path) -> bool:
    """Whether ``pki_dir`` mirrors a site CA held in the store (so it is rotated there)."""
    return (pki_dir / MARK_FILE).exists()


async def sync(
    sessions: async_sessionmaker[AsyncSession], pki_dir: Path, secret: str, site_name: str
) -> tuple[str, int]:
    """Make ``pki_dir`` hold the site CA of the store, or publish this one; what happened
    ("published", "fetched" or "same") and the generation ``pki_dir`` now holds."""
    async with transaction(sessions) as s:
        await s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SITE_CA_LOCK})
        row = await s.get(SiteCa, 1)
        if row is None:
            row = _publish(s, pki_dir, site_name, secret)
            log.info("published this controller's CA to the store as the site CA")
            await asyncio.to_thread(mirror, pki_dir, opened(row, secret))
            return "published", 1
        state = await asyncio.to_thread(opened, row, secret)
    cert_path = pki_dir / CA_CERT_FILE
    if cert_path.exists() and not state.knows(fingerprint_of(cert_path.read_bytes())):
        raise Conflict(
            f"{cert_path} is not the site CA held in the store (fingerprint "
            f"{state.fingerprint[:16]}...): move this controller's pki/ away to take the site's"
        )
    existed = cert_path.exists()
    changed = await asyncio.to_thread(mirror, pki_dir, state)
    if not existed:
        log.info("took the site CA from the store")
        return "fetched", state.generation
    if changed:
        log.info(
            "brought this controller's CA files up to the store's (generation %d)", state.generation
        )
    return "same", state.generation


def _publish(s: AsyncSession, pki_dir: Path, site_name: str, secret: str) -> SiteCa:
    """The row for this controller's CA (a rotation under way in its pki/ included)."""
    ca = CertificateAuthority.load_or_create(pki_dir, site_name)
    row = SiteCa(
        id=1,
        cert_pem=ca.cert_pem.decode(),
        key_encrypted=seal(ca.key_pem, secret),
        fingerprint=ca.fingerprint,
        generation=1,
        retired=[],
    )
    old_cert, old_key = pki_dir / rotation.PREVIOUS_CERT, pki_dir / rotation.PREVIOUS_KEY
    if ca.rotating and old_cert.exists() and old_key.exists():
        row.previous_cert_pem = old_cert.read_text()
        row.previous_key_encrypted = seal(old_key.read_bytes(), secret)
    s.add(row)
    return row
