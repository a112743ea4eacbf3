"""Bad input gets a 4xx whose message names the field; nothing is half-created."""

from __future__ import annotations

from pathlib import Path

from tests.integration.harness import Site, running_site


async def _error(site: Site, method: str, path: str, status: int, **kwargs: object) -> dict:
    response = await site.api.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    return dict(response.json()["error"])


def _vnf(**overrides: object) -> dict:
    body: dict[str, object] = {
        "name": "v1",
        "image": "img",
        "flavor": "small",
        "nics": [{"network": "lan"}],
    }
    body.update(overrides)
    return body


async def test_authentication_is_required(tmp_path: Path, db_url: str | None) -> None:
    async with running_site(tmp_path, db_url) as site:
        anonymous = await site.api.get("/v1/hosts", headers={"Authorization": ""})
        assert (
            anonymous.status_code == 401 and "bearer token" in anonymous.json()["error"]["message"]
        )
        wrong = await site.api.get("/v1/hosts", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "not valid" in wrong.json()["error"]["message"]
        assert (await site.api.get("/v1/health", headers={"Authorization": ""})).status_code == 200
        assert (await site.api.get("/openapi.json")).status_code == 200


async def test_vnf_validation_names_the_field(tmp_path: Path, db_url: str | None) -> None:
    async with running_site(tmp_path, db_url) as site:
        await site.catalogue()
        bad_model = [{"network": "lan"}, {"network": "wan", "model": "ne2000"}]
        error = await _error(site, "POST", "/v1/vnfs", 422, json=_vnf(nics=bad_model))
        assert error["field"] == "nics[1].model" and "nics[1].model" in error["message"]
        error = await _error(site, "POST", "/v1/vnfs", 422, json=_vnf(image="nope"))
        assert error["field"] == "image" and "no image named 'nope'" in error["message"]
        error = await _error(site, "POST", "/v1/vnfs", 422, json=_vnf(nics=[{"network": "nope"}]))
        assert error["field"] == "nics[0].network"
        error = await _error(site, "POST", "/v1/vnfs", 422, json=_vnf(colour="red"))
        assert error["field"] == "colour" and "unknown field" in error["message"]
        error = await _error(
            site,
            "POST",
            "/v1/vnfs",
            422,
            json=_vnf(nics=[{"network": "lan", "mac": "01:00:5e:00:00:01"}]),
        )
        assert error["field"] == "nics[0].mac" and "unicast" in error["message"]
        twice = [{"network": "lan", "pci_slot": 5}, {"network": "wan", "pci_slot": 5}]
        error = await _error(site, "POST", "/v1/vnfs", 422, json=_vnf(nics=twice))
        assert error["field"] == "nics[1].pci_slot"
        error = await _error(
            site, "POST", "/v1/vnfs", 422, json=_vnf(nics=[{"network": "lan", "model": "sriov-vf"}])
        )
        assert error["field"] == "nics[0].hostdev_address"
        error = await _error(site, "POST", "/v1/vnfs", 422, json=_vnf(name="bad name!"))
        assert error["field"] == "name"
        error = await _error(
            site,
            "POST",
            "/v1/vnfs",
            422,
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        )
        assert "JSON" in error["message"]
        assert (await site.api.get("/v1/vnfs")).json() == [], (
            "a refused request left something behind"
        )


async def test_conflicts_and_missing_objects(tmp_path: Path, db_url: str | None) -> None:
    async with running_site(tmp_path, db_url) as site:
        await site.catalogue()
        assert (await site.api.post("/v1/vnfs", json=_vnf())).status_code == 201
        error = await _error(site, "POST", "/v1/vnfs", 409, json=_vnf())
        assert "already exists" in error["message"]
        error = await _error(site, "DELETE", "/v1/networks/lan", 409)
        assert "used by VNF(s): v1" in error["message"]
        error = await _error(
            site, "POST", "/v1/networks", 409, json={"name": "x", "segmentation_id": 100}
        )
        assert "VLAN 100" in error["message"]
        await _error(site, "GET", "/v1/vnfs/ghost", 404)
        await _error(site, "DELETE", "/v1/hosts/ghost", 404)
        await _error(site, "POST", "/v1/vnfs/v1/actions", 422, json={"action": "explode"})
        error = await _error(site, "GET", "/v1/vnfs/v1/console", 409)
        assert "not placed" in error["message"]
        error = await _error(site, "DELETE", "/v1/images/img", 409)
        assert "used by VNF(s): v1" in error["message"]
        error = await _error(
            site, "POST", "/v1/flavors", 422, json={"name": "f", "vcpus": 0, "memory_mib": 64}
        )
        assert error["field"] == "vcpus"


async def test_explicit_and_assigned_pci_slots_follow_declared_order(
    tmp_path: Path, db_url: str | None
) -> None:
    async with running_site(tmp_path, db_url) as site:
        await site.catalogue()
        nics = [{"network": "lan"}, {"network": "wan", "pci_slot": 10}, {"network": "mgmt"}]
        response = await site.api.post("/v1/vnfs", json=_vnf(nics=nics))
        assert [n["pci_slot"] for n in response.json()["nics"]] == [3, 10, 12]
        assert [n["pci_address"] for n in response.json()["nics"]] == [
            "0000:00:03.0",
            "0000:00:0a.0",
            "0000:00:0c.0",
        ]
