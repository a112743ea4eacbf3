"""SSH key pair generation on the operator's machine, for ``Client.create_keypair``.

The private key is made here and never sent: only the public half goes to the controller
(services/keypairs.py validates and stores it). Keys come from ``cryptography``.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from edgecloud.errors import ClientError

ALGORITHMS = ("ed25519", "rsa")
RSA_BITS = 3072


def generate(algorithm: str = "ed25519") -> tuple[str, str]:
    """(private key in OpenSSH PEM, public key as one OpenSSH line)."""
    key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
    if algorithm == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    elif algorithm == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    else:
        raise ClientError(f"unknown key algorithm {algorithm!r} (one of {', '.join(ALGORITHMS)})")
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return private, public
