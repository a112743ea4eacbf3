"""SSH key pairs (as Nova's): import a public key, list, show, delete.

Only public keys are ever stored: ``edgecloud keypair create`` generates the pair on the
operator's machine (client/keys.py) and imports the public half, so a private key never
crosses the network or sits in the store. A public key must be one line of OpenSSH format that
``cryptography`` parses (ssh-ed25519, ecdsa-sha2-*, or ssh-rsa of at least 2048 bits). A VNF
copies its key pair's public key at create time (services/vnfs.py), so deleting a key pair later
changes no VNF. Called by api/routers/keypairs.py.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_ssh_public_key
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud.errors import Conflict, InvalidInput
from edgecloud.services.context import ServiceContext
from edgecloud.store import repository
from edgecloud.store.database import transaction
from edgecloud.store.models import KeyPair

MAX_KEY_TEXT = 16384
MIN_RSA_BITS = 2048


def parse_public_key(text: str) -> tuple[str, str, str]:
    """(algorithm, the key as one normalized line, SHA256 fingerprint); InvalidInput if bad."""
    line = text.strip()
    if not line or "\n" in line or len(line) > MAX_KEY_TEXT:
        raise InvalidInput(
            "public_key must be one line of OpenSSH format, e.g. 'ssh-ed25519 AAAA... comment'",
            field="public_key",
        )
    try:
        key = load_ssh_public_key(line.encode())
        blob = base64.b64decode(line.split()[1], validate=True)
    except (ValueError, IndexError, binascii.Error, TypeError, UnsupportedAlgorithm) as exc:
        reason = str(exc).rstrip(".") or "unreadable"
        raise InvalidInput(
            f"public_key is not an OpenSSH public key ({reason})", field="public_key"
        ) from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise InvalidInput(
            f"an RSA key needs at least {MIN_RSA_BITS} bits, this one has {key.key_size}",
            field="public_key",
        )
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return line.split()[0], line, f"SHA256:{digest}"


async def list_keypairs(ctx: ServiceContext) -> list[KeyPair]:
    async with transaction(ctx.sessions) as s:
        return await repository.all_of(s, KeyPair)


async def get_keypair(ctx: ServiceContext, name: str) -> KeyPair:
    async with transaction(ctx.sessions) as s:
        return await repository.by_name(s, KeyPair, name, "key pair")


async def import_keypair(ctx: ServiceContext, request: dict[str, Any]) -> KeyPair:
    """Store a public key under a new name: ``{"name", "public_key"}``."""
    async with transaction(ctx.sessions) as s:
        return await insert_keypair(s, request["name"], request["public_key"])


async def insert_keypair(s: AsyncSession, name: str, public_key: str) -> KeyPair:
    """A key pair in the caller's transaction (stacks create theirs with their other objects)."""
    algorithm, line, fingerprint = parse_public_key(public_key)
    if await repository.find_by_name(s, KeyPair, name) is not None:
        raise Conflict(f"key pair {name!r} already exists")
    keypair = KeyPair(
        name=name, type="ssh", key_algorithm=algorithm, public_key=line, fingerprint=fingerprint
    )
    s.add(keypair)
    await s.flush()
    return keypair


async def delete_keypair(ctx: ServiceContext, name: str) -> None:
    """Delete a key pair; VNFs created with it keep their copy of the public key."""
    async with transaction(ctx.sessions) as s:
        await s.delete(await repository.by_name(s, KeyPair, name, "key pair"))
