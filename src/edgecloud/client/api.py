"""The Python SDK for the edgecloud REST API (/v1): one method per operation, plain JSON back.

`Client` wraps a synchronous httpx.Client: bearer token, TLS verified against the site CA of
a `ClientConfig` (client/config.py). Methods return the decoded JSON as dicts and lists,
field for field what api/schemas.py documents (this module does not import it). Every
failure leaves as a ClientError subclass from client/errors.py with a one-sentence message.
The CLI (edgecloud.cli) is its main user; tests pass an httpx.MockTransport as `transport`
and a no-op `sleep` for the wait_for_* helpers.

A config naming several controllers (`ClientConfig.urls`) is followed: a request that cannot
connect (refused, or no answer to the connect: nothing was sent, so any request may go again)
goes to the next controller at once; after a round where none answered the client waits
(jittered backoff from `FOLLOW_BACKOFF`) and tries `FOLLOW_ROUNDS` rounds in all. The one
that answered is asked first next time. Every controller serves the API, so the client does
not look for the leader.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import ssl
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from edgecloud import __version__
from edgecloud.client import keys
from edgecloud.client.config import ClientConfig
from edgecloud.client.errors import (
    ApiError,
    ControllerUnreachable,
    WaitTimedOut,
    api_error,
    transport_error,
)
from edgecloud.errors import ClientError

Json = dict[str, Any]
OnProgress = Callable[[Json], None]
UPGRADE_RESTS = ("activated", "completed", "failed", "aborted")  # nothing moves until asked
UPLOAD_CHUNK = 1 << 20
UPLOAD_CHECK_SECONDS = 600.0  # after the last byte the controller checks and stores the image
FOLLOW_ROUNDS = 3  # rounds over a config's controllers before giving up (several only)
FOLLOW_BACKOFF = 0.25  # seconds; doubled each round, full jitter


class Client:
    """A connection to one site's controller. Use as a context manager, or call close()."""

    def __init__(
        self,
        config: ClientConfig,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self._clock = clock
        self._sleep = sleep
        self._bases = list(config.every_url)  # the one that answered last first
        self._http = httpx.Client(
            base_url=config.url,
            headers={
                "Authorization": f"Bearer {config.token}",
                "User-Agent": f"edgecloud/{__version__}",
            },
            timeout=timeout,
            transport=transport,
            verify=True if transport else _site_tls(config.ca_cert),
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # site ------------------------------------------------------------------------------------
    def health(self) -> Json:
        return self._call("GET", "/v1/health")

    def wait_for_health(self, timeout: float, interval: float = 0.5) -> Json:
        """Poll /v1/health until the controller answers; ControllerUnreachable at the deadline."""
        deadline = self._clock() + timeout
        while True:
            try:
                return self.health()
            except ControllerUnreachable:
                if self._clock() >= deadline:
                    raise
            self._pause(deadline, interval)

    def controllers(self) -> Json:
        """The site's controllers: {"leader": {id, epoch, api_url, ...}, "controllers": [...]}."""
        return self._call("GET", "/v1/controllers")

    def upgrade_check(self, to: str, reboot: bool = False, max_parallel: int = 1) -> Json:
        """Whether the site can upgrade to release ``to``, and in what order:
        {"result", "checks": [...], "plan": {"controllers", "batches"}, ...}."""
        params = {
            "to": to,
            "reboot": "true" if reboot else "false",
            "max_parallel": str(max_parallel),
        }
        return self._call("GET", "/v1/upgrade/check", params=params)

    def start_upgrade(self, to: str, max_parallel: int = 1, stop_on_alarm: bool = False) -> Json:
        """Start an upgrade to release ``to`` (or resume a failed one to it)."""
        body = {"to": to, "max_parallel": max_parallel, "stop_on_alarm": stop_on_alarm}
        return self._call("POST", "/v1/upgrade", body)

    def get_upgrade(self) -> Json:
        """The newest upgrade with its steps."""
        return self._call("GET", "/v1/upgrade")

    def abort_upgrade(self) -> Json:
        return self._call("POST", "/v1/upgrade/abort")

    def complete_upgrade(self) -> Json:
        return self._call("POST", "/v1/upgrade/complete")

    def wait_for_upgrade(
        self,
        timeout: float,
        on_progress: OnProgress | None = None,
        interval: float = 1.0,
    ) -> Json:
        """Poll until the upgrade rests (activated, completed, failed, aborted); return it.
        WaitTimedOut after `timeout` seconds. A controller restarting into the release does
        not answer for a moment: that is waited through."""
        deadline = self._clock() + timeout
        while True:
            try:
                upgrade = self.get_upgrade()
            except ControllerUnreachable:
                if self._clock() >= deadline:
                    raise
            else:
                if on_progress:
                    on_progress(upgrade)
                if upgrade.get("state") in UPGRADE_RESTS:
                    return upgrade
                if self._clock() >= deadline:
                    raise WaitTimedOut(
                        f"the upgrade to {upgrade.get('to_release')} is still "
                        f"{upgrade.get('state')} after {timeout:g} s: see `edgecloud upgrade show`"
                    )
            self._pause(deadline, interval)

    # hosts -----------------------------------------------------------------------------------
    def list_hosts(self) -> list[Json]:
        return self._call("GET", "/v1/hosts")

    def get_host(self, name: str) -> Json:
        return self._call("GET", _path("hosts", name))

    def add_host(self, name: str) -> Json:
        """Create the host; the answer is {"host", "join_token", "expires_at"}."""
        return self._call("POST", "/v1/hosts", {"name": name})

    def update_host(self, name: str, state: str) -> Json:
        return self._call("PATCH", _path("hosts", name), {"state": state})

    def lock_host(self, name: str) -> Json:
        """Lock the host: no new VNFs, its VNFs migrated away (progress in ``maintenance``)."""
        return self._call("POST", _path("hosts", name, "lock"))

    def unlock_host(self, name: str) -> Json:
        return self._call("POST", _path("hosts", name, "unlock"))

    def wait_for_lock(
        self,
        name: str,
        timeout: float,
        on_progress: OnProgress | None = None,
        interval: float = 1.0,
    ) -> Json:
        """Poll until the host's evacuation has ended (done, failed or cancelled); return the
        host. WaitTimedOut after `timeout` seconds; `on_progress(host)` sees every poll."""
        deadline = self._clock() + timeout
        while True:
            host = self.get_host(name)
            if on_progress:
                on_progress(host)
            if (host.get("maintenance") or {}).get("status") != "evacuating":
                return host
            if self._clock() >= deadline:
                raise WaitTimedOut(
                    f"host {name} is still being emptied after {timeout:g} s: "
                    f"see `edgecloud host show {name}`"
                )
            self._pause(deadline, interval)

    def delete_host(self, name: str) -> None:
        self._call("DELETE", _path("hosts", name))

    def new_join_token(self, name: str) -> Json:
        """A new one-time join token for re-enrolling the host (same shape as add_host)."""
        return self._call("POST", _path("hosts", name, "join-token"))

    # networks --------------------------------------------------------------------------------
    def create_network(
        self,
        name: str,
        kind: str = "vlan",
        segmentation_id: int | None = None,
        cidr: str | None = None,
    ) -> Json:
        body = _body(name=name, kind=kind, segmentation_id=segmentation_id, cidr=cidr)
        return self._call("POST", "/v1/networks", body)

    def list_networks(self) -> list[Json]:
        return self._call("GET", "/v1/networks")

    def get_network(self, name: str) -> Json:
        return self._call("GET", _path("networks", name))

    def delete_network(self, name: str) -> None:
        self._call("DELETE", _path("networks", name))

    # subnets ---------------------------------------------------------------------------------
    def create_subnet(
        self,
        name: str,
        network: str,
        cidr: str,
        *,
        ip_version: int = 4,
        gateway_ip: str | None = "auto",
        allocation_pools: Sequence[Mapping[str, str]] | None = None,
        dns_nameservers: Sequence[str] = (),
        host_routes: Sequence[Mapping[str, str]] = (),
        enable_dhcp: bool = True,
    ) -> Json:
        """A subnet of `network`; gateway_ip "auto" is the first usable address, None none."""
        body: Json = {
            "name": name,
            "network": network,
            "cidr": cidr,
            "ip_version": ip_version,
            "dns_nameservers": list(dns_nameservers),
            "host_routes": [dict(r) for r in host_routes],
            "enable_dhcp": enable_dhcp,
        }
        if gateway_ip != "auto":
            body["gateway_ip"] = gateway_ip
        if allocation_pools is not None:
            body["allocation_pools"] = [dict(p) for p in allocation_pools]
        return self._call("POST", "/v1/subnets", body)

    def list_subnets(self, network: str | None = None) -> list[Json]:
        params = {} if network is None else {"network": network}
        return self._call("GET", "/v1/subnets", params=params)

    def get_subnet(self, name: str) -> Json:
        return self._call("GET", _path("subnets", name))

    def delete_subnet(self, name: str) -> None:
        self._call("DELETE", _path("subnets", name))

    # key pairs -------------------------------------------------------------------------------
    def import_keypair(self, name: str, public_key: str) -> Json:
        return self._call("POST", "/v1/keypairs", {"name": name, "public_key": public_key})

    def create_keypair(self, name: str, algorithm: str = "ed25519") -> Json:
        """Generate a key pair here and import its public half; the answer carries the
        private key (OpenSSH PEM) as "private_key", which nothing else ever sees again."""
        private_key, public_key = keys.generate(algorithm)
        created = self.import_keypair(name, public_key)
        return {**created, "private_key": private_key}

    def list_keypairs(self) -> list[Json]:
        return self._call("GET", "/v1/keypairs")

    def get_keypair(self, name: str) -> Json:
        return self._call("GET", _path("keypairs", name))

    def delete_keypair(self, name: str) -> None:
        self._call("DELETE", _path("keypairs", name))

    # flavors ---------------------------------------------------------------------------------
    def create_flavor(
        self, name: str, vcpus: int, memory_mib: int, disk_gib: int | None = None
    ) -> Json:
        body = _body(name=name, vcpus=vcpus, memory_mib=memory_mib, disk_gib=disk_gib)
        return self._call("POST", "/v1/flavors", body)

    def list_flavors(self) -> list[Json]:
        return self._call("GET", "/v1/flavors")

    def get_flavor(self, name: str) -> Json:
        return self._call("GET", _path("flavors", name))

    def delete_flavor(self, name: str) -> None:
        self._call("DELETE", _path("flavors", name))

    # images ----------------------------------------------------------------------------------
    def upload_image(
        self,
        name: str,
        path: str | os.PathLike[str],
        disk_format: str,
        *,
        ramdisk: str | None = None,
        cmdline: str | None = None,
        on_progress: Callable[[str, int, int], None] | None = None,
    ) -> Json:
        """Upload the file at ``path`` as image ``name``, streamed (memory stays bounded).

        The file's sha256 is computed first and sent along, so the controller refuses bytes
        damaged on the way. ``on_progress(phase, done, total)`` is called as bytes are hashed
        ("checksum") and sent ("upload"). A kernel may name its ``ramdisk`` image and a
        ``cmdline``."""
        params = _body(disk_format=disk_format, ramdisk=ramdisk, cmdline=cmdline)
        return self._upload_file(
            "PUT", _path("images", name), path, params, "X-Image-Sha256", on_progress
        )

    def _upload_file(
        self,
        method: str,
        url: str,
        path: str | os.PathLike[str],
        params: Mapping[str, Any],
        digest_header: str,
        on_progress: Callable[[str, int, int], None] | None,
    ) -> Json:
        """Stream the file at ``path`` as the body, its sha256 (computed first) in
        ``digest_header``, so the controller refuses bytes damaged on the way."""
        try:
            size = os.path.getsize(path)
            digest = _file_sha256(
                path, lambda done: on_progress and on_progress("checksum", done, size)
            )
        except OSError as exc:
            raise ClientError(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from exc

        def chunks() -> Iterator[bytes]:
            sent = 0
            with open(path, "rb") as f:
                while data := f.read(UPLOAD_CHUNK):
                    sent += len(data)
                    yield data
                    if on_progress:
                        on_progress("upload", sent, size)

        headers = {
            "Content-Length": str(size),
            "Content-Type": "application/octet-stream",
            digest_header: digest,
        }
        return self._call(
            method,
            url,
            params=params,
            content=chunks(),
            headers=headers,
            timeout=httpx.Timeout(self._http.timeout.connect, read=UPLOAD_CHECK_SECONDS),
        )

    def list_images(self) -> list[Json]:
        return self._call("GET", "/v1/images")

    def get_image(self, name: str) -> Json:
        return self._call("GET", _path("images", name))

    def delete_image(self, name: str) -> None:
        self._call("DELETE", _path("images", name))

    # software packages -----------------------------------------------------------------------
    def upload_software(
        self,
        path: str | os.PathLike[str],
        *,
        reboot_required: bool = False,
        on_progress: Callable[[str, int, int], None] | None = None,
    ) -> Json:
        """Upload the wheel at ``path`` as a software package (a release or patch of
        edgecloud), streamed; the controller reads, keeps and signs it."""
        params = {
            "filename": os.path.basename(os.fspath(path)),
            "reboot_required": "true" if reboot_required else "false",
        }
        return self._upload_file(
            "POST", "/v1/software", path, params, "X-Package-Sha256", on_progress
        )

    def list_software(self) -> list[Json]:
        return self._call("GET", "/v1/software")

    def get_software(self, release: str) -> Json:
        return self._call("GET", _path("software", release))

    def delete_software(self, release: str) -> None:
        self._call("DELETE", _path("software", release))

    # VNFs ------------------------------------------------------------------------------------
    def create_vnf(
        self,
        name: str,
        image: str,
        flavor: str,
        nics: Sequence[Mapping[str, Any]] = (),
        anti_affinity_group: str | None = None,
        desired_state: str | None = None,
        *,
        key_name: str | None = None,
        user_data: bytes | None = None,
        hostname: str | None = None,
        recovery_policy: str | None = None,
    ) -> Json:
        """Ask for a VNF; `nics` keep their order (vNIC i is nics[i]). Status starts scheduling.
        `user_data` is sent base64-encoded (as Nova's API wants it)."""
        body = _body(
            name=name,
            image=image,
            flavor=flavor,
            nics=[dict(nic) for nic in nics],
            anti_affinity_group=anti_affinity_group,
            desired_state=desired_state,
            key_name=key_name,
            user_data=None if user_data is None else base64.b64encode(user_data).decode(),
            hostname=hostname,
            recovery_policy=recovery_policy,
        )
        return self._call("POST", "/v1/vnfs", body)

    def list_vnfs(self) -> list[Json]:
        return self._call("GET", "/v1/vnfs")

    def get_vnf(self, name: str) -> Json:
        return self._call("GET", _path("vnfs", name))

    def delete_vnf(self, name: str) -> Json:
        """Start deleting; the answer has status "deleting" (see wait_for_vnf_gone)."""
        return self._call("DELETE", _path("vnfs", name))

    def vnf_action(self, name: str, action: str) -> Json:
        """action is "start", "stop" or "reboot"; the answer is the VNF (HTTP 202)."""
        return self._call("POST", _path("vnfs", name, "actions"), {"action": action})

    def attach_vnic(self, name: str, nic: Mapping[str, Any], position: int | None = None) -> Json:
        """Hot-add a vNIC at a declared position (default: last); the answer is the VNF."""
        return self._call("POST", _path("vnfs", name, "nics"), _body(**nic, position=position))

    def detach_vnic(self, name: str, position: int) -> Json:
        """Hot-remove the vNIC at ``position``; the answer is the VNF."""
        return self._call("DELETE", _path("vnfs", name, "nics", str(position)))

    def vnf_console(self, name: str) -> Json:
        """The serial console output so far: {"name", "host", "output"}."""
        return self._call("GET", _path("vnfs", name, "console"))

    def wait_for_vnf(
        self,
        name: str,
        statuses: Collection[str],
        timeout: float,
        on_progress: OnProgress | None = None,
        interval: float = 1.0,
    ) -> Json:
        """Poll until the VNF's status is one of `statuses`; return it. WaitTimedOut after
        `timeout` seconds; `on_progress(vnf)` sees every poll."""
        deadline = self._clock() + timeout
        while True:
            vnf = self.get_vnf(name)
            if on_progress:
                on_progress(vnf)
            if vnf.get("status") in statuses:
                return vnf
            if self._clock() >= deadline:
                raise WaitTimedOut(
                    f"vnf {name} is still {vnf.get('status')} after {timeout:g} s: "
                    f"see `edgecloud vnf show {name}`"
                )
            self._pause(deadline, interval)

    def wait_for_vnf_gone(
        self,
        name: str,
        timeout: float,
        on_progress: OnProgress | None = None,
        interval: float = 1.0,
    ) -> None:
        """Poll until GET /v1/vnfs/NAME answers 404; WaitTimedOut after `timeout` seconds."""
        try:
            self.wait_for_vnf(name, (), timeout, on_progress, interval)
        except ApiError as exc:
            if exc.status != 404:
                raise
        except WaitTimedOut:
            raise WaitTimedOut(f"vnf {name} still exists after {timeout:g} s") from None

    # stacks ----------------------------------------------------------------------------------
    def create_stack(
        self,
        name: str,
        template: str,
        parameters: Mapping[str, Any] | None = None,
        files: Mapping[str, str] | None = None,
        environment_files: list[str] | None = None,
    ) -> Json:
        """Create a stack from a HOT template (YAML text); the answer is the stack (HTTP 201).

        ``files``: nested templates, get_file files and environment files by name (relative
        to the template's folder); ``environment_files``: the names of environments in order.
        """
        body = {"name": name, "template": template, "parameters": dict(parameters or {})}
        if files or environment_files:  # only when used: older controllers refuse the fields
            body.update(files=dict(files or {}), environment_files=list(environment_files or []))
        return self._call("POST", "/v1/stacks", body)

    def list_stacks(self) -> list[Json]:
        return self._call("GET", "/v1/stacks")

    def get_stack(self, name: str) -> Json:
        return self._call("GET", _path("stacks", name))

    def update_stack(
        self,
        name: str,
        template: str,
        parameters: Mapping[str, Any] | None = None,
        files: Mapping[str, str] | None = None,
        environment_files: list[str] | None = None,
    ) -> Json:
        """Move the stack to a new template, parameters and files (HTTP 202)."""
        body = {"template": template, "parameters": dict(parameters or {})}
        if files or environment_files:  # only when used: older controllers refuse the fields
            body.update(files=dict(files or {}), environment_files=list(environment_files or []))
        return self._call("PUT", _path("stacks", name), body)

    def delete_stack(self, name: str) -> Json:
        """Start deleting the stack and its resources (see wait_for_stack_gone)."""
        return self._call("DELETE", _path("stacks", name))

    def wait_for_stack_gone(
        self,
        name: str,
        timeout: float,
        on_progress: OnProgress | None = None,
        interval: float = 1.0,
    ) -> None:
        """Poll until GET /v1/stacks/NAME answers 404; WaitTimedOut after `timeout` seconds."""
        self._until_gone("stack", self.get_stack, name, timeout, on_progress, interval)

    # service chains --------------------------------------------------------------------------
    def create_chain(
        self,
        name: str,
        customer: str,
        host: str,
        ingress_port: str,
        egress_port: str,
        services: Sequence[Mapping[str, Any]] = (),
    ) -> Json:
        """Ask for a chain; `services` ({name, template, parameters, health_timeout?}) in path
        order. The answer (HTTP 202) carries the operation; follow it with wait_for_chain."""
        body = {
            "name": name,
            "customer": customer,
            "host": host,
            "ingress_port": ingress_port,
            "egress_port": egress_port,
            "services": [_body(**service) for service in services],
        }
        return self._call("POST", "/v1/chains", body)

    def list_chains(self) -> list[Json]:
        return self._call("GET", "/v1/chains")

    def get_chain(self, name: str) -> Json:
        return self._call("GET", _path("chains", name))

    def chain_insert(
        self,
        name: str,
        service: Mapping[str, Any],
        before: str | None = None,
        after: str | None = None,
        at: str | None = None,
    ) -> Json:
        """Insert a service before/after another, or at "first"/"last" (default: last)."""
        body = _body(**service, before=before, after=after, at=at)
        return self._call("POST", _path("chains", name, "services"), body)

    def chain_replace(self, name: str, old: str, service: Mapping[str, Any]) -> Json:
        """Replace service `old` by a new one in the same place, make-before-break."""
        return self._call(
            "PUT", _path("chains", name, "services", quote(old, safe="")), _body(**service)
        )

    def chain_remove(self, name: str, service: str) -> Json:
        return self._call("DELETE", _path("chains", name, "services", quote(service, safe="")))

    def chain_reorder(self, name: str, order: Sequence[str]) -> Json:
        """Put the chain's services in `order` (every current service, once)."""
        return self._call("POST", _path("chains", name, "order"), {"services": list(order)})

    def delete_chain(self, name: str) -> Json:
        """Start deleting the chain and its services' stacks (see wait_for_chain_gone)."""
        return self._call("DELETE", _path("chains", name))

    def wait_for_chain(
        self,
        name: str,
        timeout: float,
        on_progress: OnProgress | None = None,
        interval: float = 1.0,
        *,
        since: Json | None = None,
    ) -> Json:
        """Poll until the chain has no operation and its host applied the path; return it.

        `since` is the answer to the change request (the chain before its operation ran):
        when last_error and last_result differ from it and the result failed, the operation
        failed and this raises a ClientError with last_error (the old path was kept). Without
        `since`, a failed most recent operation raises. WaitTimedOut after `timeout` seconds;
        `on_progress(chain)` sees every poll.
        """
        deadline = self._clock() + timeout
        while True:
            chain = self.get_chain(name)
            if on_progress:
                on_progress(chain)
            if chain.get("operation") is None and chain.get("path_applied"):
                failure = _chain_failure(chain, since)
                if failure:
                    raise ClientError(f"chain {name}: {failure}")
                return chain
            if self._clock() >= deadline:
                phase = (chain.get("operation") or {}).get("phase") or "waiting for its host"
                raise WaitTimedOut(
                    f"chain {name} is still changing ({phase}) after {timeout:g} s: "
                    f"see `edgecloud chain show {name}`"
                )
            self._pause(deadline, interval)

    def wait_for_chain_gone(
        self,
        name: str,
        timeout: float,
        on_progress: OnProgress | None = None,
        interval: float = 1.0,
    ) -> None:
        """Poll until GET /v1/chains/NAME answers 404; WaitTimedOut after `timeout` seconds."""
        self._until_gone("chain", self.get_chain, name, timeout, on_progress, interval)

    # migrations ------------------------------------------------------------------------------
    def migrate_vnf(
        self,
        name: str,
        host: str | None = None,
        cold: bool = False,
        memory_copy: str | None = None,
        max_downtime_ms: int | None = None,
    ) -> Json:
        """Start moving VNF `name` (to `host`, or where the scheduler chooses; `cold`: stop it
        and start it there); the answer is the migration (HTTP 202), see wait_for_migration."""
        return self._call(
            "POST",
            _path("vnfs", name, "migrate"),
            _body(host=host, cold=cold, memory_copy=memory_copy, max_downtime_ms=max_downtime_ms),
        )

    def list_migrations(self, limit: int | None = None) -> list[Json]:
        params = {} if limit is None else {"limit": str(limit)}
        return self._call("GET", "/v1/migrations", params=params)

    def get_migration(self, migration_id: str) -> Json:
        return self._call("GET", _path("migrations", migration_id))

    def wait_for_migration(
        self,
        migration_id: str,
        timeout: float,
        on_progress: OnProgress | None = None,
        interval: float = 0.5,
    ) -> Json:
        """Poll until the migration is done or failed; return it (a failed one is returned,
        not raised: its "error" says why). WaitTimedOut after `timeout` seconds."""
        deadline = self._clock() + timeout
        while True:
            migration = self.get_migration(migration_id)
            if on_progress:
                on_progress(migration)
            if migration.get("status") in ("done", "failed"):
                return migration
            if self._clock() >= deadline:
                raise WaitTimedOut(
                    f"migration {migration_id} is still {migration.get('status')} after "
                    f"{timeout:g} s: see `edgecloud migration list`"
                )
            self._pause(deadline, interval)

    # fault management ------------------------------------------------------------------------
    def list_alarms(self, all: bool = False) -> list[Json]:
        """Active alarms, or with all=True the cleared ones too."""
        return self._call("GET", "/v1/alarms", params={"all": "true" if all else "false"})

    def get_alarm(self, alarm_id: str) -> Json:
        return self._call("GET", _path("alarms", alarm_id))

    def list_events(self, limit: int | None = None) -> list[Json]:
        params = {} if limit is None else {"limit": str(limit)}
        return self._call("GET", "/v1/events", params=params)

    # tokens and audit ------------------------------------------------------------------------
    def create_token(
        self,
        name: str,
        role: str,
        customer: str | None = None,
        expires_in: int | None = None,
    ) -> Json:
        """A new API token; its ``secret`` is in this answer only."""
        body = _body(name=name, role=role, customer=customer, expires_in=expires_in)
        return self._call("POST", "/v1/tokens", body)

    def list_tokens(self) -> list[Json]:
        return self._call("GET", "/v1/tokens")

    def get_token(self, name: str) -> Json:
        return self._call("GET", _path("tokens", name))

    def rotate_token(self, name: str, expires_in: int | None = None) -> Json:
        """A new secret for the same token; the old one is refused from now on."""
        return self._call("POST", _path("tokens", name, "rotate"), _body(expires_in=expires_in))

    def revoke_token(self, name: str) -> Json:
        return self._call("DELETE", _path("tokens", name))

    def list_audit(
        self,
        since: str | None = None,
        actor: str | None = None,
        target: str | None = None,
        limit: int | None = None,
    ) -> list[Json]:
        """Audit records, newest first; ``since``: an RFC 3339 date-time with a time zone."""
        params = _body(since=since, actor=actor, target=target, limit=limit)
        return self._call("GET", "/v1/audit", params={k: str(v) for k, v in params.items()})

    # plumbing --------------------------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        body: Json | None = None,
        params: Mapping[str, str] | httpx.QueryParams | None = None,
        *,
        content: Iterator[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> Any:
        """Send one request; return the decoded JSON (None for 204), or raise a ClientError."""
        response = self._send(
            lambda base: self._http.request(
                method,
                base.rstrip("/") + path,
                json=body,
                params=params,
                content=content,
                headers=headers,
                timeout=timeout or self._http.timeout,
            )
        )
        if response.is_error:
            raise api_error(response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ClientError(
                f"the controller at {self.config.url} answered {method} {path} with something "
                "that is not JSON"
            ) from None

    def _send(self, request: Callable[[str], httpx.Response]) -> httpx.Response:
        """``request(base_url)`` on the controllers in turn (see the module docstring)."""
        rounds = FOLLOW_ROUNDS if len(self._bases) > 1 else 1
        failure: tuple[httpx.TransportError, str] | None = None
        for round_ in range(rounds):
            if round_:
                self._sleep(random.uniform(0, FOLLOW_BACKOFF * 2**round_))
            for base in list(self._bases):
                try:
                    response = request(base)
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    failure = (exc, base)
                    continue
                except httpx.TransportError as exc:
                    raise transport_error(exc, base, self.config.ca_cert) from exc
                if base != self._bases[0]:
                    self._bases.remove(base)
                    self._bases.insert(0, base)
                return response
        assert failure is not None
        error, base = failure
        where = base if len(self._bases) == 1 else ", ".join(self._bases)
        raise transport_error(error, where, self.config.ca_cert) from error

    def _until_gone(
        self,
        kind: str,
        get: Callable[[str], Json],
        name: str,
        timeout: float,
        on_progress: OnProgress | None,
        interval: float,
    ) -> None:
        deadline = self._clock() + timeout
        while True:
            try:
                found = get(name)
            except ApiError as exc:
                if exc.status == 404:
                    return
                raise
            if on_progress:
                on_progress(found)
            if self._clock() >= deadline:
                raise WaitTimedOut(f"{kind} {name} still exists after {timeout:g} s")
            self._pause(deadline, interval)

    def _pause(self, deadline: float, interval: float) -> None:
        self._sleep(max(0.0, min(interval, deadline - self._clock())))


def _site_tls(ca_cert: str) -> ssl.SSLContext:
    """Trust exactly the site CA (or the system store when the config names none)."""
    try:
        return ssl.create_default_context(cafile=ca_cert or None)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror or str(exc)
        raise ClientError(f"cannot load the site CA certificate {ca_cert} ({reason})") from exc


def _file_sha256(path: str | os.PathLike[str], progress: Callable[[int], object]) -> str:
    digest, done = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while data := f.read(UPLOAD_CHUNK):
            digest.update(data)
            done += len(data)
            progress(done)
    return digest.hexdigest()


def _path(collection: str, name: str, *rest: str) -> str:
    return "/".join(["/v1", collection, quote(name, safe=""), *rest])


def _body(**fields: Any) -> Json:
    """A request body without the fields left unset, so the server's defaults apply."""
    return {key: value for key, value in fields.items() if value is not None}


def _chain_failure(chain: Json, since: Json | None) -> str | None:
    """last_error when the chain's finished operation failed and is not the one of `since`.

    The server clears last_error on success; on failure it sets last_error and a
    last_result with "failed" (and a "finished" time, so two equal failures differ).
    """
    error = chain.get("last_error")
    result = chain.get("last_result") or {}
    if not error or not result.get("failed"):
        return None
    if since is not None and (
        since.get("last_error"),
        since.get("last_result"),
    ) == (error, chain.get("last_result")):
        return None
    return str(error)
