"""Enrollment, node side: join token -> CA (fingerprint checked) -> CSR -> certificate.

1. TLS without verification, ask for the CA certificate(s); keep only the one whose SHA-256
   fingerprint is the one in the token (so a man in the middle cannot pose as the site, nor
   slip in a CA of its own beside the real one).
2. TLS verified against that CA, send the CSR and the token secret; get the certificate and
   the CAs to trust (both during a CA rotation: pki/rotation.py), now over a verified channel.
From then on the agent uses mutual TLS only.

A token from a site with several controllers names them all (pki/tokens.py ``others``): the
first that answers is asked both questions, and the node keeps every address
(agent/identity.py) so its connection follows whichever controller is up (agent/connection.py).
"""

from __future__ import annotations

from pathlib import Path

from edgecloud import files
from edgecloud.agent import identity, tls_files
from edgecloud.pki import joining, tokens
from edgecloud.pki.identity import client_ssl_context, make_key_and_csr
from edgecloud.protocol import messages


async def enroll(
    token_text: str, state_dir: Path, address: str | None = None
) -> identity.AgentIdentity:
    """Enroll this node with the join token; saves and returns its identity.

    ``address``: the node's address on the site's internal network, put in its certificate
    (an IP SAN) so other nodes' hypervisors accept it as a migration peer; the certificate is
    also written in the layouts libvirt and QEMU read (agent/tls_files.py)."""
    token = tokens.decode(token_text)
    dialed, ca_pem = await joining.token_ca(token, "the controller")
    files.private_dir(state_dir)
    ca_file = state_dir / "ca.crt"
    files.write_atomic(ca_file, ca_pem, files.PUBLIC_FILE)
    key_pem, csr_pem = make_key_and_csr(token.host)
    fields = {"address": address} if address else {}
    request = messages.make(
        "enroll", host=token.host, secret=token.secret, csr=csr_pem.decode(), **fields
    )
    reply = await joining.exchange(dialed, client_ssl_context(ca_file), request)
    # the CAs to trust from now on: the reply came over TLS verified against the token's CA,
    # so its bundle (both CAs during a CA rotation) is the controller's word
    trusted = str(reply.get("ca") or "").encode() or ca_pem
    who = identity.save(
        state_dir,
        token.host,
        token.address,
        trusted,
        str(reply["cert"]).encode(),
        key_pem,
        others=token.others,
    )
    tls_files.ensure(who)
    return who
