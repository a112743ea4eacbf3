"""The agent's persistent files: its certificate, key, the site CA, and where to dial.

STATE/ca.crt  STATE/host.crt  STATE/host.key (0600)  STATE/agent.json {host, controller}
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from edgecloud.errors import EnrollmentError


@dataclass(frozen=True)
class AgentIdentity:
    state_dir: Path
    host: str
    controller: str  # "host:port" of the controller's agent gateway

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
    if not path.exists():
        raise EnrollmentError(
            f"this node is not enrolled (no {path}): run `edgecloud agent --join TOKEN` "
            "with a token from `edgecloud host add NAME`"
        )
    data = json.loads(path.read_text())
    return AgentIdentity(state_dir, data["host"], data["controller"])


def save(
    state_dir: Path, host: str, controller: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes
) -> AgentIdentity:
    """Write the identity files (key readable by the owner only)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    identity = AgentIdentity(state_dir, host, controller)
    identity.ca.write_bytes(ca_pem)
    identity.cert.write_bytes(cert_pem)
    fd = os.open(identity.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    (state_dir / "agent.json").write_text(json.dumps({"host": host, "controller": controller}))
    return identity


def split_address(address: str) -> tuple[str, int]:
    """'host:port' (or '[v6]:port') -> (host, port)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)
