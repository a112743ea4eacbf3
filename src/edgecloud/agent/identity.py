"""The agent's persistent files: its certificate, key, the site CA, and where to dial.

STATE/ca.crt  STATE/host.crt  STATE/host.key (0600)  STATE/agent.json {host, controller,
controllers}: ``controller`` the gateway the node enrolled with, ``controllers`` every
controller's gateway of the site, that one first (absent before several controllers; an
older agent reads ``controller`` only).

A renewal (agent/renewing.py) replaces key, certificate and CA together: the new files are
first written whole beside the old ones (``host.next.key``, then ``host.next.crt``, ``ca.next.crt``,
each fsynced), then renamed over them; ``finish_renewal`` (run at every start) completes a
renewal a crash interrupted, or drops one that was not fully written, so key and certificate
always match.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecloud import files
from edgecloud.errors import EnrollmentError
from edgecloud.files import write_atomic
from edgecloud.pki.identity import certificate_matches_key


@dataclass(frozen=True)
class AgentIdentity:
    state_dir: Path
    host: str
    controller: str  # "host:port" of the controller's agent gateway
    others: tuple[str, ...] = ()  # the site's other controllers' gateways

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every controller's gateway this node may dial, ``controller`` first."""
        return tuple(dict.fromkeys((self.controller, *self.others)))

    @property
    def ca(self) -> Path:
        return self.state_dir / "ca.crt"

    @property
    def cert(self) -> Path:
        return self.state_dir / "host.crt"

    @property
    def key(self) -> Path:
        return self.state_dir / "host.key"


def load(state_dir: Path) -> AgentIdentity:
    """The identity saved by an earlier enrollment."""
    path = state_dir / "agent.json"
    data = files.read_tolerant(path, _where, "the agent's enrollment record")
    if data is None:
        raise EnrollmentError(
            f"this node is not enrolled (no readable {path}): run `edgecloud agent --join "
            "TOKEN` with a token from `edgecloud host add NAME`"
        )
    files.private_dir(state_dir)  # a folder an older version left wider becomes 0700
    files.restrict(state_dir / "host.key")
    return AgentIdentity(state_dir, data["host"], data["controller"], tuple(data["others"]))


def _where(raw: bytes) -> dict[str, Any]:
    data = json.loads(raw)
    if not (isinstance(data.get("host"), str) and isinstance(data.get("controller"), str)):
        raise ValueError("no host and controller")
    every = data.get("controllers") or [data["controller"]]
    if not isinstance(every, list) or not all(isinstance(a, str) for a in every):
        raise ValueError("controllers is not a list of addresses")
    others = [a for a in every if a != data["controller"]]
    return {"host": data["host"], "controller": data["controller"], "others": others}


def save(
    state_dir: Path,
    host: str,
    controller: str,
    ca_pem: bytes,
    cert_pem: bytes,
    key_pem: bytes,
    others: tuple[str, ...] = (),
) -> AgentIdentity:
    """Write the identity files (in a 0700 folder; the key 0600), each atomically; agent.json
    last, so a crash in between leaves a node that is not enrolled rather than half of one."""
    files.private_dir(state_dir)
    identity = AgentIdentity(state_dir, host, controller, tuple(others))
    files.write_atomic(identity.ca, ca_pem, files.PUBLIC_FILE)
    files.write_atomic(identity.cert, cert_pem, files.PUBLIC_FILE)
    files.write_atomic(identity.key, key_pem)
    record: dict[str, Any] = {"host": host, "controller": controller}
    if others:
        record["controllers"] = list(identity.addresses)
    files.write_atomic(state_dir / "agent.json", json.dumps(record))
    return identity


MAX_CONTROLLERS = 8


def current_addresses(identity: AgentIdentity) -> tuple[str, ...]:
    """The controllers to dial now: ``agent.json`` as last written (a welcome may have taught
    it more, see ``learn_controllers``), else what ``identity`` was loaded with."""
    try:
        data = _where((identity.state_dir / "agent.json").read_bytes())
    except (OSError, ValueError):
        return identity.addresses
    if data["controller"] != identity.controller:
        return identity.addresses
    return tuple(dict.fromkeys((data["controller"], *data["others"])))


def learn_controllers(identity: AgentIdentity, addresses: list[str]) -> bool:
    """Keep the site's controllers a welcome named, after the one the node enrolled with (it
    stays, as the record's ``controller``); True when ``agent.json`` changed."""
    learned = [a for a in addresses if isinstance(a, str) and ":" in a][:MAX_CONTROLLERS]
    if not learned:
        return False
    every = list(dict.fromkeys((identity.controller, *learned)))
    if tuple(every) == current_addresses(identity):
        return False
    record = {"host": identity.host, "controller": identity.controller, "controllers": every}
    files.write_atomic(identity.state_dir / "agent.json", json.dumps(record))
    return True


def _next(identity: AgentIdentity) -> tuple[Path, Path, Path]:
    d = identity.state_dir
    return d / "host.next.key", d / "host.next.crt", d / "ca.next.crt"


def save_renewed(identity: AgentIdentity, cert_pem: bytes, key_pem: bytes, ca_pem: bytes) -> None:
    """Replace the node's key, certificate and CA with renewed ones (see the docstring)."""
    if not certificate_matches_key(cert_pem, key_pem):
        raise EnrollmentError("the renewed certificate is not for this node's new key")
    key, cert, ca = _next(identity)
    write_atomic(key, key_pem, 0o600)
    write_atomic(ca, ca_pem, 0o644)
    write_atomic(cert, cert_pem, 0o644)  # last: its presence says the set is complete
    finish_renewal(identity)


def finish_renewal(identity: AgentIdentity) -> bool:
    """Complete an interrupted renewal, or drop an incomplete one; True when one completed."""
    key, cert, ca = _next(identity)
    if not cert.exists():
        key.unlink(missing_ok=True)
        ca.unlink(missing_ok=True)
        return False
    if key.exists():
        key.replace(identity.key)
    if ca.exists():
        ca.replace(identity.ca)
    cert.replace(identity.cert)
    return True
