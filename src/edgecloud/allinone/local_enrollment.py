"""The supervisor's calls to its own site, in a short-lived child process.

`edgecloud up` enrolls its nodes' agents through the site's REST API (a host record and a
join token, with the admin token) and waits until each host is online. The supervisor runs for
the site's whole life on a small box; the SDK client (httpx) and the enrollment (cryptography)
would stay loaded in it for nothing after the first minute, so it runs them here instead:

    python -m edgecloud.allinone.local_enrollment enroll API CA TOKEN_FILE HOST STATE [ADDRESS]
    python -m edgecloud.allinone.local_enrollment online API CA TOKEN_FILE HOST TIMEOUT SINCE

``online`` waits for the host to be online with its agent heard from at or after SINCE (Unix
time): after a restart the store may still say "online" from before, for up to the liveness
limit, while the new agent has not connected at all.

Exit 0 when done; otherwise one line on stderr and exit 1 (the supervisor reports it).
Neighbours: allinone/supervisor.py (the caller), agent/enrolling.py, client/api.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any

from edgecloud.client import ApiError, Client, ClientConfig
from edgecloud.errors import EdgecloudError

POLL = 0.2


def _client(api: str, ca: str, token_file: str) -> Client:
    token = Path(token_file).read_text().strip()
    return Client(ClientConfig(url=api, token=token, ca_cert=ca))


def enroll(client: Client, host: str, state: Path, address: str | None) -> None:
    """A host record (or, if it exists, a new join token) and the agent's enrollment."""
    from edgecloud.agent.enrolling import enroll as enroll_agent

    try:
        token = client.add_host(host)["join_token"]
    except ApiError as exc:
        if exc.status != 409:
            raise
        token = client.new_join_token(host)["join_token"]
    asyncio.run(enroll_agent(token, state, address))


def heard_since(found: dict[str, Any], since: float) -> bool:
    """Online, and its agent heard from at or after ``since`` (Unix time)."""
    seen = found.get("last_seen_at")
    if found.get("availability") != "online" or not seen:
        return False
    at = dt.datetime.fromisoformat(seen)
    if at.tzinfo is None:  # the store keeps UTC
        at = at.replace(tzinfo=dt.UTC)
    return at.timestamp() >= since


def wait_online(client: Client, host: str, timeout: float, since: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if heard_since(client.get_host(host), since):
                return
        except ApiError as exc:
            if exc.status != 404:
                raise
        if time.monotonic() > deadline:
            raise EdgecloudError(f"host {host} did not come online in {timeout:g} s")
        time.sleep(POLL)


def main(argv: list[str]) -> int:
    try:
        what, api, ca, token_file, host, *rest = argv
        with _client(api, ca, token_file) as client:
            if what == "enroll":
                enroll(client, host, Path(rest[0]), rest[1] if len(rest) > 1 else None)
            elif what == "online":
                wait_online(client, host, float(rest[0]), float(rest[1]))
            else:
                raise EdgecloudError(f"unknown step {what!r}")
    except (EdgecloudError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
