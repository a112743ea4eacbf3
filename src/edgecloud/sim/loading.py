"""API load during a scenario: a few concurrent clients doing reads and small writes.

Endpoints (per-object reads mostly: ``GET /v1/hosts`` with 10,000 hosts is one big response):
``GET /v1/hosts/{name}`` (60 %), ``GET /v1/vnfs/{name}`` or ``GET /v1/flavors`` (20 %), and a
write pair, ``POST /v1/flavors`` then ``DELETE /v1/flavors/{name}`` (20 %). (Not networks:
concurrent network creates can collide on the VLAN id, a 500 found by this load; see
docs/capacity.md.) Every request's
latency and outcome is recorded with its start time. With ``more_urls`` (a site with several
controllers, each serving the API) client i uses URL i mod k, so the load is spread.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

ENDPOINTS = (
    "GET /v1/hosts/{name}",
    "GET /v1/vnfs/{name} | GET /v1/flavors",
    "POST /v1/flavors + DELETE /v1/flavors/{name}",
)


@dataclass
class ApiLoad:
    api_url: str
    ca_cert: str
    token: str
    hosts: list[str]
    vnfs: list[str] = field(default_factory=list)
    clients: int = 4
    pause: float = 0.05  # per client between requests
    more_urls: list[str] = field(default_factory=list)  # other controllers' APIs
    samples: list[tuple[float, str, float, bool]] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count())

    def client(self, number: int = 0) -> httpx.AsyncClient:
        urls = [self.api_url, *self.more_urls]
        return httpx.AsyncClient(
            base_url=urls[number % len(urls)],
            verify=ssl.create_default_context(cafile=self.ca_cert),
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._client(i)) for i in range(self.clients)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _client(self, number: int) -> None:
        async with self.client(number) as api:
            while True:
                pick = random.random()
                if pick < 0.6:
                    await self._call(api, "GET", f"/v1/hosts/{random.choice(self.hosts)}", "host")
                elif pick < 0.8:
                    if self.vnfs:
                        await self._call(api, "GET", f"/v1/vnfs/{random.choice(self.vnfs)}", "vnf")
                    else:
                        await self._call(api, "GET", "/v1/flavors", "flavors")
                else:
                    name = f"load-{number}-{next(self._ids)}"
                    body = {"name": name, "vcpus": 1, "memory_mib": 64}
                    await self._call(api, "POST", "/v1/flavors", "write", json=body)
                    await self._call(api, "DELETE", f"/v1/flavors/{name}", "write")
                await asyncio.sleep(self.pause)

    async def _call(
        self, api: httpx.AsyncClient, method: str, url: str, kind: str, **kw: Any
    ) -> None:
        start = time.time()
        try:
            response = await api.request(method, url, **kw)
            ok = response.status_code < 400
        except httpx.HTTPError:
            ok = False
        self.samples.append((start, kind, time.time() - start, ok))

    endpoints: ClassVar[tuple[str, ...]] = ENDPOINTS  # what the clients ask (``window``)

    def window(self, t0: float, t1: float, kind: str | None = None) -> dict[str, Any]:
        """Latency percentiles and errors of requests started in [t0, t1] (of one kind)."""
        picked = [s for s in self.samples if t0 <= s[0] <= t1 and kind in (None, s[1])]
        latencies = sorted(s[2] for s in picked)
        return {
            "requests": len(picked),
            "errors": sum(1 for s in picked if not s[3]),
            "p50_s": percentile(latencies, 50),
            "p99_s": percentile(latencies, 99),
            "max_s": latencies[-1] if latencies else None,
            "endpoints": list(self.endpoints),
        }


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of sorted ``values``."""
    if not values:
        return None
    rank = max(0, min(len(values) - 1, math.ceil(p / 100 * len(values)) - 1))
    return values[rank]
