"""The agent process: drivers, the applier, the controller session, periodic resync.

Runs until stopped: keeps one session with the controller (reconnecting with full-jitter
backoff, or after the controller's ``retry_after`` when it is busy admitting others), and
every ``resync_interval`` seconds checks the node against its desired state even without the
controller (a crashed VNF is started again), reporting observed changes and host alarms.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from edgecloud import __version__, staging
from edgecloud.agent import connection, fencing, renewing, tls_files
from edgecloud.agent.applying import Applier
from edgecloud.agent.identity import AgentIdentity, finish_renewal
from edgecloud.agent.image_cache import ImageCache
from edgecloud.agent.image_fetching import ImageFetcher
from edgecloud.drivers import registry
from edgecloud.errors import DriverError, EdgecloudError, ProtocolError
from edgecloud.pci import PciDevice
from edgecloud.protocol import messages, schemas
from edgecloud.protocol.desired import DesiredState

log = logging.getLogger(__name__)
HOST_DRIVER_UNAVAILABLE = "200.012"
HOST_DISK_FULL = "200.013"
DISK_FULL_RATIO = 0.90
RESTART_AFTER = 0.2  # seconds between answering ``restart`` and stopping (the answer goes out)


class Agent:
    def __init__(
        self,
        identity: AgentIdentity,
        compute: str = "fake",
        network: str | None = None,
        resync_interval: float = 5.0,
        bridge: str | None = None,
        source_address: str | None = None,
        backoff: tuple[float, float] = (0.5, 30.0),
        pci_devices: tuple[PciDevice, ...] = (),
        libvirt_uri: str | None = None,
        uplink: str | None = None,
        address: str | None = None,
        clock: renewing.Clock | None = None,
        renew_check: float = renewing.CHECK_PERIOD,
    ) -> None:
        """``source_address``: local address to dial from; ``backoff``: (base, cap) of the
        reconnect backoff, seconds; ``pci_devices``: the host devices VNFs may be given;
        ``libvirt_uri``: the hypervisor the libvirt driver talks to; ``uplink``: the OVS
        bridge's trunk port towards the other nodes; ``address``: the node's address on the
        site's internal network (where its hypervisor takes migrations); ``clock`` and
        ``renew_check``: the wall clock and period of certificate renewal (renewing.py)."""
        self.identity = identity
        self.address = address
        self.source_address = source_address
        self.backoff = backoff
        self._tls: ssl.SSLContext | None = None
        state = identity.state_dir
        compute_options = {"uri": libvirt_uri} if libvirt_uri and compute == "libvirt" else {}
        self.compute = registry.compute_driver(compute, state, **compute_options)
        network = network or registry.DEFAULT_NETWORK_FOR[compute]
        options: dict[str, Any] = {}
        if network == "ovs":
            options = {k: v for k, v in (("bridge", bridge), ("uplink", uplink)) if v}
        self.network = registry.network_driver(network, state, **options)
        self._fetcher = ImageFetcher(identity, source_address, backoff)
        self.images = ImageCache(state / "images", self._fetcher)
        self.stager = staging.Stager(state, identity.ca, self._fetcher)  # releases (staging.py)
        self.restart_requested = False  # stop, then run the selected release (cli/daemons.py)
        self.release = __version__  # what its hello says (the simulator's agents change it)
        self.pci_devices = pci_devices
        self.applier = Applier(self.compute, self.network, state, self.images, pci_devices)
        self.resync_interval = resync_interval
        self.fence = fencing.Fence(state)  # cut off too long: stop recoverable VNFs
        self.stopping = asyncio.Event()
        self.connected = asyncio.Event()
        self._session: connection.Session | None = None
        self._last_report: schemas.ObservedPart | None = None
        self._alarms: dict[str, str] = {}
        self._apply_lock = asyncio.Lock()
        self._closed_at_hello = 0  # consecutive connections closed before a welcome
        self._renewable = False  # the controller said it signs renewals (an N-1 one does not)
        self.renewer = renewing.Renewer(
            identity,
            lambda: self._session if self._renewable else None,
            self._set_alarm,
            self._credentials_renewed,
            clock or renewing.utcnow,
            renew_check,
        )

    async def run(self) -> None:
        """Run until ``stopping`` is set; CredentialsRefused ends it (enroll again)."""
        await asyncio.to_thread(finish_renewal, self.identity)  # one a crash cut short
        await asyncio.to_thread(tls_files.ensure, self.identity)  # after a re-enrollment too
        await self._fence_if_due()  # back after a long outage: no stale copy is reported
        resync = asyncio.create_task(self._resync_forever(), name="resync")
        renew = asyncio.create_task(self.renewer.run_forever(), name="renew")
        fence = asyncio.create_task(self._fence_forever(), name="fence")
        try:
            await self._connect_forever()
        finally:
            resync.cancel()
            renew.cancel()
            fence.cancel()
            await asyncio.gather(resync, renew, fence, return_exceptions=True)
            await self.applier.close()
            await self.images.close()
            await self.compute.close()
            await self.network.close()

    # controller session ------------------------------------------------------------------
    async def _connect_forever(self) -> None:
        backoff = connection.Backoff(*self.backoff)
        while not self.stopping.is_set():
            delay: float | None = None
            try:
                await self._one_session(backoff)
            except connection.CredentialsRefused:
                raise
            except connection.ClosedAtHello as exc:
                self._closed_at_hello += 1
                if self._closed_at_hello >= connection.CLOSES_BEFORE_REFUSED:
                    raise connection.CredentialsRefused(str(exc)) from exc
                log.warning("%s (attempt %d)", exc, self._closed_at_hello)
            except connection.RetryLater as exc:
                self._closed_at_hello = 0
                delay = exc.delay
            except (OSError, TimeoutError, asyncio.IncompleteReadError, EdgecloudError) as exc:
                log.warning(
                    "connection to the controller at %s lost: %s",
                    self.identity.controller,
                    exc or type(exc).__name__,
                )
            self.connected.clear()
            stop = asyncio.ensure_future(self.stopping.wait())
            sleep = asyncio.ensure_future(backoff.wait() if delay is None else asyncio.sleep(delay))
            await asyncio.wait({stop, sleep}, return_when=asyncio.FIRST_COMPLETED)
            for task in (stop, sleep):
                task.cancel()
            await asyncio.gather(stop, sleep, return_exceptions=True)

    async def _one_session(self, backoff: connection.Backoff) -> None:
        if self._tls is None:
            self._tls = connection.agent_context(self.identity)
        reader, writer = await connection.connect(
            self.identity, self.source_address, self._tls, home=self.address
        )
        contact = fencing.ContactReader(reader, self.fence.heard, armed=False)
        session = connection.Session(self, cast(asyncio.StreamReader, contact), writer)
        try:
            await self._fence_if_due()  # a fence due is done before the hello reports
            facts = await self._facts()
            observed = await self.applier.observe()
            try:
                welcome = await connection.hello(
                    session,
                    self.identity,
                    self.applier.applied_version,
                    facts,
                    schemas.wire(observed),
                    self.release,
                )
            except connection.RetryLater:
                connection.remember_session(writer, self._tls)  # the retry resumes TLS
                raise
            contact.armed = True  # a session from here on: its frames are contact
            self.fence.heard()  # the welcome
            self._last_report = observed
            self._closed_at_hello = 0
            self._renewable = welcome.renew
            self.fence.configure(welcome.fence_after)
            connection.remember_session(writer, self._tls)
            backoff.reset()
            self._session = session
            self.connected.set()
            log.info(
                "connected to the controller (release %s, protocol %d) as %s at release %s "
                "(in sync: %s)",
                welcome.release,
                session.protocol,
                self.identity.host,
                self.release,
                welcome.in_sync,
            )
            for alarm_id, reason in self._alarms.items():
                await session.send(
                    messages.make("alarm", action="raise", alarm_id=alarm_id, reason=reason)
                )
            run = asyncio.ensure_future(session.run(welcome.heartbeat_interval))
            stop = asyncio.ensure_future(self.stopping.wait())
            await asyncio.wait({run, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if not run.done():
                run.cancel()
            await asyncio.gather(stop, return_exceptions=True)
            results = await asyncio.gather(run, return_exceptions=True)
            if isinstance(results[0], BaseException) and not isinstance(
                results[0], asyncio.CancelledError
            ):
                raise results[0]
        finally:
            self._session = None
            await connection.close(writer)

    async def _facts(self) -> dict[str, Any]:
        facts = await self.compute.fingerprint()
        return {
            "vcpus": facts.vcpus,
            "memory_mib": facts.memory_mib,
            "disk_gib": facts.disk_gib,
            "hypervisor": facts.hypervisor,
            "details": {
                **facts.details,
                "compute_driver": self.compute.name,
                "network_driver": self.network.name,
            },
            "pci_devices": [d.as_fact() for d in self.pci_devices],
            "fences": True,  # this agent fences itself when cut off (fencing.py)
            **({"address": self.address} if self.address else {}),
        }

    # what the session asks of the agent -----------------------------------------------------
    async def steer(self, version: int, flows: Mapping[str, Any] | None) -> None:
        """A chain path switch (a snapshot's steering at ``version``, or a ``steer``
        message's) now, before (and besides) applying the rest of it: the session calls this
        as each arrives, in a task of its own. Its errors are ``apply``'s to report (which
        steers the same snapshot again first: a no-op if done)."""
        try:
            await self.applier.steer(version, flows)
        except Exception:  # not lost in a task nobody awaits; apply meets it again
            log.exception("chain flows of version %s", version)

    async def steer_chain(
        self, version: int, before: dict[str, Any], after: dict[str, Any]
    ) -> None:
        """One chain's flows before -> after, ahead of the snapshot of ``version`` (the
        session calls this as a ``steer_chain`` arrives, in a task of its own)."""
        try:
            await self.applier.steer_chain(version, before, after)
        except Exception:  # not lost in a task nobody awaits; the snapshot follows
            log.exception("chain flows of version %s", version)

    async def apply(self, state: DesiredState) -> list[str]:
        # a chain path switch first, without waiting for a resync
        await self.applier.steer(state.version, state.steering)
        async with self._apply_lock:
            self.fence.lift()
            errors = await self.applier.apply(state)
        await self._set_alarm(fencing.HOST_FENCED, None)
        return errors

    async def handle_request(self, op: str, args: dict[str, Any]) -> Any:
        if op == "console":
            return await self.applier.console(
                str(args.get("instance_id")), int(args.get("max_bytes", 65536))
            )
        if op == "ping":
            return "pong"
        if op == "migrate":  # the controller moves a VNF off this node (reconcile/migrations.py)
            return await self.applier.migrate_out(
                args, tls_files.libvirt_dir(self.identity.state_dir)
            )
        if op == "renew":  # a CA rotation began: renew now (renewing.py)
            await self.renewer.renew_now()
            return "renewed"
        if op == "steering":  # when the last chain path change was committed (chains.py)
            return self.applier.last_steer
        if op == "stage":  # a signed release, fetched and unpacked beside this one
            return {"release": await self.stager.stage(args)}
        if op == "restart":  # run the staged release (or, None, the installed one)
            return self._restart_into(args.get("release"))
        raise ProtocolError(f"unknown request {op!r}")

    def _restart_into(self, release: Any) -> dict[str, Any]:
        """Select ``release`` and stop, the answer sent first: the command that runs this
        agent executes the selected release in this same process (cli/daemons.py); its VMs
        run on, and it adopts them at its hello."""
        if release is not None and not isinstance(release, str):
            raise ProtocolError("restart needs a release or null")
        staging.select(self.identity.state_dir, release)
        self.restart_requested = True
        asyncio.get_running_loop().call_later(RESTART_AFTER, self.stopping.set)
        log.warning("restarting into release %s", release or "installed")
        return {"release": release}

    async def report(self, force: bool = False) -> None:
        """Send the observed state if it changed since the last report (nothing while the
        hypervisor cannot be asked: the resync loop raises the host alarm for that)."""
        try:
            observed = await self.applier.observe()
        except DriverError as exc:
            log.warning("cannot observe this node's domains: %s", exc)
            return
        if self._session is not None and (force or observed != self._last_report):
            await self._session.send(messages.make("observed", **schemas.wire(observed)))
            self._last_report = observed

    async def _credentials_renewed(self) -> None:
        """New key and certificate on disk: the next connections (and hypervisors) use them."""
        self._tls = None
        self._fetcher.forget_credentials()
        await asyncio.to_thread(tls_files.ensure, self.identity)

    # periodic work ------------------------------------------------------------------------
    async def _fence_forever(self) -> None:
        while True:
            await asyncio.sleep(self.fence.period())
            try:
                await self._fence_if_due()
            except (DriverError, OSError) as exc:
                log.warning("fencing failed (tried again): %s", exc)

    async def _fence_if_due(self) -> None:
        """Cut off from the controllers for longer than they wait before recovering this
        node's VNFs elsewhere: stop the recoverable ones now (fencing.py)."""
        if not self.fence.due():
            return
        async with self._apply_lock:
            if not self.fence.due():  # the other caller (periodic or pre-hello) fenced first
                return
            silent = self.fence.silent_for()
            ids = fencing.recoverable(self.applier.spec)
            await self.applier.fence(ids)
            self.fence.done(ids)
        log.warning(
            "no word from the controllers for %.1f s: stopped %d recoverable VNFs", silent, len(ids)
        )
        await self._set_alarm(
            fencing.HOST_FENCED,
            f"no word from the controllers for {silent:.1f} s: stopped {len(ids)} recoverable "
            "VNFs so that no copy runs twice; they start again if the controllers still place "
            "them here",
        )

    async def _resync_forever(self) -> None:
        while True:
            try:
                async with self._apply_lock:
                    completed = await self.applier.retry()
                await self._set_alarm(HOST_DRIVER_UNAVAILABLE, None)
                if completed is not None and self._session is not None:
                    # a nacked version applied at last: ack it (only pushes were acked before)
                    await self._session.send(messages.make("ack", version=completed))
                await self.report()
            except DriverError as exc:
                await self._set_alarm(HOST_DRIVER_UNAVAILABLE, str(exc))
            except (OSError, EdgecloudError) as exc:
                log.warning("resync failed: %s", exc)
            await self._set_alarm(HOST_DISK_FULL, _disk_full(self.identity.state_dir))
            await asyncio.sleep(self.resync_interval)

    async def _set_alarm(self, alarm_id: str, reason: str | None) -> None:
        """Raise (reason given) or clear a host alarm, telling the controller on change."""
        if reason == self._alarms.get(alarm_id):
            return
        if reason is None:
            self._alarms.pop(alarm_id, None)
        else:
            self._alarms[alarm_id] = reason
        if self._session is not None:
            action = "clear" if reason is None else "raise"
            with contextlib.suppress(OSError, ConnectionError):
                await self._session.send(
                    messages.make("alarm", action=action, alarm_id=alarm_id, reason=reason or "")
                )


def _disk_full(path: Path) -> str | None:
    usage = shutil.disk_usage(path)
    used = 1 - usage.free / usage.total if usage.total else 0.0
    if used < DISK_FULL_RATIO:
        return None
    return f"state filesystem of {os.fspath(path)} is {used:.0%} full"
