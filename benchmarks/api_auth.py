"""Benchmark: what authorisation and the audit log cost per API call, on a real controller.

Starts a controller in this process (HTTPS API on loopback, SQLite store in a temporary
directory, or PostgreSQL with --db) and times, over N calls each (median and 95th percentile,
milliseconds, one client, calls one after another):

- ``GET /v1/stacks/{name}`` with the admin token and with a customer-scoped reader (the scope
  adds one owner lookup to the token check);
- ``POST /v1/networks`` then ``DELETE`` (two mutating calls, each written to the audit log)
  with the audit log empty, and with it full at its bound (``--bound`` records, so every write
  also prunes the oldest);
- ``services.audit.record`` alone, with the log full at its bound.

    .venv/bin/python benchmarks/api_auth.py [--calls 300] [--db URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert

from edgecloud.controller.site import Controller, ControllerConfig
from edgecloud.services import audit
from edgecloud.services.context import ServiceContext
from edgecloud.store.database import make_engine, session_factory, sqlite_url
from edgecloud.store.models import AuditRecord, utcnow

STACK = "heat_template_version: 2018-08-31\nresources:\n  lan: {type: OS::Neutron::Net}\n"


def _row(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return {"median_ms": round(statistics.median(ordered), 2), "p95_ms": round(p95, 2)}


async def _timed(calls: int, step: Callable[[int], Awaitable[None]]) -> dict[str, float]:
    spent = []
    for n in range(calls):
        start = time.perf_counter()
        await step(n)
        spent.append((time.perf_counter() - start) * 1000)
    return _row(spent)


async def _fill(ctx: ServiceContext, bound: int) -> None:
    """The log full of authenticated records, numbered after those already there."""
    last = await audit.count(ctx)
    now = utcnow()
    row = {"at": now, "actor": "bench", "action": "POST /v1/networks", "status": 201,
           "client": "127.0.0.1", "anonymous": False}  # fmt: skip
    async with ctx.sessions() as s, s.begin():
        for start in range(0, bound, 5000):
            batch = [
                {**row, "target": f"/v1/networks/x{n}", "seq": last + n + 1}
                for n in range(start, min(bound, start + 5000))
            ]
            await s.execute(insert(AuditRecord), batch)


async def run(calls: int, db: str | None) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        config = ControllerConfig(
            state_dir=Path(tmp) / "controller", db_url=db, api_port=0, gateway_port=0
        )
        controller = Controller(config)
        task = asyncio.create_task(controller.run())
        info_file = config.state_dir / "controller.json"
        while not info_file.exists():
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        info = json.loads(info_file.read_text())
        token = (config.state_dir / "admin-token").read_text().strip()
        tls = ssl.create_default_context(cafile=info["ca_cert"])
        rows: list[dict[str, Any]] = []
        async with httpx.AsyncClient(
            base_url=info["api_url"], verify=tls, headers={"Authorization": f"Bearer {token}"}
        ) as api:
            assert (
                await api.post("/v1/stacks", json={"name": "s1", "template": STACK})
            ).status_code == 201
            scoped = await api.post(
                "/v1/tokens", json={"name": "eyes", "role": "reader", "customer": "acme"}
            )
            eyes = {"Authorization": f"Bearer {scoped.json()['secret']}"}

            async def get_admin(_: int) -> None:
                assert (await api.get("/v1/stacks/s1")).status_code == 200

            async def get_scoped(_: int) -> None:
                assert (await api.get("/v1/stacks/s1", headers=eyes)).status_code == 404

            async def change(n: int) -> None:
                assert (await api.post("/v1/networks", json={"name": f"n{n}"})).status_code == 201
                assert (await api.delete(f"/v1/networks/n{n}")).status_code == 204

            rows.append({"what": "GET /v1/stacks/{name}, admin", **await _timed(calls, get_admin)})
            rows.append(
                {
                    "what": "GET /v1/stacks/{name}, scoped reader (404)",
                    **await _timed(calls, get_scoped),
                }
            )
            rows.append(
                {
                    "what": "POST + DELETE /v1/networks, audit log near empty",
                    **await _timed(calls, change),
                }
            )
            engine = make_engine(db or sqlite_url(config.state_dir))
            ctx = ServiceContext(sessions=session_factory(engine))
            bound = ctx.settings.audit_max_records
            await _fill(ctx, bound)
            rows.append(
                {
                    "what": f"POST + DELETE /v1/networks, audit log full ({bound})",
                    **await _timed(calls, change),
                }
            )

            async def record(n: int) -> None:
                await audit.record(
                    ctx, "bench", "POST /v1/networks", f"/v1/networks/y{n}", 201, "::1"
                )

            rows.append(
                {
                    "what": f"services.audit.record alone, log full ({bound})",
                    **await _timed(calls, record),
                }
            )
            assert await audit.count(ctx) == bound
            await engine.dispose()
        controller.stopping.set()
        await asyncio.wait_for(task, 30)
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--db", default=None)
    args = parser.parse_args()
    rows = asyncio.run(run(args.calls, args.db))
    print("| what | median_ms | p95_ms |\n|---|---|---|")
    for row in rows:
        print(f"| {row['what']} | {row['median_ms']} | {row['p95_ms']} |")


if __name__ == "__main__":
    main()
