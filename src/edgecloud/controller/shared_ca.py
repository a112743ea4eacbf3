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
``pki/`` as before). Not shared yet: a CA rotation (pki/rotation.py) changes only the files of
the controller that runs it. Neighbours: controller/site.py (calls ``sync`` before loading the
CA), store/models.py ``SiteCa``, pki/authority.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud import files
from edgecloud.errors import Conflict, InvalidInput
from edgecloud.pki.authority import CA_CERT_FILE, CA_KEY_FILE, CertificateAuthority
from edgecloud.pki.identity import fingerprint_of
from edgecloud.store.database import transaction
from edgecloud.store.models import SiteCa

log = logging.getLogger(__name__)
SITE_CA_LOCK = 0x6564_6765_636C_6F03  # advisory lock key (beside store/leadership.py's)
MIN_SECRET = 16


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


async def sync(
    sessions: async_sessionmaker[AsyncSession], pki_dir: Path, secret: str, site_name: str
) -> str:
    """Make ``pki_dir`` hold the site CA of the store, or publish this one; what happened:
    "published" or "fetched" or "same"."""
    async with transaction(sessions) as s:
        await s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SITE_CA_LOCK})
        row = await s.get(SiteCa, 1)
        if row is None:
            ca = CertificateAuthority.load_or_create(pki_dir, site_name)
            s.add(
                SiteCa(
                    id=1,
                    cert_pem=ca.cert_pem.decode(),
                    key_encrypted=seal(ca.key_pem, secret),
                    fingerprint=ca.fingerprint,
                )
            )
            log.info("published this controller's CA to the store as the site CA")
            return "published"
        key_pem = unseal(row.key_encrypted, secret)
    cert_path, key_path = pki_dir / CA_CERT_FILE, pki_dir / CA_KEY_FILE
    if cert_path.exists():
        if fingerprint_of(cert_path.read_bytes()) != row.fingerprint:
            raise Conflict(
                f"{cert_path} is not the site CA held in the store (fingerprint "
                f"{row.fingerprint[:16]}...): move this controller's pki/ away to take the site's"
            )
        if not key_path.exists():
            files.write_atomic(key_path, key_pem)
        return "same"
    files.private_dir(pki_dir)
    files.write_atomic(key_path, key_pem)
    files.write_atomic(cert_path, row.cert_pem.encode(), files.PUBLIC_FILE)
    log.info("took the site CA from the store")
    return "fetched"
