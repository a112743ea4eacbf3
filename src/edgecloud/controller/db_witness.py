"""Whether the site's replicated database can still fail over: alarm 100.010 when not.

A store replicated by pg_auto_failover (allinone/replicated_db.py) fails over only while its
monitor (the witness) runs and the secondary is healthy. The leading controller, given the
monitor's URI (``edgecloud controller --db-witness URI``; `edgecloud up --redundant` passes
it), asks the monitor every ``PERIOD`` seconds for each node's state and raises alarm 100.010
on entity ``database`` with the reason when the monitor does not answer, or a node is
unhealthy or not in the state the monitor assigned it; it clears the alarm when all is well
again. The alarm needs a writable store: when the database has no writable primary nothing can
be written, and `edgecloud status` says so in a line of its own (cli/site.py).

Leader-only (controller/leader_work.py starts and stops it); its transactions are fenced.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg

from edgecloud.fm.alarming import clear_alarm, raise_alarm
from edgecloud.services.context import ServiceContext
from edgecloud.store.database import transaction

log = logging.getLogger(__name__)
ALARM = "100.010"
ENTITY = "database"
PERIOD = 2.0
TIMEOUT = 2.0
STATES = "SELECT nodename, current_group_state, assigned_group_state, health FROM pgautofailover.current_state('default')"


def verdict(rows: Sequence[Any] | None) -> str | None:
    """Why the database cannot fail over (None: it can), from the monitor's node states
    (None: the monitor did not answer)."""
    if rows is None:
        return (
            "the database's monitor (witness) is unreachable: no automatic failover until it "
            "is back, and a secondary will not promote itself"
        )
    wrong = []
    for row in rows:
        name, reported, assigned, health = row[0], row[1], row[2], row[3]
        if health != 1:
            wrong.append(f"{name} is unreachable ({reported})")
        elif reported != assigned:
            wrong.append(f"{name} is {reported}, going {assigned}")
    primaries = [row[0] for row in rows if row[1] in ("primary", "wait_primary", "single")]
    if len(rows) < 2 and not wrong:
        wrong.append("only one database node is registered")
    if not wrong:
        return None
    alone = f"; {primaries[0]} takes writes without a replica" if primaries else ""
    return "the database cannot fail over: " + ", ".join(wrong) + alone


async def node_states(monitor_uri: str) -> list[Any] | None:
    """Each node's row from the monitor (None when it does not answer in ``TIMEOUT``)."""
    try:
        conn = await asyncpg.connect(monitor_uri, timeout=TIMEOUT)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        log.debug("the database's monitor does not answer: %s", exc)
        return None
    try:
        return list(await conn.fetch(STATES, timeout=TIMEOUT))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        log.debug("the database's monitor does not answer: %s", exc)
        return None
    finally:
        await conn.close(timeout=TIMEOUT)


async def watch_forever(ctx: ServiceContext, monitor_uri: str) -> None:
    """Check now, then every ``PERIOD`` seconds; raise or clear the alarm when it changes."""
    shown: str | bool | None = False  # False: not known yet
    while True:
        reason = verdict(await node_states(monitor_uri))
        if reason != shown:
            try:
                async with transaction(ctx.sessions) as s:
                    if reason is None:
                        await clear_alarm(s, ALARM, ENTITY, "the database can fail over again")
                    else:
                        await raise_alarm(s, ALARM, ENTITY, reason)
                shown = reason
                log.log(
                    logging.WARNING if reason else logging.INFO,
                    "database: %s",
                    reason or "redundant",
                )
            except Exception as exc:  # no writable primary: nothing to write to; retried
                log.warning("could not record the database's state (%s): %s", reason, exc)
        await asyncio.sleep(PERIOD)
