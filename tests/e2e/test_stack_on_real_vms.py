"""E2E: a multi-VNF Heat template, written as operators write them, deployed on real VMs.

The template uses an environment file, a ResourceGroup with %index%, a subnet with fixed IPs,
str_replace, a CloudConfig as user_data and a RandomString; every member boots (TCG guests of
the project's tiny VNF) and reports from inside that its vNICs are where they were declared.
Deleting the stack removes the VNFs, their domains and the stack's subnet.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.real_site import real_site
from tests.integration.harness import Site, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]
BOOT = 150.0

TEMPLATE = """\
heat_template_version: 2021-04-16
description: two bump-in-the-wire VNFs on one service subnet
parameters:
  count: {type: number, default: 1}
  image: {type: string}
  flavor: {type: string, default: small}
resources:
  svc: {type: OS::Neutron::Net}
  svc_subnet:
    type: OS::Neutron::Subnet
    properties:
      network: {get_resource: svc}
      cidr: 10.77.0.0/24
      enable_dhcp: false
  out: {type: OS::Neutron::Net}
  token: {type: OS::Heat::RandomString, properties: {length: 8}}
  boot_config:
    type: OS::Heat::CloudConfig
    properties:
      cloud_config:
        write_files: [{path: /etc/vnf-token, content: {get_resource: token}}]
  vnfs:
    type: OS::Heat::ResourceGroup
    properties:
      count: {get_param: count}
      resource_def:
        type: OS::Nova::Server
        properties:
          name: bitw-%index%
          image: {get_param: image}
          flavor: {get_param: flavor}
          user_data_format: SOFTWARE_CONFIG
          user_data: {get_resource: boot_config}
          networks:
            - network: {get_resource: svc}
              fixed_ip:
                str_replace: {template: 10.77.0.1N, params: {N: "%index%"}}
            - network: {get_resource: out}
outputs:
  names: {value: {get_attr: [vnfs, name]}}
"""
ENVIRONMENT = "parameters:\n  count: 2\n  image: bitw\n"


async def _gone(site: Site, path: str) -> bool:
    return (await site.api.get(path)).status_code == 404


async def test_multi_vnf_template_runs_on_real_vms(tmp_path: Path) -> None:
    body = {
        "name": "svc",
        "template": TEMPLATE,
        "files": {"site.env": ENVIRONMENT},
        "environment_files": ["site.env"],
    }
    async with real_site(tmp_path) as (site, _run):
        response = await site.api.post("/v1/stacks", json=body)
        assert response.status_code == 201, response.text
        assert response.json()["outputs"]["names"] == ["bitw-0", "bitw-1"]
        for index in range(2):
            name = f"bitw-{index}"

            async def verified(name: str = name) -> dict[str, object] | None:
                vnf = await site.vnf(name)
                return vnf if vnf and vnf["binding_verified"] else None

            vnf = await eventually(verified, BOOT, f"{name} running with its vNICs verified")
            assert vnf["status"] == "running"
            nics = vnf["nics"]
            assert [n["network"] for n in nics] == ["svc-svc", "svc-out"]
            assert [ip["ip_address"] for ip in nics[0]["fixed_ips"]] == [f"10.77.0.1{index}"]
        assert (await site.api.delete("/v1/stacks/svc")).status_code == 202
        await eventually(lambda: _gone(site, "/v1/stacks/svc"), 120, "the stack deleted")
        assert (await site.api.get("/v1/subnets/svc-svc_subnet")).status_code == 404
        assert (await site.api.get("/v1/vnfs")).json() == []
