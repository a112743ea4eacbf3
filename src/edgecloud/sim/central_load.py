"""API load on central during the sites scenario: a few concurrent clients, as sim/loading.py
does for a site's controller (its recording, windows and percentiles are reused).

Endpoints: ``GET /v1/sites/{name}`` (60 %), ``GET /v1/fleet`` (20 %: every site read and
counted, the operator's overview, so it grows with the fleet) and a write pair, ``POST
/v1/templates`` then ``DELETE /v1/templates/{name}`` (20 %). Kinds in the samples: ``site``,
``fleet``, ``write`` (``window(t0, t1, kind)``).
"""

from __future__ import annotations

import asyncio
import random
from typing import ClassVar

from edgecloud.sim.loading import ApiLoad

TEMPLATE = """\
heat_template_version: 2018-08-31
description: a simulated service
parameters:
  lan: {type: string, default: sim}
resources:
  lan:
    type: OS::Neutron::Net
    properties: {name: {get_param: lan}}
"""


class CentralLoad(ApiLoad):
    """``hosts`` are the simulated sites' names."""

    endpoints: ClassVar[tuple[str, ...]] = (
        "GET /v1/sites/{name}",
        "GET /v1/fleet",
        "POST /v1/templates + DELETE /v1/templates/{name}",
    )

    async def _client(self, number: int) -> None:
        async with self.client(number) as api:
            while True:
                pick = random.random()
                if pick < 0.6:
                    await self._call(api, "GET", f"/v1/sites/{random.choice(self.hosts)}", "site")
                elif pick < 0.8:
                    await self._call(api, "GET", "/v1/fleet", "fleet")
                else:
                    name = f"load-{number}-{next(self._ids)}"
                    body = {"name": name, "template": TEMPLATE}
                    await self._call(api, "POST", "/v1/templates", "write", json=body)
                    await self._call(api, "DELETE", f"/v1/templates/{name}", "write")
                await asyncio.sleep(self.pause)
