"""`edgecloud status` says which controller leads and which are up (GET /v1/controllers), and
says in one line when no controller answers; `controller --site-secret-file` refuses a short
secret in one sentence; on a redundant site it names each controller's node, the database's
primary and replica, each host's state, and says plainly when nothing can be written."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from edgecloud.allinone.replicated_db import Cluster
from edgecloud.cli.context import CliState
from edgecloud.cli.main import main
from edgecloud.client import Client, ClientConfig

A = {
    "id": "host-a:11/aaaaaa",
    "api_url": "https://10.0.0.1:7443",
    "gateway": "10.0.0.1:7444",
    "up": True,
    "leads": True,
    "this": False,
    "seen_at": "2026-11-30T23:00:00Z",
    "started_at": "2026-11-30T22:00:00Z",
    "release": "0.2.0",
    "protocols": [1, 2],
}
B = {**A, "id": "host-b:22/bbbbbb", "api_url": "https://10.0.0.2:7443", "gateway": "10.0.0.2:7444"}
FOUND = {
    "leader": {
        "id": A["id"],
        "epoch": 7,
        "since": "2026-11-30T22:00:01Z",
        "api_url": A["api_url"],
        "gateway": A["gateway"],
        "up": True,
    },
    "controllers": [A, {**B, "up": False, "leads": False, "this": True}],
}


def status(tmp_path: Path, handler: httpx.MockTransport, *extra: str) -> Result:
    def factory(config_path: Path | None) -> Client:
        config = ClientConfig(url="https://ctl.test", token="t", ca_cert="")
        return Client(config, transport=handler, sleep=lambda s: None)

    args = ["status", "--state-dir", str(tmp_path), *extra]
    return CliRunner().invoke(main, args, obj=CliState(client_factory=factory))


HOSTS = [
    {
        "name": "edge-n1",
        "state": "enabled",
        "availability": "online",
        "release": "0.2.0",
        "protocol": 2,
    },
    {
        "name": "edge-n2",
        "state": "enabled",
        "availability": "offline",
        "release": None,
        "protocol": None,
    },
]


def site_api(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=HOSTS if request.url.path == "/v1/hosts" else FOUND)


def test_status_names_the_leader_its_epoch_and_each_controller(tmp_path: Path) -> None:
    answer = httpx.MockTransport(site_api)
    result = status(tmp_path, answer)
    assert result.exit_code == 0, result.output
    assert "  host edge-n1  enabled  online  release 0.2.0 (protocol 2)" in result.output
    assert "  host edge-n2  enabled  offline  release -" in result.output
    assert "leader: host-a:11/aaaaaa  epoch 7  API https://10.0.0.1:7443" in result.output
    assert "controller host-a:11/aaaaaa  up  leads" in result.output
    assert "agents 10.0.0.1:7444  release 0.2.0 (protocols 1-2)" in result.output
    assert "controller host-b:22/bbbbbb  down  follows" in result.output
    as_json = json.loads(status(tmp_path, answer, "--json").output)
    assert as_json["controllers"] == FOUND
    assert as_json["hosts"] == HOSTS


def test_status_says_when_no_controller_answers(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    result = status(tmp_path, httpx.MockTransport(refuse))
    assert result.exit_code == 0, result.output
    assert "controllers: unknown (cannot reach the edgecloud controller at" in result.output
    assert "Traceback" not in result.output


def test_a_short_site_secret_is_one_sentence(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("short\n")
    args = ["controller", "--state-dir", str(tmp_path / "s"), "--site-secret-file", str(secret)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert "the site secret must have at least 16 characters" in result.output
    assert "Traceback" not in result.output


class _Cluster:
    """What `status` asks of a redundant site's database (allinone/replicated_db.Cluster)."""

    def __init__(self, primary: str | None, why: str) -> None:
        self.answer = primary, why
        self.nodes = [type("Member", (), {"name": n})() for n in ("n1", "n2")]
        self.url = "postgresql+asyncpg://u:p@/db"

    def health(self) -> tuple[str | None, str]:
        return self.answer


def test_a_redundant_site_names_each_controllers_node_the_primary_and_the_replica(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = {
        "controllers": [
            {"child": "controller", "node": "edge-n1", "api_url": A["api_url"]},
            {"child": "controller-n2", "node": "edge-n2", "api_url": B["api_url"]},
        ]
    }
    (tmp_path / "site.json").write_text(json.dumps(site))
    healthy = _Cluster("n2", "n1 secondary, n2 primary")
    monkeypatch.setattr(Cluster, "load", classmethod(lambda cls, state: healthy))
    result = status(tmp_path, httpx.MockTransport(site_api))
    assert result.exit_code == 0, result.output
    assert f"API {A['api_url']}  agents {A['gateway']}  node edge-n1" in result.output
    assert "  database primary n2  replica n1: n1 secondary, n2 primary" in result.output
    assert "CANNOT WRITE" not in result.output
    database = json.loads(status(tmp_path, httpx.MockTransport(site_api), "--json").output)
    assert database["database"]["primary"] == "n2" and database["database"]["replicas"] == ["n1"]


def test_a_redundant_site_without_a_writable_primary_says_so_plainly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lost = _Cluster(None, "no writable database: the monitor (witness) is unreachable")
    monkeypatch.setattr(Cluster, "load", classmethod(lambda cls, state: lost))
    unreachable = httpx.MockTransport(lambda r: httpx.Response(503, json={}))
    result = status(tmp_path, unreachable)
    assert result.exit_code == 0, result.output
    assert (
        "  database primary none  replica n1, n2: no writable database: the monitor (witness) "
        "is unreachable" in result.output
    )
    assert "  THE SITE CANNOT WRITE: its database has no writable primary" in result.output
