"""Run central: its PKI, its store (migrated), its REST API over HTTPS, and the site gateway.

State directory layout (created on first start):
    pki/ca.crt, pki/ca.key, pki/server.crt, pki/server.key   central's CA and its server cert
    central.db                                                SQLite store (default)
    admin-token                                               the admin API token (0600)
    central.json                                              where it listens, written when ready
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from edgecloud import files, openfiles
from edgecloud.api.limits import BodyLimits
from edgecloud.central.api import CentralContext, create_app
from edgecloud.central.migrations import MIGRATIONS
from edgecloud.central.site_gateway import SiteGateway
from edgecloud.controller.http_deadlines import HEADER_TIMEOUT, HeaderDeadlines
from edgecloud.controller.site import API_SHUTDOWN_GRACE, ApiServer, bind, dial_address
from edgecloud.gateway.admission import Protection
from edgecloud.pki.authority import CertificateAuthority
from edgecloud.pki.identity import server_ssl_context
from edgecloud.store.database import make_engine, migrate, session_factory

log = logging.getLogger(__name__)
SQLITE_FILE = "central.db"
INFO_FILE = "central.json"
PORTS_FILE = "ports.json"  # the ports central bound when asked for any (0): kept on restart


@dataclass
class CentralConfig:
    state_dir: Path
    db_url: str | None = None
    listen: str = "127.0.0.1"  # the site gateway's address (and the API's, unless api_listen)
    api_listen: str | None = None
    api_port: int = 8443
    site_port: int = 8444
    # the address sites dial (goes into site join tokens): HOST, or HOST:PORT when they reach
    # central's site port through a NAT or a proxy on another port
    advertise: str | None = None
    heartbeat_interval: float = 10.0
    heartbeat_misses: int = 3
    protection: Protection | None = None

    @property
    def api_address(self) -> str:
        return self.api_listen or self.listen


class Central:
    def __init__(self, config: CentralConfig) -> None:
        self.config = config
        self.stopping = asyncio.Event()
        self.info: dict[str, object] = {}

    async def run(self) -> None:
        cfg, state = self.config, self.config.state_dir
        openfiles.raise_limit()  # every site is a descriptor
        files.private_dir(state)
        if cfg.db_url is None:
            files.create_private(state / SQLITE_FILE)
        engine = make_engine(cfg.db_url or f"sqlite+aiosqlite:///{state / SQLITE_FILE}")
        await migrate(engine, migrations=MIGRATIONS)
        pki = state / "pki"
        ca = CertificateAuthority.load_or_create(pki, "central")
        names = ["localhost", socket.gethostname()]
        ips = sorted({"127.0.0.1", "::1", cfg.listen, cfg.api_address} - {"0.0.0.0", "::"})
        cert, key = ca.ensure_server_cert(pki, names, ips)
        gateway = SiteGateway(
            session_factory(engine),
            ca,
            server_ssl_context(cert, key, pki / "ca.crt"),
            cfg.heartbeat_interval,
            cfg.heartbeat_misses,
            cfg.protection,
        )
        kept = _kept_ports(state)  # sites know central's site port: a restart keeps it
        site_port = await gateway.start(cfg.listen, cfg.site_port or kept.get("site", 0))
        site_address = _site_address(cfg.advertise or dial_address(cfg.listen), site_port)
        ctx = CentralContext(
            session_factory(engine), ca, gateway, site_address, self._admin_token()
        )
        api_sock = bind(cfg.api_address, cfg.api_port or kept.get("api", 0))
        api_port = api_sock.getsockname()[1]
        ports = {"site": site_port, "api": api_port}
        files.write_atomic(state / PORTS_FILE, json.dumps(ports), files.PUBLIC_FILE)
        server = ApiServer(
            uvicorn.Config(
                create_app(ctx, BodyLimits()),
                http=HeaderDeadlines(HEADER_TIMEOUT).protocol(),
                ssl_certfile=str(cert),
                ssl_keyfile=str(key),
                log_level="warning",
                lifespan="off",
                access_log=False,
                timeout_graceful_shutdown=API_SHUTDOWN_GRACE,
            )
        )
        api_task = asyncio.create_task(server.serve(sockets=[api_sock]), name="central-api")
        try:
            while not server.started and not api_task.done():
                await asyncio.sleep(0.02)
            if api_task.done():
                api_task.result()
            host = dial_address(cfg.api_address)
            self.info = {
                "api_url": f"https://{f'[{host}]' if ':' in host else host}:{api_port}",
                "site_gateway": site_address,  # what sites dial (advertised)
                "site_port": site_port,  # what central listens on
                "ca_cert": str(pki / "ca.crt"),
                "ca_fingerprint": ca.fingerprint,
                "pid": os.getpid(),
            }
            files.write_atomic(state / INFO_FILE, json.dumps(self.info, indent=2))
            log.info("central ready: API %s, sites %s", self.info["api_url"], site_address)
            await self.stopping.wait()
        finally:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await api_task
            await gateway.stop()
            await engine.dispose()
            (state / INFO_FILE).unlink(missing_ok=True)
            log.info("central stopped")

    def _admin_token(self) -> str:
        path = self.config.state_dir / "admin-token"
        with contextlib.suppress(FileNotFoundError):
            if token := path.read_text().strip():
                files.restrict(path)
                return token
        token = secrets.token_urlsafe(32)
        files.write_atomic(path, token + "\n")
        log.info("created central's admin API token in %s", path)
        return token


def _kept_ports(state: Path) -> dict[str, int]:
    """The ports central bound last time (none before its first start)."""
    try:
        kept = json.loads((state / PORTS_FILE).read_text())
        return {k: int(v) for k, v in kept.items() if k in ("site", "api")}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def _site_address(advertised: str, port: int) -> str:
    """``host:port`` sites dial: the advertised address, with the bound port unless it names
    one (``[v6]:port`` too)."""
    if advertised.startswith("[") and "]:" in advertised:
        return advertised
    if advertised.count(":") == 1:
        return advertised
    host = f"[{advertised}]" if ":" in advertised else advertised
    return f"{host}:{port}"
