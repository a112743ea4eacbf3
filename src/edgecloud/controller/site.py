"""Run a site controller: PKI, store (migrated), REST API over HTTPS, agent gateway, and,
while it leads the site, reconcilers and the other leader-only work.

Every controller process serves the API and the agent gateway. On PostgreSQL several may share
the store: one leads (controller/leading.py: an advisory lock and a fencing epoch) and runs the
leader-only work (controller/leader_work.py); change notices cross processes over LISTEN/NOTIFY
(controller/notifying.py, store/change_feed.py). On SQLite the one controller always leads.

State directory layout (created on first start):
    pki/ca.crt, pki/ca.key, pki/server.crt, pki/server.key   the site CA and its server cert
    pki/trust.crt, pki/ca.previous.*                          during a CA rotation (pki/rotation.py)
    pki/api-ca.crt                                            what API clients trust (controller.json)
    (with a site secret on PostgreSQL the CA comes from the store: controller/shared_ca.py,
    pki/site-ca.json says which generation; rotations are followed: ca_following.py)
    images/<sha256>                                           the image store (images/blobs.py)
    edgecloud.db                                              SQLite store (default)
    admin-token                                               the first admin API token (0600)
    controller.json                                           where it listens, written when ready
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy.exc import IntegrityError

from edgecloud import files, openfiles
from edgecloud.api.app import create_app
from edgecloud.api.limits import BodyLimits
from edgecloud.controller import central_link, shared_ca
from edgecloud.controller.ca_following import CaFollower
from edgecloud.controller.http_deadlines import HEADER_TIMEOUT, HeaderDeadlines
from edgecloud.controller.leader_work import LeaderWork
from edgecloud.controller.leading import Leadership
from edgecloud.controller.membership import EVERY as MEMBERSHIP_EVERY
from edgecloud.controller.membership import Membership
from edgecloud.controller.notifying import Notices
from edgecloud.controller.relaying import RelayedCalls
from edgecloud.controller.self_upgrade import SelfUpgrade
from edgecloud.controller.tls import TlsReloader, token_fingerprint, trust_file
from edgecloud.controller.vouching import Vouching, grace_for, refresh_every, watch_witness
from edgecloud.fm.pruning import Retention
from edgecloud.gateway.admission import Protection
from edgecloud.gateway.gateway import Gateway
from edgecloud.gateway.image_serving import TransferLimits
from edgecloud.images.blobs import BlobStore
from edgecloud.pki import rotation
from edgecloud.pki.authority import CertificateAuthority, write_client_trust
from edgecloud.pki.identity import server_ssl_context
from edgecloud.pki.software import SiteSigner
from edgecloud.services import auth
from edgecloud.services.context import ServiceContext, SiteSettings
from edgecloud.store.change_feed import ChangeFeed
from edgecloud.store.database import (
    SQLITE_FILE,
    make_engine,
    migrate,
    session_factory,
    sqlite_url,
)
from edgecloud.store.leadership import Fence, fenced_sessions, is_postgresql

log = logging.getLogger(__name__)
NAME_FILE = "controller.name"  # controller_name
API_SHUTDOWN_GRACE = 2  # seconds requests in flight get when the controller stops (else
# a client's lingering connection held a stop, or an upgrade's restart, for 30 s)


@dataclass
class ControllerConfig:
    state_dir: Path
    db_url: str | None = None
    listen: str = "127.0.0.1"  # the agent gateway's address (and the API's, unless api_listen)
    api_listen: str | None = None  # the REST API's own address, e.g. the management network
    api_port: int = 7443
    gateway_port: int = 7444
    advertise: str | None = None  # address agents dial (goes into join tokens)
    heartbeat_interval: float = 10.0
    heartbeat_misses: int = 3  # silent intervals before a host is lost
    host_recovery: bool = False  # recover failed hosts' VNFs elsewhere (services/recovery.py)
    join_token_ttl: float = 3600.0
    site_name: str = "edge"
    extra_hostnames: list[str] = field(default_factory=list)
    # admission control and multi-host-loss avoidance (gateway/admission.py); off: the baseline
    protection: Protection = field(default_factory=Protection)
    stats_file: Path | None = None  # the gateway writes its counters here every second
    # how many image blobs stream to nodes at once, and how many wait (gateway/image_serving.py)
    image_transfers: TransferLimits = field(default_factory=TransferLimits)
    # how often the PKI files are checked for changes (controller/tls.py: rotation, no restart)
    tls_reload_period: float = 5.0
    # how long and how much fault history is kept (fm/pruning.py)
    retention: Retention = field(default_factory=Retention)
    body_limits: BodyLimits = field(default_factory=BodyLimits)  # api/limits.py
    # seconds a request has to send its headers (controller/http_deadlines.py: slowloris)
    api_header_timeout: float = HEADER_TIMEOUT
    # PostgreSQL: the site CA is kept in the store, its key encrypted with this secret
    # (controller/shared_ca.py); None: this controller's pki/ alone, as on SQLite
    site_secret: str | None = None
    # where image blobs live; several controllers on different machines point it at one
    # shared file system (docs/operations.md); None: STATE/images
    image_dir: Path | None = None
    # a store replicated by pg_auto_failover: its monitor's URI; the leader raises an alarm
    # when the database could not fail over (controller/db_witness.py)
    db_witness: str | None = None
    # this controller's own node's database node, as the monitor names it: while the store
    # does not answer, the witness may let it go on answering its agents (controller/vouching.py)
    db_node: str | None = None

    @property
    def api_address(self) -> str:
        return self.api_listen or self.listen


class ApiServer(uvicorn.Server):
    """uvicorn without its own signal handling: the controller owns shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def controller_name(state_dir: Path) -> str:
    """This controller's lasting name, ``host:tag``, kept in its state folder: the same across
    restarts and re-executions into another release (services/upgrade_runs.py follows a
    controller's step by it), different for two controllers of one machine or process."""
    path = state_dir / NAME_FILE
    with contextlib.suppress(FileNotFoundError):
        if name := path.read_text(encoding="utf-8").strip():
            return name
    name = f"{socket.gethostname()}:{secrets.token_hex(3)}"
    files.private_dir(state_dir)
    files.write_atomic(path, name, mode=0o644)
    return name


class Controller:
    def __init__(self, config: ControllerConfig) -> None:
        self.config = config
        self.state_dir = config.state_dir
        self.stopping = asyncio.Event()
        self.restart_requested = False  # an upgrade's turn: re-execute (controller/self_upgrade.py)
        self.ports: dict[str, int] = {}  # what it bound: "--api-port", "--gateway-port"
        self.info: dict[str, Any] = {}
        self.gateway: Gateway | None = None
        self.leadership: Leadership | None = None
        self.work: LeaderWork | None = None
        self.feed: ChangeFeed | None = None
        self.notices: Notices | None = None
        self.relay: RelayedCalls | None = None
        self.membership: Membership | None = None
        self.ca_follower: CaFollower | None = None  # a site CA shared through the store
        # names this process in the leadership row and the controllers table: its lasting
        # name (the same after a restart: an upgrade's step follows it), then this start's tag
        self.id = f"{controller_name(self.state_dir)}/{uuid.uuid4().hex[:6]}"
        self._background: set[asyncio.Task[None]] = set()
        self.api_deadlines = HeaderDeadlines(config.api_header_timeout)

    async def run(self) -> None:
        """Start everything, run until ``stopping`` is set, stop cleanly."""
        cfg = self.config
        openfiles.raise_limit()  # every agent and every API client is a descriptor
        files.private_dir(self.state_dir)
        pki_dir = self.state_dir / "pki"
        if cfg.db_url is None:  # SQLite gives its -wal and -shm files the database's mode
            files.create_private(self.state_dir / SQLITE_FILE)
            for suffix in ("-wal", "-shm"):  # left by an earlier run
                files.restrict(self.state_dir / f"{SQLITE_FILE}{suffix}")
        url = cfg.db_url or sqlite_url(self.state_dir)
        engine = make_engine(url)
        await migrate(engine)  # on PostgreSQL one controller at a time (store/database.py)
        ca_generation: int | None = None  # the store's site CA this pki/ mirrors
        if cfg.site_secret is not None and is_postgresql(url):  # the CA from the store
            try:
                _, ca_generation = await shared_ca.sync(
                    session_factory(engine), pki_dir, cfg.site_secret, cfg.site_name
                )
            except BaseException:
                await engine.dispose()
                raise
        ca = CertificateAuthority.load_or_create(pki_dir, cfg.site_name)
        names = ["localhost", socket.gethostname(), *cfg.extra_hostnames]
        ips = sorted({"127.0.0.1", "::1", cfg.listen, cfg.api_address} - {"0.0.0.0", "::"})
        cert, key = rotation.server_issuer(pki_dir, ca).ensure_server_cert(pki_dir, names, ips)
        gateway_sock = cfg.gateway_port
        image_store = BlobStore(cfg.image_dir or self.state_dir / "images")
        image_store.prepare()
        if cfg.image_dir is None:  # (a shared folder's may be another controller's uploads)
            image_store.clear_incoming()  # uploads a crash interrupted: never became images
        ctx = ServiceContext(
            sessions=session_factory(engine),
            settings=SiteSettings(
                heartbeat_interval=cfg.heartbeat_interval,
                join_token_ttl=cfg.join_token_ttl,
                heartbeat_misses=cfg.heartbeat_misses,
                host_recovery=cfg.host_recovery,
            ),
            ca_fingerprint=token_fingerprint(pki_dir, ca),
            images=image_store,
            signer=SiteSigner(pki_dir, cfg.site_name),
        )
        began = time.monotonic()
        await self._admin_token(ctx)
        vouching = self._vouching(url, began)
        gateway = Gateway(
            ctx,
            ca,
            server_ssl_context(cert, key, trust_file(pki_dir)),
            cfg.protection,
            cfg.stats_file,
            cfg.image_transfers,
        )
        self.gateway = gateway
        gateway.judging = None  # until this controller leads (controller/leader_work.py)
        gateway_port = await gateway.start(cfg.listen, gateway_sock)
        self.ports["--gateway-port"] = gateway_port
        ctx.settings.gateway_address = f"{cfg.advertise or dial_address(cfg.listen)}:{gateway_port}"
        ctx.settings.controller_id = self.id
        relay = self.relay = RelayedCalls(gateway, ctx.sessions, self.id)
        ctx.nodes = relay
        self.tls = TlsReloader(
            pki_dir, cfg.site_name, names, ips, gateway, ctx, cfg.tls_reload_period
        )
        notices = self.notices = Notices(gateway, holder=self.id)
        notices.relay = relay
        if ca_generation is not None and cfg.site_secret is not None:
            self.ca_follower = CaFollower(
                ctx.sessions,
                pki_dir,
                cfg.site_secret,
                self.tls,
                ca_generation,
                cfg.tls_reload_period,
            )
            notices.site_ca = self.ca_follower.wake
        ctx.notifier = notices
        work = self.work = notices.work = LeaderWork(
            gateway, cfg.retention, notices.host_changed, cfg.db_witness, self._central_link
        )
        fence, leader_ctx = Fence(), ctx  # leader-only work writes under the epoch's fence
        if is_postgresql(url):
            leader_ctx = dataclasses.replace(ctx, sessions=fenced_sessions(engine, fence))
            self.feed = notices.feed = ChangeFeed(url, notices.deliver, self._resumer(leader_ctx))
            await self.feed.start()
            relay.publish = self.feed.publish
            gateway.announce = notices.hosts_present
            notices.want_presence()  # the others' whole lists, before this one judges anyone
        if vouching is not None:
            gateway.vouches = lambda: vouching.basis(time.monotonic())
            gateway.vouch_grace = vouching.grace
            if cfg.db_witness is not None and cfg.db_node is not None:
                every = self._refresh_every()
                self._spawn(
                    watch_witness(
                        vouching, cfg.db_witness, url, cfg.db_node, every, gateway.answer_all
                    ),
                    "witness",
                )

        async def gain(_epoch: int) -> None:
            await work.start(leader_ctx)

        self.leadership = Leadership(url, gain, work.stop, holder=self.id, fence=fence)
        await self.leadership.start()  # SQLite: leads now; PostgreSQL: leads if it is free
        api_sock = bind(cfg.api_address, cfg.api_port)
        api_port = api_sock.getsockname()[1]
        self.ports["--api-port"] = api_port
        server = ApiServer(
            uvicorn.Config(
                create_app(ctx, cfg.body_limits),
                http=self.api_deadlines.protocol(),
                ssl_certfile=str(cert),
                ssl_keyfile=str(key),
                log_level="warning",
                lifespan="off",
                access_log=False,
                timeout_graceful_shutdown=API_SHUTDOWN_GRACE,
            )
        )
        api_task = asyncio.create_task(server.serve(sockets=[api_sock]), name="api")
        reloading: asyncio.Task[None] | None = None
        try:
            while not server.started and not api_task.done():
                await asyncio.sleep(0.02)
            if api_task.done():
                api_task.result()
            self.tls.api = server.config.ssl
            reloading = asyncio.create_task(self.tls.run_forever(), name="tls-reload")
            if self.ca_follower is not None:
                self.ca_follower.start()
            self.membership = Membership(
                ctx,
                self.id,
                self._api_url(api_port),
                ctx.settings.gateway_address,
                relay,
                on_gateways=gateway.set_controllers,
                shared=is_postgresql(url),  # SQLite: one controller, its row written once
                every=self._refresh_every() if vouching else None,
                vouching=vouching,
                on_lapse_ended=lambda: gateway.elsewhere.restamp(time.monotonic()),
            )
            await self.membership.start()  # listed before it says it is ready
            following = SelfUpgrade(
                ctx, self.state_dir, trust_file(pki_dir), self.id, self._restart_for_upgrade
            )
            self._spawn(following.run_forever(), "self-upgrade")
            self._write_info(ca, api_port, ctx.settings.gateway_address)
            log.info(
                "controller ready: API %s, agents %s", self.info["api_url"], self.info["gateway"]
            )
            await self.stopping.wait()
        finally:
            if reloading is not None:
                reloading.cancel()
            if self.ca_follower is not None:
                await self.ca_follower.stop()
            server.should_exit = True
            with contextlib.suppress(Exception):
                await api_task
            if self.membership is not None:
                await self.membership.stop()
            await relay.close()
            await self.leadership.close()  # stops the leader-only work, releases the lock
            for task in list(self._background):
                task.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)
            if self.feed is not None:
                await self.feed.close()
            await gateway.stop()
            await engine.dispose()
            (self.state_dir / "controller.json").unlink(missing_ok=True)
            log.info("controller stopped")

    async def _central_link(self, ctx: ServiceContext) -> None:
        """While this controller leads: the site's link to central (controller/central_link.py)."""
        folder = self.state_dir / "central"
        await central_link.keep_linked(ctx, folder)

    def _vouching(self, url: str, began: float) -> Vouching | None:
        """A store other controllers share, on a site that recovers hosts: this controller
        answers its agents' heartbeats only while it stands (controller/vouching.py); the
        store has just answered (a write begun at ``began``)."""
        if not (is_postgresql(url) and self.config.host_recovery):
            return None
        vouching = Vouching(grace_for(self.config.heartbeat_interval))
        vouching.stored(began, time.monotonic())
        return vouching

    def _refresh_every(self) -> float:
        return refresh_every(self.config.heartbeat_interval, MEMBERSHIP_EVERY)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _resumer(self, leader_ctx: ServiceContext) -> Callable[[], None]:
        """What the change feed calls after a reconnect: notices may have been lost, so the
        gateway re-checks its hosts' versions and the leader requeues work under way."""

        def resume() -> None:
            if self.gateway is not None:
                self.gateway.resync_all()
                # the others' heartbeats of the outage are lost: none counts as silent from
                # before it (controller/vouching.py)
                self.gateway.elsewhere.restamp(time.monotonic())
            if self.notices is not None:
                self.notices.want_presence()
            if self.ca_follower is not None:  # a CA rotation step may have been missed
                self.ca_follower.wake()
            if self.work is not None and self.work.running:
                self._spawn(self.work.resume(leader_ctx), "resume")

        return resume

    async def _admin_token(self, ctx: ServiceContext) -> None:
        try:
            token = await auth.ensure_admin_token(ctx)
        except IntegrityError:  # another controller of the site made it at the same moment
            token = None
        files.restrict(self.state_dir / "admin-token")  # one from before may have been wider
        if token is not None:
            path = self.state_dir / "admin-token"
            files.write_atomic(path, token + "\n")
            log.info("created the admin API token in %s", path)

    def _api_url(self, api_port: int) -> str:
        host = dial_address(self.config.api_address)
        url_host = f"[{host}]" if ":" in host else host
        return f"https://{url_host}:{api_port}"

    def _restart_for_upgrade(self) -> None:
        """Stop, to be re-executed at the selected release by the command that runs this."""
        self.restart_requested = True
        self.stopping.set()

    def _write_info(self, ca: CertificateAuthority, api_port: int, gateway: str) -> None:
        self.info = {
            "api_url": self._api_url(api_port),
            "gateway": gateway,
            # the CA bundle API clients trust (a CA rotation's overlap included: controller/tls.py)
            "ca_cert": str(write_client_trust(self.state_dir / "pki", ca)),
            "ca_fingerprint": ca.fingerprint,
            "pid": os.getpid(),
        }
        files.write_atomic(self.state_dir / "controller.json", json.dumps(self.info, indent=2))


def dial_address(listen: str) -> str:
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(listen, listen)
