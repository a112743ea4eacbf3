"""Certificate renewal, node side: a new key and certificate well before the old one expires.

As the kubelet does: once 2/3 of the certificate's life has passed (``RENEW_AT``) the agent
makes a new EC key, sends a CSR over its live session (``renew``, gateway/renewing.py) and,
when the site CA's certificate comes back, writes key, certificate and CA bundle atomically
(agent/identity.py ``save_renewed``). The session stays up; the next connection uses the new
certificate (the controller refuses the old one from then on). A renewal that fails (refused,
no answer) raises host alarm 200.031 and is tried again every ``CHECK_PERIOD`` seconds while
connected; with less than 1/6 of the life left (``WARN_LEFT``) alarm 200.030 says the
certificate expires soon. Alarms reach the controller over the session (runner.py resends
active ones after a reconnect). With the default 365-day certificates: renewal from day 243,
the expiry alarm from day 304, so a node offline for two months still renews when it returns.

The clock is injected (tests move it to 2/3 of the life without waiting a year).
Neighbours: runner.py (starts ``Renewer.run_forever``), connection.py (``Session.renew``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from edgecloud.agent import identity
from edgecloud.agent.connection import Session
from edgecloud.errors import EdgecloudError
from edgecloud.fm.catalogue import HOST_CERT_EXPIRING, HOST_CERT_RENEWAL_FAILED
from edgecloud.pki.identity import load_certificate, make_key_and_csr

log = logging.getLogger(__name__)
RENEW_AT = 2 / 3  # of the certificate's life
WARN_LEFT = 1 / 6  # of the life left: the expiry alarm
CHECK_PERIOD = 60.0
REPLY_TIMEOUT = 30.0

Clock = Callable[[], dt.datetime]
SetAlarm = Callable[[str, str | None], Awaitable[None]]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Lifetime:
    not_before: dt.datetime
    not_after: dt.datetime

    @property
    def renew_at(self) -> dt.datetime:
        return self.not_before + (self.not_after - self.not_before) * RENEW_AT

    @property
    def warn_at(self) -> dt.datetime:
        return self.not_after - (self.not_after - self.not_before) * WARN_LEFT


def lifetime(cert_pem: bytes) -> Lifetime:
    cert = load_certificate(cert_pem)
    return Lifetime(cert.not_valid_before_utc, cert.not_valid_after_utc)


class Renewer:
    """Renews the node's certificate over its session; see the module docstring."""

    def __init__(
        self,
        who: identity.AgentIdentity,
        session: Callable[[], Session | None],
        set_alarm: SetAlarm,
        renewed: Callable[[], Awaitable[None]],
        clock: Clock = utcnow,
        check_period: float = CHECK_PERIOD,
    ) -> None:
        self.identity, self._session, self._set_alarm = who, session, set_alarm
        self._renewed, self.clock, self.check_period = renewed, clock, check_period
        self.renewals = 0
        self.checks = 0
        self._one_at_a_time = asyncio.Lock()

    async def run_forever(self) -> None:
        while True:
            try:
                await self.step()
            except (OSError, EdgecloudError, ValueError) as exc:
                log.warning("certificate renewal check failed: %s", exc)
            await asyncio.sleep(self.check_period)

    async def step(self) -> None:
        """Renew when due (and connected); raise or clear the two alarms."""
        self.checks += 1
        life = lifetime(await asyncio.to_thread(self.identity.cert.read_bytes))
        session = self._session()
        if self.clock() >= life.renew_at and session is not None:
            try:
                life = await self._renew(session)
            except (EdgecloudError, OSError, TimeoutError) as exc:
                log.warning("renewing this node's certificate failed: %s", exc)
                await self._set_alarm(HOST_CERT_RENEWAL_FAILED, f"renewal failed: {exc}")
            else:
                await self._set_alarm(HOST_CERT_RENEWAL_FAILED, None)
        if self.clock() >= life.warn_at:
            when = life.not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
            await self._set_alarm(HOST_CERT_EXPIRING, f"the node's certificate expires at {when}")
        else:
            await self._set_alarm(HOST_CERT_EXPIRING, None)

    async def renew_now(self) -> None:
        """Renew at once (the controller asks during a CA rotation)."""
        session = self._session()
        if session is None:
            raise EdgecloudError("not connected")
        await self._renew(session)
        await self._set_alarm(HOST_CERT_RENEWAL_FAILED, None)

    async def _renew(self, session: Session) -> Lifetime:
        async with self._one_at_a_time:
            return await self._renew_once(session)

    async def _renew_once(self, session: Session) -> Lifetime:
        key_pem, csr_pem = await asyncio.to_thread(make_key_and_csr, self.identity.host)
        reply = await session.renew(csr_pem, REPLY_TIMEOUT)
        if "error" in reply or not isinstance(reply.get("cert"), str):
            raise EdgecloudError(f"the controller refused: {reply.get('error', 'no certificate')}")
        cert_pem, ca_pem = str(reply["cert"]).encode(), str(reply.get("ca", "")).encode()
        if not ca_pem:
            ca_pem = await asyncio.to_thread(self.identity.ca.read_bytes)
        await asyncio.to_thread(identity.save_renewed, self.identity, cert_pem, key_pem, ca_pem)
        await self._renewed()  # the hypervisors' copies too, before the renewal counts as done
        self.renewals += 1
        log.info("renewed this node's certificate")
        return lifetime(cert_pem)
