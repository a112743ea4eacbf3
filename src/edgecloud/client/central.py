"""The SDK for central's REST API (central/api.py): sites, their join tokens, the fleet view."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from edgecloud.client.api import Client, Json
from edgecloud.client.config import ClientConfig
from edgecloud.errors import ClientError

INFO_FILE = "central.json"  # written by central when it is ready (central/run.py)


def config_for(state_dir: Path) -> ClientConfig:
    """How to reach the central that runs from ``state_dir`` (its info file and token)."""
    try:
        info = json.loads((state_dir / INFO_FILE).read_text())
        token = (state_dir / "admin-token").read_text().strip()
    except (OSError, ValueError) as exc:
        raise ClientError(
            f"no central is running from {state_dir} (start one: edgecloud central up)"
        ) from exc
    return ClientConfig(str(info["api_url"]), token, str(info["ca_cert"]))


class CentralClient(Client):
    """A connection to central."""

    def __enter__(self) -> CentralClient:
        return self

    def list_sites(self) -> list[Json]:
        return self._call("GET", "/v1/sites")

    def add_site(self, name: str, token_ttl: float | None = None, group: str | None = None) -> Json:
        body: Json = {"name": name, "group": group}
        if token_ttl is not None:
            body["token_ttl"] = token_ttl
        return self._call("POST", "/v1/sites", body)

    def get_site(self, name: str) -> Json:
        return self._call("GET", f"/v1/sites/{name}")

    def new_site_token(self, name: str) -> Json:
        return self._call("POST", f"/v1/sites/{name}/token")

    def delete_site(self, name: str) -> None:
        self._call("DELETE", f"/v1/sites/{name}")

    def list_central_alarms(self, all: bool = False) -> list[Json]:
        return self._call("GET", "/v1/alarms", params={"all": "true" if all else "false"})

    def fleet(self) -> Json:
        return self._call("GET", "/v1/fleet")

    # the catalogue and deployments --------------------------------------------------------------
    def list_templates(self) -> list[Json]:
        return self._call("GET", "/v1/templates")

    def add_template(
        self, name: str, template: str, description: str = "", kind: str = "stack"
    ) -> Json:
        body = {"name": name, "kind": kind, "template": template, "description": description}
        return self._call("POST", "/v1/templates", body)

    def get_template(self, name: str) -> Json:
        return self._call("GET", f"/v1/templates/{name}")

    def update_template(self, name: str, template: str) -> Json:
        return self._call("PUT", f"/v1/templates/{name}", {"template": template})

    def delete_template(self, name: str) -> None:
        self._call("DELETE", f"/v1/templates/{name}")

    def deploy(
        self,
        name: str,
        template: str,
        sites: list[str],
        group: str | None = None,
        parameters: Json | None = None,
    ) -> list[Json]:
        body = {"name": name, "template": template, "sites": sites, "group": group,
                "parameters": parameters or {}}  # fmt: skip
        return self._call("POST", "/v1/deployments", body)

    def undeploy(self, name: str, sites: list[str], group: str | None = None) -> None:
        query: dict[str, list[str] | str] = {"site": sites}
        if group is not None:
            query["group"] = group
        params = httpx.QueryParams(query)
        self._call("DELETE", f"/v1/deployments/{name}", params=params)

    def list_deployments(self, site: str | None = None) -> list[Json]:
        return self._call("GET", "/v1/deployments", params={"site": site} if site else None)
