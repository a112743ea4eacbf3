"""Heat requests as operators send them, on a real controller and agent (fake drivers): an
environment file, a nested template from the resource_registry, a ResourceGroup, get_file and
a RandomString, gathered by the CLI's file collector and sent through the API; an update that
grows the group touches only the new member and keeps the random value; a stack that needs
what the site cannot store yet is refused with nothing created."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecloud.cli.stacks import collect_files
from tests.integration.harness import eventually, running_site

TOP = """\
heat_template_version: 2016-10-14
parameters:
  count: {type: number, default: 1}
  flavor: {type: string}
resources:
  lan: {type: OS::Neutron::Net}
  secret: {type: OS::Heat::RandomString, properties: {length: 10}}
  vnfs:
    type: OS::Heat::ResourceGroup
    properties:
      count: {get_param: count}
      resource_def:
        type: Site::Vnf
        properties:
          index: "%index%"
          net: {get_resource: lan}
          flavor: {get_param: flavor}
          secret: {get_attr: [secret, value]}
outputs:
  names: {value: {get_attr: [vnfs, vm_name]}}
  secret: {value: {get_attr: [secret, value]}}
"""
NESTED = """\
heat_template_version: 2015-04-30
parameters:
  index: {type: string}
  net: {type: string}
  flavor: {type: string}
  secret: {type: string, hidden: true}
resources:
  vm:
    type: OS::Nova::Server
    properties:
      name: {str_replace: {template: vm-N, params: {N: {get_param: index}}}}
      image: img
      flavor: {get_param: flavor}
      networks: [{network: {get_param: net}}]
      metadata:
        role: {get_file: role.txt}
        secret: {get_param: secret}
outputs:
  vm_name: {value: {get_attr: [vm, name]}}
"""
ENV = """\
parameters: {flavor: small}
resource_registry:
  Site::Vnf: ../lib/vnf.yaml
"""
SUBNET = """\
heat_template_version: 2018-08-31
resources:
  lan: {type: OS::Neutron::Net}
  sub: {type: OS::Neutron::Subnet, properties: {network: {get_resource: lan}, cidr: 10.0.0.0/24}}
"""


def write_request(root: Path) -> tuple[Path, Path]:
    (root / "env").mkdir(parents=True)
    (root / "lib").mkdir()
    (root / "top.yaml").write_text(TOP)
    (root / "env" / "site.env").write_text(ENV)
    (root / "lib" / "vnf.yaml").write_text(NESTED)
    (root / "lib" / "role.txt").write_text("firewall")
    return root / "top.yaml", root / "env" / "site.env"


async def test_environment_nested_template_and_group_through_the_api(tmp_path: Path) -> None:
    template, environment = write_request(tmp_path / "request")
    files, env_keys = collect_files(template, (environment,))
    assert set(files) == {"env/site.env", "lib/vnf.yaml", "lib/role.txt"}
    assert env_keys == ["env/site.env"]
    body = {"name": "s1", "template": TOP, "files": files, "environment_files": env_keys}
    async with running_site(tmp_path / "site") as site:
        await site.join("node1")
        await site.catalogue(networks=())
        response = await site.api.post("/v1/stacks", json=body)
        assert response.status_code == 201, response.text
        stack = response.json()
        assert stack["outputs"]["names"] == ["vm-0"]
        secret = stack["outputs"]["secret"]
        assert len(secret) == 10
        vm0 = await site.wait_vnf("vm-0", "running")
        assert vm0["metadata"] == {"role": "firewall", "secret": secret}
        assert vm0["nics"][0]["network"] == "s1-lan"

        update = {**body, "parameters": {"count": 2}}
        del update["name"]
        response = await site.api.put("/v1/stacks/s1", json=update)
        assert response.status_code == 202, response.text
        stack = response.json()
        assert "1 create" in stack["status_reason"] and "0 replace" in stack["status_reason"]
        assert stack["outputs"] == {"names": ["vm-0", "vm-1"], "secret": secret}
        vm1 = await site.wait_vnf("vm-1", "running")
        assert vm1["metadata"]["secret"] == secret
        assert (await site.vnf("vm-0"))["boot_id"] == vm0["boot_id"]  # untouched

        subnetted = await site.api.post("/v1/stacks", json={"name": "s2", "template": SUBNET})
        assert subnetted.status_code == 201, subnetted.text
        subnet = (await site.api.get("/v1/subnets/s2-sub")).json()
        assert (subnet["cidr"], subnet["network"]) == ("10.0.0.0/24", "s2-lan")

        missing = {**body, "name": "s3", "files": {"env/site.env": ENV}}
        response = await site.api.post("/v1/stacks", json=missing)
        assert response.status_code == 422
        assert "'lib/vnf.yaml' was not sent in files" in response.json()["error"]["message"]


pytestmark = pytest.mark.timeout(120)


ONAP_VFW = Path(__file__).parents[1] / "fixtures" / "templates" / "onap-vfw"


async def test_onap_vfirewall_deploys_with_its_environment(tmp_path: Path) -> None:
    """ONAP's vFW template and .env, unchanged, with the site's own names as parameters:
    three VNFs with their declared fixed IPs, a key pair, user data; all gone with the stack."""
    template = ONAP_VFW / "base_vfw.yaml"
    files, env_keys = collect_files(template, (ONAP_VFW / "base_vfw.env",))
    params = {
        "vfw_image_name": "img",
        "firewall_flavor_name": "small",
        "sink_flavor_name": "small",
        "packetgen_flavor_name": "small",
        "public_net_id": "public",
        "onap_private_net_id": "onap",
        "onap_private_subnet_id": "onap-sub",
        "sec_group": "default",
    }
    body = {"name": "vfw", "template": template.read_text(), "parameters": params,
            "files": files, "environment_files": env_keys}  # fmt: skip
    async with running_site(tmp_path) as site:
        await site.join("node1")
        await site.catalogue(networks=("public", "onap"))
        sub = {"name": "onap-sub", "network": "onap", "cidr": "10.0.0.0/16"}
        assert (await site.api.post("/v1/subnets", json=sub)).status_code == 201
        response = await site.api.post("/v1/stacks", json=body)
        assert response.status_code == 201, response.text
        vnfs = {v["name"]: v for v in (await site.api.get("/v1/vnfs")).json()}
        assert set(vnfs) == {"zdfw1fwl01fwl01", "zdfw1fwl01pgn01", "zdfw1fwl01snk01"}
        firewall = await site.wait_vnf("zdfw1fwl01fwl01", "running")
        addresses = [[ip["ip_address"] for ip in n["fixed_ips"]] for n in firewall["nics"]]
        assert addresses[1:] == [["192.168.10.100"], ["192.168.20.100"], ["10.0.100.1"]]
        assert firewall["key_name"].startswith("vfw_key")
        keypairs = [k["name"] for k in (await site.api.get("/v1/keypairs")).json()]
        assert keypairs == [firewall["key_name"]]
        assert (await site.api.delete("/v1/stacks/vfw")).status_code == 202

        async def gone() -> bool:
            return (await site.api.get("/v1/stacks/vfw")).status_code == 404

        await eventually(gone, 30, "the vFW stack deleted")
        assert (await site.api.get("/v1/keypairs")).json() == []
        subnets = [x["name"] for x in (await site.api.get("/v1/subnets")).json()]
        assert subnets == ["onap-sub"]  # the stack's own subnets went with it
