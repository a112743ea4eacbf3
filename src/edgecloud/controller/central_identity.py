"""A site's identity at central, in STATE/central/ (controller/central_link.py joins and links).

    ca.crt         central's CA (the one the site join token's fingerprint names)
    site.crt       the site controller's certificate at central
    site.key       its key (0600)
    central.json   central's site port and this site's name there, and which token it joined with
    applied.json   the desired version from central it last applied (said at hello)
    join-token     a site join token to join with (0600; ``edgecloud up --central-token``)

Light on purpose: the CLI saves a token here without loading the controller.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from pathlib import Path

from edgecloud import files
from edgecloud.pki import tokens
from edgecloud.pki.identity import client_ssl_context

INFO = "central.json"
APPLIED = "applied.json"  # the desired version from central this site last applied
TOKEN_FILE = "join-token"  # a site join token to join with (0600): edgecloud up --central-token


def save_token(folder: Path, token_text: str) -> None:
    """Keep a site join token for the controller to join central with (checked first)."""
    tokens.decode(token_text)  # one sentence if it is not a token
    files.private_dir(folder)
    files.write_atomic(folder / TOKEN_FILE, token_text.strip() + "\n")


def saved_token(folder: Path) -> str | None:
    try:
        return (folder / TOKEN_FILE).read_text().strip() or None
    except OSError:
        return None


@dataclass(frozen=True)
class CentralIdentity:
    """This site at central: where central's site port is, and the site's name there."""

    folder: Path
    address: str
    site: str
    token: str = ""  # digest of the join token's secret it joined with

    def tls(self) -> ssl.SSLContext:
        f = self.folder
        return client_ssl_context(f / "ca.crt", f / "site.crt", f / "site.key")


def load(folder: Path) -> CentralIdentity | None:
    """The site's identity at central, None before it joined."""
    try:
        info = json.loads((folder / INFO).read_text())
        return CentralIdentity(
            folder, str(info["address"]), str(info["site"]), str(info.get("token", ""))
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def applied_version(folder: Path) -> int:
    """The desired version from central this site last applied (0: none)."""
    try:
        return int(json.loads((folder / APPLIED).read_text())["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def save_applied(folder: Path, version: int) -> None:
    files.write_atomic(folder / APPLIED, json.dumps({"version": version}))
